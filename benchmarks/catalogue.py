"""The site's catalogue of losses, miners and samplers (docs/catalogue.md), written from their docstrings.

A row per public class of ``tfdml.losses``, ``tfdml.mining`` and ``tfdml.sampling`` (their base
classes left out): its name (linked to its API reference), the first paper its docstring cites, its
docstring's ``When to use:`` paragraph (every public class has one), how a recipe names it (``loss.class``,
``miner.class`` or ``sampler.class`` and its registered name) with the shipped recipes
(``pipelines/*.yaml``, as :func:`tfdml.training.config.load_config` resolves them) that use it, and whether
it trains only with ``MetricLearningModel`` (losses with trainable parameters). The site's build writes the
tables into docs/catalogue.md in place of its ``<!-- generated: catalogue -->`` line (docs/_hooks/generated.py),
so the catalogue cannot go stale; ``tests/test_catalogue.py`` holds every class to a docstring the catalogue
can read.

Usage (from the repository root):

    python -m benchmarks.catalogue           # print the catalogue's Markdown
    python -m benchmarks.catalogue --check   # exit 1 if a class lacks what its row needs
"""

import argparse
import collections
import functools
import inspect
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPES = REPO / "pipelines"
PLACEHOLDER = "<!-- generated: catalogue -->"
WHEN = "When to use:"
# Recipes named in a row's recipe cell; the rest are counted.
SHOWN_RECIPES = 3

# A citation: authors ("Wu et al.", "Zhai & Wu", "Cakir, He, Xia, Kulis, Sclaroff"), an optional quoted
# title, an optional venue, the year and an optional title after it ('Wu et al. 2017, "Sampling Matters"').
_AUTHORS = r"[A-Z][\w-]+(?: et al\.| & [A-Z][\w-]+|(?:, [A-Z][\w-]+)+(?=, \"))?"
_TITLE = r"\"[^\"]+\""
CITATION = re.compile(_AUTHORS + rf"(?:,? {_TITLE})?,? (?:[A-Z][A-Za-z]* )?(?:19|20)\d\d\b(?:, {_TITLE})?")


def sections():
    """``(title, package, base classes)`` of each catalogue table."""
    import tfdml.losses
    import tfdml.mining
    import tfdml.sampling

    return (
        ("Losses", tfdml.losses, (tfdml.losses.DMLLoss, tfdml.losses.ParametricDMLLoss)),
        ("Miners", tfdml.mining, (tfdml.mining.Miner, tfdml.mining.TupleMiner)),
        ("Samplers", tfdml.sampling, (tfdml.sampling.BatchSampler,)),
    )


def public_classes(package, bases):
    """The classes ``package`` exports that derive from one of ``bases`` and are not one of them."""
    exported = (getattr(package, name) for name in package.__all__)
    return [cls for cls in exported if inspect.isclass(cls) and issubclass(cls, bases) and cls not in bases]


def _paragraphs(cls):
    return [" ".join(paragraph.split()) for paragraph in (inspect.getdoc(cls) or "").split("\n\n")]


def summary_and_paper(cls):
    """The docstring's first paragraph (less a trailing colon or a cited paper) and the first paper the class's
    docstring cites outside its ``When to use:`` paragraph, else its module's, else "—"."""
    paragraphs = _paragraphs(cls)
    first = paragraphs[0]
    if not first:
        raise ValueError(f"{cls.__module__}.{cls.__name__} has no docstring: the catalogue needs its first line.")
    doc = " ".join(paragraph for paragraph in paragraphs if not paragraph.startswith(WHEN))
    citations = (CITATION.search(" ".join(text.split())) for text in (doc, sys.modules[cls.__module__].__doc__ or ""))
    paper = next((citation.group(0) for citation in citations if citation), "—")
    first = first.replace(f" ({paper})", "")
    return first.rstrip(":.,") + ".", paper


def when_to_use(cls):
    """The sentence of the class docstring's paragraph that starts with ``When to use:``."""
    found = [paragraph for paragraph in _paragraphs(cls) if paragraph.startswith(WHEN)]
    if len(found) != 1 or found[0] == WHEN:
        raise ValueError(
            f"{cls.__module__}.{cls.__name__}'s docstring needs one paragraph starting with {WHEN!r} followed by "
            f"one sentence (found {len(found)}): the catalogue's when-to-use column reads it."
        )
    return found[0][len(WHEN):].strip()


def recipe_key(cls):
    """The recipe key that names ``cls`` (``loss.class``, ``miner.class``, ``sampler.class``) and the name it takes
    there: its Keras registration name, which :func:`tfdml.training.factory.resolve_class` looks up."""
    import keras

    from tfdml.training.factory import KINDS

    kind = next(kind for kind, (base, _) in KINDS.items() if issubclass(cls, base))
    return f"{kind}.class", keras.saving.get_registered_name(cls).removeprefix("tfdml>")


@functools.cache
def recipe_uses():
    """``{(recipe key, class name): [file names]}`` over the shipped recipes, each resolved (``extends`` and
    defaults included) by :func:`tfdml.training.config.load_config`, the loader ``train.py`` uses."""
    from tfdml.training.config import load_config

    uses = collections.defaultdict(list)
    for recipe in sorted(RECIPES.glob("*.yaml")):
        config = load_config(str(recipe))
        for kind in ("loss", "miner", "sampler"):
            if config[kind]["class"]:
                uses[f"{kind}.class", config[kind]["class"]].append(recipe.name)
    return uses


def needs_model(cls):
    """Whether ``cls`` trains only through ``tfdml.training.MetricLearningModel``: a loss with trainable parameters
    (β, proxies, class centres), which plain ``compile(loss=...)`` refuses."""
    from tfdml.losses import ParametricDMLLoss

    return issubclass(cls, ParametricDMLLoss)


def recipe_cell(cls):
    """How a recipe names ``cls`` and the shipped recipes using it."""
    key, name = recipe_key(cls)
    lines = [f"`{key}: {name}`"]
    recipes = recipe_uses().get((key, name), [])
    if recipes:
        shown = ", ".join(f"`{recipe}`" for recipe in recipes[:SHOWN_RECIPES])
        more = len(recipes) - SHOWN_RECIPES
        lines.append(f"in {shown}" + (f" and {more} more" if more > 0 else ""))
    return "<br>".join(lines)


def page():
    """The catalogue's Markdown: one table per section, each class linked to its API reference."""
    parts = []
    for title, package, bases in sections():
        parts += [
            f"## {title}",
            "",
            f"`{package.__name__}`: [API reference](api/{package.__name__.split('.')[-1]}.md).",
            "",
            "| class | paper | when to use | recipe | needs `MetricLearningModel` |",
            "|---|---|---|---|---|",
        ]
        for cls in sorted(public_classes(package, bases), key=lambda cls: cls.__name__):
            _, paper = summary_and_paper(cls)
            when = when_to_use(cls)
            cells = (f"[`{cls.__name__}`][{package.__name__}.{cls.__name__}]", paper, when[:1].upper() + when[1:],
                     recipe_cell(cls), "yes" if needs_model(cls) else "—")
            parts.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        parts.append("")
    return "\n".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a class lacks what its row needs")
    args = parser.parse_args(argv)
    try:
        text = page()
    except ValueError as error:
        sys.exit(str(error))
    if not args.check:
        print(text)


if __name__ == "__main__":
    main()
