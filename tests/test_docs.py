"""The documentation site (mkdocs.yml, docs/): it builds strictly, its API reference names every public object,
its generated pages hold every class and recipe key, and its tutorials run."""

import importlib
import inspect
import os
import re
import sys
import zlib

import keras
import paths
import pytest

REPO = paths.REPO
TUTORIALS = sorted((REPO / "docs" / "tutorials").glob("*.md"))
# The tutorials' own knobs for a run of seconds (each page says what a full run does).
TUTORIAL_ENV = {"TFDML_TUTORIAL_EPOCHS": "1", "TFDML_TUTORIAL_STEPS": "2"}


def build_site(site_dir):
    """``mkdocs build --strict`` into ``site_dir`` (strict is set in mkdocs.yml), in this process."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    before = os.getcwd()
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    os.chdir(REPO)  # mkdocstrings' paths and the griffe extension are relative to the repository
    try:
        config = load_config(str(REPO / "mkdocs.yml"), site_dir=str(site_dir))
        assert config.strict, "mkdocs.yml must build strictly: a broken link or reference is an error"
        build(config)
    finally:
        os.chdir(before)


def inventory(site_dir):
    """The identifiers of objects.inv, the objects the API reference renders."""
    data = (site_dir / "objects.inv").read_bytes()
    body = zlib.decompress(data.split(b"\n", 4)[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines()}


def public_names():
    """``{module name: [public names]}``: each subpackage's ``__all__``, and for the top-level modules (which have
    none) the classes and functions they define."""
    import tfdml

    names = {}
    for submodule in tfdml._SUBMODULES:
        module = importlib.import_module(f"tfdml.{submodule}")
        if hasattr(module, "__all__"):
            names[module.__name__] = list(module.__all__)
        else:
            names[module.__name__] = [
                name for name, value in vars(module).items()
                if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
                and value.__module__ == module.__name__
            ]
    return names


@pytest.mark.slow
def test_site_builds_strictly_with_every_public_name_class_key_and_formula(tmp_path):
    """One build (about 10 s of CPU), checked in one test so that pytest-xdist workers do not each build it."""
    build_site(tmp_path)
    assert (tmp_path / "index.html").is_file()
    check_api_reference(tmp_path)
    check_catalogue_page(tmp_path)
    check_recipe_keys_page(tmp_path)
    check_formulas(tmp_path)


def check_api_reference(site):
    rendered = inventory(site)

    def documented(package, name):
        # A package's name may be rendered where it is defined (tfdml.training.model.MetricLearningModel).
        return any(entry == f"{package}.{name}" or entry.startswith(f"{package}.") and entry.endswith(f".{name}")
                   for entry in rendered)

    missing = [f"{package}.{name}" for package, names in public_names().items() for name in names
               if not documented(package, name)]
    registered = [cls for key, cls in keras.saving.get_custom_objects().items() if key.startswith("tfdml>")]
    assert registered
    missing += [f"{cls.__module__}.{cls.__name__}" for cls in registered
                if not any(entry.endswith(f".{cls.__name__}") for entry in rendered)]
    assert not missing, f"not in the API reference (add them to docs/api/*.md): {sorted(missing)}"


def check_catalogue_page(site):
    sys.path.insert(0, str(REPO))
    from benchmarks import catalogue

    page = (site / "catalogue" / "index.html").read_text()
    for _, package, bases in catalogue.sections():
        for cls in catalogue.public_classes(package, bases):
            link = f'href="../api/{package.__name__.split(".")[-1]}/#{package.__name__}.{cls.__name__}"'
            assert link in page, f"the catalogue has no row linking {cls.__name__} to its API reference"
    assert "<!-- generated" not in page


def check_recipe_keys_page(site):
    sys.path.insert(0, str(REPO / "docs" / "_hooks"))
    import generated

    from tfdml.training.config import DEFAULTS

    page = (site / "recipe_keys" / "index.html").read_text()
    keys = [path for path, _, _ in generated._schema_rows(DEFAULTS)]
    assert len(keys) > 50 and all(f"<code>{key}</code>" in page for key in keys)
    assert "<code>optimizer.learning_rate</code></td>\n<td>a number</td>\n<td><code>0.001</code>" in page
    assert "XLA for the training step" in page  # the schema's comment on jit_compile


def check_formulas(site):
    page = (site / "api" / "losses" / "index.html").read_text()
    margin = page[page.index('id="tfdml.losses.MarginLoss"'):]
    tex = re.search(r'<div class="formula" data-tex="([^"]*)">', margin).group(1)
    assert r"\ell" in tex and r"\beta" in tex and r"\sum" in tex
    # The Unicode text stays inside, shown where KaTeX cannot typeset the translation (or without JavaScript).
    assert re.search(r'data-tex="[^"]*"><pre>ℓ\(i, j\) = \(α \+ y_ij', margin)
    assert ":class:" not in page  # Sphinx roles are rewritten as code


def test_readme_links_into_the_site():
    readme = (REPO / "README.md").read_text()
    for page in ("quickstart.md", "catalogue.md", "tutorials/oneshot.md", "serving.md", "recipe_keys.md"):
        assert f"(docs/{page}" in readme, f"README.md does not link docs/{page}"


def test_readme_zoo_table_is_the_zoo_page_s():
    """benchmarks/model_zoo.py writes the table into both; a hand edit of one would make them differ."""

    def table(path):
        text = (REPO / path).read_text()
        return text[text.index("<!-- model-zoo -->"):text.index("<!-- /model-zoo -->")]

    assert table("README.md") == table("docs/zoo.md")


@pytest.mark.slow
@pytest.mark.parametrize("page", TUTORIALS, ids=[page.stem for page in TUTORIALS])
def test_tutorial_runs(page, monkeypatch, tmp_path, capsys):
    """Every Python block of the page, in order, in one namespace, with the page's small settings."""
    for key, value in TUTORIAL_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)
    assert blocks, f"{page.name} has no Python block"
    namespace = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{page.relative_to(REPO)}, block {number}", "exec"), namespace)
    assert capsys.readouterr().out


def test_tutorial_knobs_are_documented_on_their_pages():
    for page in TUTORIALS:
        text = page.read_text()
        assert all(key in text for key in TUTORIAL_ENV), f"{page.name} must say what the suite's settings do"
