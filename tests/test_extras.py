"""The light core: tfdml's losses, miners and samplers work without the optional packages, and each
optional package missing is one error naming the extra (``tfdml[train]``, ...) that installs it."""

import json
import re
import subprocess
import sys
import tomllib

import paths
import pytest

from tfdml import extras

PYPROJECT = tomllib.loads((paths.REPO / "pyproject.toml").read_text())["project"]

# Runs in a fresh interpreter where every optional package is unimportable, as in a core-only install.
CORE_ONLY = r"""
import importlib.abc, json, sys
BLOCKED = set(sys.argv[1].split(","))

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Blocker())
import numpy as np
import tfdml

labels = np.repeat(np.arange(4), 4)
embeddings = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
loss = tfdml.losses.TripletLoss(miner=tfdml.mining.SemiHardMiner())
sampler = tfdml.sampling.SPCSampler(labels, batch_size=8, samples_per_class=4, seed=0)
out = {"loss": float(loss(labels, embeddings)), "batch": sampler.plan_epoch(0).shape[1]}

import tfdml.data, tfdml.evaluation.plots, tfdml.export
errors = {
    "tfds": lambda: tfdml.data.load("cub200", root="/nonexistent"),
    "plots": lambda: tfdml.evaluation.plots.singular_value_plot(np.ones(3), "/nonexistent/s.png"),
    "export": lambda: tfdml.export.check_export_settings("m", None, "/nonexistent"),
    "faiss": lambda: tfdml.index.GalleryIndex(4, backend="faiss"),
}
for key, call in errors.items():
    try:
        call()
    except ModuleNotFoundError as error:
        out[key] = [type(error).__name__, str(error)]
out["imported"] = sorted({name.split(".")[0] for name in sys.modules} & BLOCKED)
print(json.dumps(out))
"""


def test_the_core_works_without_the_optional_packages_and_names_the_missing_extra():
    completed = subprocess.run(
        [sys.executable, "-c", CORE_ONLY, ",".join(extras.OPTIONAL)],
        capture_output=True, text=True, cwd=paths.REPO, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = json.loads(completed.stdout.strip().splitlines()[-1])
    assert out["loss"] >= 0 and out["batch"] == 8
    assert out["imported"] == []
    for key, extra, package in [
        ("tfds", "train", "tensorflow-datasets"),
        ("plots", "train", "matplotlib"),
        ("export", "serving", "tensorflow-serving-api"),
        ("faiss", "faiss", "faiss-cpu"),
    ]:
        kind, message = out[key]
        assert kind == "MissingExtraError"
        assert f"pip install 'tfdml[{extra}]'" in message and package in message, message


def extra_packages(extra):
    """The package names ``tfdml[extra]`` installs, following ``tfdml[...]`` references."""
    names = set()
    for requirement in PYPROJECT["optional-dependencies"][extra]:
        included = re.fullmatch(r"tfdml\[(.+)\]", requirement)
        if included:
            for other in included.group(1).split(","):
                names |= extra_packages(other.strip())
        else:
            names.add(re.split(r"[<>=!~\[ ;]", requirement)[0])
    return names


def test_each_optional_package_is_in_its_extra_all_and_not_the_core():
    core = {re.split(r"[<>=!~\[ ;]", requirement)[0] for requirement in PYPROJECT["dependencies"]}
    for module, (package, extra) in extras.OPTIONAL.items():
        assert package in extra_packages(extra), f"{module}: {package} is not in tfdml[{extra}]"
        assert package in extra_packages("all"), package
        assert package not in core, package


def test_the_pinned_requirements_cover_the_core_and_the_main_job():
    pinned = {
        line.split("==")[0].strip().lower()
        for line in (paths.REPO / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    wanted = {re.split(r"[<>=!~\[ ;]", requirement)[0] for requirement in PYPROJECT["dependencies"]}
    missing = sorted((wanted | extra_packages("tune")) - pinned)
    assert not missing, f"requirements.txt pins no version of {missing}"


def test_require_names_what_needs_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_tuner", None)
    with pytest.raises(extras.MissingExtraError, match=r"--tune needs keras-tuner.*pip install 'tfdml\[tune\]'"):
        extras.require("keras_tuner", "--tune")
    with pytest.raises(ValueError, match="not an optional dependency"):
        extras.require("numpy", "anything")
