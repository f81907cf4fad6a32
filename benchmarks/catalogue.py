"""README's catalogue of losses, miners and samplers, written from their docstrings.

A row per public class of ``tfdml.losses``, ``tfdml.mining`` and ``tfdml.sampling`` (their base
classes left out): its name, its docstring's first line and the first paper the docstring cites.
The block between README's ``<!-- catalogue -->`` markers is rewritten; ``tests/test_catalogue.py``
fails while it is stale, so a new loss, miner or sampler cannot be left out of it.

Usage (from the repository root):

    python -m benchmarks.catalogue           # rewrite README's catalogue
    python -m benchmarks.catalogue --check   # exit 1 if it is stale
"""

import argparse
import inspect
import pathlib
import re
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- catalogue -->", "<!-- /catalogue -->"

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


def summary_and_paper(cls):
    """The docstring's first paragraph (less a trailing colon or a cited paper) and the first paper the class's
    docstring cites, else its module's, else "—"."""
    doc = inspect.getdoc(cls) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    if not first:
        raise ValueError(f"{cls.__module__}.{cls.__name__} has no docstring: the catalogue needs its first line.")
    citations = (CITATION.search(" ".join(text.split())) for text in (doc, sys.modules[cls.__module__].__doc__ or ""))
    paper = next((citation.group(0) for citation in citations if citation), "—")
    first = first.replace(f" ({paper})", "")
    return first.rstrip(":.,") + ".", paper


def block():
    """The catalogue block, markers included."""
    parts = [BEGIN, "<!-- written by `python -m benchmarks.catalogue` from the docstrings: do not edit -->"]
    for title, package, bases in sections():
        parts += ["", f"**{title}** (`{package.__name__}`)", "", "| class | what it does | paper |", "|---|---|---|"]
        for cls in sorted(public_classes(package, bases), key=lambda cls: cls.__name__):
            summary, paper = summary_and_paper(cls)
            cells = (f"`{cls.__name__}`", summary, paper)
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
