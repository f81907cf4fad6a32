"""benchmarks/catalogue.py: the site's catalogue of losses, miners and samplers (docs/catalogue.md) is the one the
code gives."""

import importlib
import pkgutil
import sys

import paths
import pytest
import yaml

sys.path.insert(0, str(paths.REPO))  # benchmarks/ is a package of the repository, not of the install

from benchmarks import catalogue  # noqa: E402


def test_catalogue_page_is_generated_with_a_row_per_class():
    """docs/catalogue.md holds the placeholder the site's build replaces, and the generated page has one row per
    class, linking it to its API reference, with its paper, advice, recipe and MetricLearningModel cells."""
    from tfdml import losses, mining

    assert catalogue.PLACEHOLDER in (paths.REPO / "docs" / "catalogue.md").read_text().splitlines()
    page = catalogue.page()
    rows = [line for line in page.splitlines() if line.startswith("| [`")]
    classes = [cls for _, package, bases in catalogue.sections() for cls in catalogue.public_classes(package, bases)]
    assert len(rows) == len(classes) and all(row.count(" | ") == 4 for row in rows)
    proxy_anchor = next(row for row in rows if row.startswith("| [`ProxyAnchorLoss`][tfdml.losses.ProxyAnchorLoss]"))
    assert proxy_anchor.endswith("| yes |") and "Kim et al." in proxy_anchor
    assert next(row for row in rows if "[tfdml.mining.SemiHardMiner]" in row).endswith("| — |")
    assert catalogue.needs_model(losses.MarginLoss) and not catalogue.needs_model(losses.TripletLoss)
    assert not catalogue.needs_model(mining.SemiHardMiner)


def test_every_concrete_class_of_the_packages_is_exported_so_catalogued():
    """Every leaf class (one nothing derives from, as intermediate bases are derived from) is exported."""
    for _, package, bases in catalogue.sections():
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
        leaves = {cls for base in bases for cls in _subclasses(base)
                  if cls.__module__.startswith(package.__name__) and not cls.__subclasses__()}
        hidden = sorted(cls.__name__ for cls in leaves - set(catalogue.public_classes(package, bases))
                        if not cls.__name__.startswith("_"))
        assert not hidden, f"{package.__name__} does not export {hidden}, so the catalogue leaves them out"


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_summary_is_the_first_paragraph_and_paper_the_first_citation():
    class Cited:
        """Pulls pairs together
        beyond a margin (Wu et al. 2017, "Sampling Matters"):

            L = ...

        Also Roth et al. 2020.
        """

    assert catalogue.summary_and_paper(Cited) == (
        "Pulls pairs together beyond a margin.", 'Wu et al. 2017, "Sampling Matters"')
    uncited = type("Uncited", (), {"__doc__": "Draws at random.", "__module__": "tests_uncited"})
    sys.modules["tests_uncited"] = type(sys)("tests_uncited")
    try:
        assert catalogue.summary_and_paper(uncited) == ("Draws at random.", "—")
    finally:
        del sys.modules["tests_uncited"]


def test_every_public_class_says_when_to_use_it():
    lacking = []
    for _, package, bases in catalogue.sections():
        for cls in catalogue.public_classes(package, bases):
            try:
                catalogue.when_to_use(cls)
            except ValueError:
                lacking.append(cls.__name__)
    assert not lacking, f"docstrings without a 'When to use:' paragraph: {lacking}"


def test_when_to_use_is_its_docstring_paragraph_and_its_absence_names_the_class():
    class Advised:
        """Pulls pairs together.

            L = ...

        When to use: clean labels
        and large batches (Wu et al. 2017).
        """

    class Unadvised:
        """Pulls pairs together (Wu et al. 2017).

        When to use is not said here.
        """

    assert catalogue.when_to_use(Advised) == "clean labels and large batches (Wu et al. 2017)."
    assert catalogue.summary_and_paper(Advised) == ("Pulls pairs together.", "—")  # the advice cites no paper
    with pytest.raises(ValueError, match="Unadvised"):
        catalogue.when_to_use(Unadvised)


def test_recipe_column_names_the_recipe_key_and_the_shipped_recipes_that_use_the_class():
    from tfdml import losses, mining, sampling
    from tfdml.training.factory import resolve_class

    for _, package, bases in catalogue.sections():
        for cls in catalogue.public_classes(package, bases):
            key, name = catalogue.recipe_key(cls)
            assert resolve_class(key.removesuffix(".class"), name) is cls
    fastap = (paths.REPO / "pipelines" / "fastap_sop.yaml").read_text()
    assert yaml.safe_load(fastap)["loss"]["class"] == "FastAPLoss"
    cell = catalogue.recipe_cell(losses.FastAPLoss)
    assert cell.startswith("`loss.class: FastAPLoss`") and "`fastap_sop.yaml`" in cell
    assert "MetricLearningModel" not in cell  # its own column (needs_model)
    assert "`roth_cub200_triplet_semihard.yaml`" in catalogue.recipe_cell(mining.SemiHardMiner)
    # It names no sampler: its SPCSampler comes from the recipe it extends.
    semihard = yaml.safe_load((paths.REPO / "pipelines" / "roth_cub200_triplet_semihard.yaml").read_text())
    assert "sampler" not in semihard and semihard["extends"] == "roth_protocol.yaml"
    assert "roth_cub200_triplet_semihard.yaml" in catalogue.recipe_uses()["sampler.class", "SPCSampler"]
    assert catalogue.recipe_cell(sampling.SPCSampler).endswith(
        f" and {len(catalogue.recipe_uses()['sampler.class', 'SPCSampler']) - catalogue.SHOWN_RECIPES} more")
