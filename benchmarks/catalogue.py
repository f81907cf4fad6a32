"""README's catalogue of losses, miners and samplers, written from their docstrings.

A row per public class of ``tfdml.losses``, ``tfdml.mining`` and ``tfdml.sampling`` (their base
classes left out): its name, its docstring's first line, its docstring's ``When to use:`` paragraph
(every public class has one), how a recipe names it (``loss.class``, ``miner.class`` or ``sampler.class``
and its registered name; ``MetricLearningModel`` for losses with trainable parameters) with the shipped
recipes (``pipelines/*.yaml``, as :func:`tfdml.training.config.load_config` resolves them) that use it, and
the first paper the docstring cites. The block between README's ``<!-- catalogue -->`` markers is
rewritten; ``tests/test_catalogue.py`` fails while it is stale, so a new loss, miner or sampler cannot be
left out of it.

Usage (from the repository root):

    python -m benchmarks.catalogue           # rewrite README's catalogue
    python -m benchmarks.catalogue --check   # exit 1 if it is stale
"""

import argparse
import collections
import functools
import inspect
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RECIPES = REPO / "pipelines"
BEGIN, END = "<!-- catalogue -->", "<!-- /catalogue -->"
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


def recipe_cell(cls):
    """How a recipe names ``cls``, whether it trains with ``MetricLearningModel``, and the shipped recipes
    using it."""
    from tfdml.losses import ParametricDMLLoss

    key, name = recipe_key(cls)
    lines = [f"`{key}: {name}`"]
    if issubclass(cls, ParametricDMLLoss):
        lines.append("trains with `MetricLearningModel`")
    recipes = recipe_uses().get((key, name), [])
    if recipes:
        shown = ", ".join(f"`{recipe}`" for recipe in recipes[:SHOWN_RECIPES])
        more = len(recipes) - SHOWN_RECIPES
        lines.append(f"in {shown}" + (f" and {more} more" if more > 0 else ""))
    return "<br>".join(lines)


def block():
    """The catalogue block, markers included."""
    note = "<!-- written by `python -m benchmarks.catalogue` from the docstrings and pipelines/: do not edit -->"
    parts = [BEGIN, note]
    for title, package, bases in sections():
        parts += [
            "",
            f"**{title}** (`{package.__name__}`)",
            "",
            "| class | what it does | when to use | recipe | paper |",
            "|---|---|---|---|---|",
        ]
        for cls in sorted(public_classes(package, bases), key=lambda cls: cls.__name__):
            summary, paper = summary_and_paper(cls)
            when = when_to_use(cls)
            cells = (f"`{cls.__name__}`", summary, when[:1].upper() + when[1:], recipe_cell(cls), paper)
            parts.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(parts + [END])


def current_block(text):
    """README's catalogue block as it stands, markers included."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"README.md needs one {BEGIN} … {END} block for the catalogue.")
    start = text.index(BEGIN)
    return text[start : text.index(END) + len(END)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit with status 1 if README's catalogue is stale")
    args = parser.parse_args(argv)
    text = README.read_text()
    old, new = current_block(text), block()
    if args.check:
        if old != new:
            sys.exit("README.md's catalogue is stale: run python -m benchmarks.catalogue")
        return
    from tfdml.io import write_file_atomically

    write_file_atomically(README, text.replace(old, new))


if __name__ == "__main__":
    main()
