"""benchmarks/catalogue.py: README's catalogue of losses, miners and samplers is the one the code gives."""

import importlib
import pkgutil
import sys

import paths

sys.path.insert(0, str(paths.REPO))  # benchmarks/ is a package of the repository, not of the install

from benchmarks import catalogue  # noqa: E402


def test_readme_catalogue_is_up_to_date():
    readme = (paths.REPO / "README.md").read_text()
    assert catalogue.current_block(readme) == catalogue.block(), "stale: run python -m benchmarks.catalogue"


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
