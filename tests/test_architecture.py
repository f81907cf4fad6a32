"""The import graph of tfdml: no cycle, and no module imports a higher layer (docs/developing.md).

Every ``import``/``from ... import`` of a tfdml module counts, wherever it is written (module
level or inside a function, absolute or relative), and so does ``importlib.import_module`` of
a literal name. ``from package import name`` is an edge to ``package.name`` when that is a
module, else to the package's ``__init__`` (its face).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tfdml"

#: Lowest first. A module belongs to the layer of its longest listed prefix; it may import its
#: own layer and the layers below it.
LAYERS = (
    ("base and input", ("tfdml.checks", "tfdml.distances", "tfdml.masks", "tfdml.io", "tfdml.extras", "tfdml.neighbors", "tfdml.registry", "tfdml.serialization", "tfdml.data", "tfdml.sampling")),
    ("mining", ("tfdml.mining",)),
    ("losses", ("tfdml.losses",)),
    ("models", ("tfdml.models",)),
    ("training and evaluation", ("tfdml.training", "tfdml.evaluation")),
    ("serving", ("tfdml.export", "tfdml.index")),
    ("applications", ("tfdml", "tfdml.experiment", "tfdml.run", "tfdml.tune", "tfdml.evaluate")),
)


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module):
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1] if matches else None


def imported_modules(module, path, known):
    """The tfdml modules ``module`` (at ``path``) imports."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.add(candidate if candidate in known else source)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(node.args[0].value)
    return {name for name in found if name in known}


def import_graph():
    known = modules()
    return {module: imported_modules(module, path, known) for module, path in known.items()}


def test_every_module_has_a_layer():
    unplaced = sorted(module for module in modules() if layer_of(module) is None)
    assert not unplaced, f"modules in no layer of LAYERS (place them in tests/test_architecture.py): {unplaced}"


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for source, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(source)
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or ``None``."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle) + f" (break the edge {cycle[-2]} -> {cycle[-1]})"


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_find_cycle(graph, expected):
    assert find_cycle(graph) == expected


def test_relative_and_function_level_imports_count(tmp_path):
    package = tmp_path / "tfdml" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .low import f\n")
    (package / "low.py").write_text("def f():\n    from tfdml.pkg import g\n    from . import low\n")
    known = {"tfdml.pkg": package / "__init__.py", "tfdml.pkg.low": package / "low.py"}
    assert imported_modules("tfdml.pkg", known["tfdml.pkg"], known) == {"tfdml.pkg.low"}
    assert imported_modules("tfdml.pkg.low", known["tfdml.pkg.low"], known) == {"tfdml.pkg", "tfdml.pkg.low"}


def package_of(module):
    """The package of ``module`` directly under ``tfdml`` (``tfdml.training.model`` → ``tfdml.training``),
    or the module itself when it is a top-level module."""
    return ".".join(module.split(".")[:2])


def test_every_package_lies_in_one_layer():
    """A package is one layer: no module of ``tfdml/training/`` is an application placed elsewhere, so the
    package edges below are those of its modules."""
    split = {}
    for module in modules():
        if module != "tfdml":
            split.setdefault(package_of(module), set()).add(LAYERS[layer_of(module)][0])
    mixed = {package: sorted(layers) for package, layers in split.items() if len(layers) > 1}
    assert not mixed, f"packages spread over several layers: {mixed}"


def test_no_package_imports_a_higher_layer_and_training_serves_nothing():
    graph = {}
    for source, targets in import_graph().items():
        if source != "tfdml":
            graph.setdefault(package_of(source), set()).update(package_of(t) for t in targets if t != "tfdml")
    upward = [
        f"{source} imports {target}"
        for source, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(source)
    ]
    assert not upward, "upward package imports:\n" + "\n".join(upward)
    assert not graph["tfdml.training"] & {"tfdml.export", "tfdml.index"}, graph["tfdml.training"]


def fit_calls(path):
    """Line numbers of Keras ``fit`` calls in the Python file ``path``: every ``<receiver>.fit(...)`` call
    but ``experiment.fit(...)`` (an :class:`tfdml.experiment.Experiment`'s, which is the point)."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "fit"
        and not ast.unparse(node.func.value).endswith("experiment")
    ]


def test_fit_is_assembled_once():
    """``train.py``, tuning trials, the study and the zoo all train through ``Experiment.fit``: the code base
    calls Keras ``fit`` once, in ``tfdml/experiment.py``."""
    repo = PACKAGE.parent
    sources = [*PACKAGE.rglob("*.py"), *(repo / "benchmarks").rglob("*.py"), repo / "train.py"]
    calls = {str(path.relative_to(repo)): fit_calls(path) for path in sources}
    assert {path: len(lines) for path, lines in calls.items() if lines} == {"tfdml/experiment.py": 1}
