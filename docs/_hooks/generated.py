"""MkDocs hook (mkdocs.yml ``hooks``): the pages written from the code at build time, so they cannot go stale.

A page's line ``<!-- generated: NAME -->`` is replaced by ``GENERATORS[NAME]()``:

- ``catalogue``: every loss, miner and sampler (:func:`benchmarks.catalogue.page`, from the registry and the
  docstrings' ``When to use:`` paragraphs);
- ``recipe-keys``: every recipe key with its type and default (:func:`recipe_keys`, from
  ``tfdml.training.config.DEFAULTS``).
"""

import ast
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.M)


def _schema_rows(defaults, prefix=""):
    from tfdml.training import config

    for key, default in defaults.items():
        path = f"{prefix}{key}"
        if path in config.OPEN_SECTIONS:
            yield path, "a mapping (the named class's or schedule's arguments)", default
        elif isinstance(default, dict):
            yield from _schema_rows(default, f"{path}.")
        else:
            kind = config.NULL_DEFAULT_TYPES.get(path, type(default))
            # A null default of no declared type takes several kinds of value (the notes say which).
            name = "see the notes" if kind is type(None) else config.TYPE_NAMES.get(kind, kind.__name__)
            if default is None or path in config.NULLABLE:
                name += " or null"
            yield path, name, default


def _yaml(value):
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def schema_comments():
    """``{key path: text}``: the comment lines right above a key (or a section) in ``DEFAULTS``' source, which say
    what it means; a section's comment describes its first key too when nothing is written above that key."""
    from tfdml.training import config

    source = pathlib.Path(config.__file__).read_text()
    lines = source.splitlines()
    node = next(node for node in ast.parse(source).body if isinstance(node, ast.Assign)
                and any(isinstance(target, ast.Name) and target.id == "DEFAULTS" for target in node.targets))
    comments = {}

    def above(lineno):
        found = []
        for line in reversed(lines[:lineno - 1]):
            if not line.strip().startswith("#"):
                break
            found.insert(0, line.strip().lstrip("#").strip())
        return " ".join(found)

    def walk(mapping, prefix):
        for key, value in zip(mapping.keys, mapping.values):
            path = f"{prefix}{key.value}"
            if above(key.lineno):
                comments[path] = above(key.lineno)
            if isinstance(value, ast.Dict):
                walk(value, f"{path}.")

    walk(node.value, "")
    return comments


def recipe_keys():
    """A table of every recipe key: its type, its default and the schema's comment on it."""
    from tfdml.training import config

    comments = schema_comments()
    rows = ["| key | type | default | notes |", "|---|---|---|---|"]
    for path, kind, default in _schema_rows(config.DEFAULTS):
        note = comments.get(path) or next((comments[section] for section in comments if path.startswith(f"{section}.")
                                           and not any(p.startswith(f"{section}.") for p in comments)), "")
        rows.append(f"| `{path}` | {kind} | `{_yaml(default)}` | {note.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def catalogue():
    if str(REPO) not in sys.path:  # benchmarks/ is a package of the repository, not of the install
        sys.path.insert(0, str(REPO))  # (here: MkDocs restores sys.path after loading a hook)
    from benchmarks import catalogue as module

    return module.page()


GENERATORS = {"catalogue": catalogue, "recipe-keys": recipe_keys}


def on_page_markdown(markdown, page, **kwargs):
    def generate(match):
        if match.group(1) not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: no generator {match.group(1)!r} (known: {sorted(GENERATORS)})")
        return GENERATORS[match.group(1)]()

    return PLACEHOLDER.sub(generate, markdown)
