"""`python train.py` with no arguments: Omniglot shipped with tfdml, a readable run, its pictures.

The full default run (30 epochs) is measured by ``benchmarks/first_run.py`` and the model zoo; here it
runs for one short epoch, which exercises everything the user sees.
"""

import hashlib
import importlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest

from tfdml import data

# The module, not the reader function ``tfdml.data.omniglot`` that shadows it as a package attribute.
omniglot_module = importlib.import_module("tfdml.data.omniglot")

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGED = omniglot_module.PACKAGED_ROOT
SHORT = ["--epochs", "1", "--set", "steps_per_epoch=2", "--set", "evaluation.every_n_epochs=1", "--set",
         "model.filters=8", "--quiet"]


def test_the_shipped_zips_are_the_published_files_with_their_licence():
    readme = (PACKAGED / "README.md").read_text()
    for name in omniglot_module.ZIP_NAMES:
        digest = hashlib.sha256((PACKAGED / name).read_bytes()).hexdigest()
        assert f"`{name}`: {digest}" in readme
    assert "Copyright (c) 2015 Brenden Lake" in (PACKAGED / "LICENSE").read_text()
    assert "Lake" in readme and "Science" in readme


def test_load_omniglot_without_root_reads_the_shipped_copy():
    train = data.load("omniglot", split="train")
    test = data.load("omniglot", split="test", image_size=28)
    assert (len(train), len(set(train.labels)), len(set(train.categories))) == (2720, 136, 5)
    assert (len(test), len(set(test.labels)), len(set(test.categories))) == (2120, 106, 3)
    assert test.load(np.int64(0)).shape == (28, 28, 1)


@pytest.mark.slow
def test_the_package_data_is_in_the_wheel_and_an_installed_tfdml_loads_it(tmp_path):
    """`pip install .` (not editable): the zips travel as package data, and an installed tfdml,
    imported from another folder, reads them."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    # Build from a copy: setuptools writes build/ and *.egg-info into the source tree.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "models", "build", "*.egg-info",
                                                                  "__pycache__", ".pytest_cache", "docs", "benchmarks"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("tfdml-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (*omniglot_module.ZIP_NAMES, "LICENSE", "README.md"):
        assert f"tfdml/data/omniglot_background_small/{name}" in names
    installed = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = "import tfdml; print(tfdml.__file__); print(len(tfdml.data.load('omniglot', split='test')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr[-3000:]
    where, count = result.stdout.split()[-2:]
    assert where.startswith(str(site)) and count == "2120"


@pytest.fixture
def damaged_copy(tmp_path, monkeypatch):
    """A copy of the shipped folder standing in for it, to be damaged by the test."""
    copy = tmp_path / "packaged"
    shutil.copytree(PACKAGED, copy)
    monkeypatch.setattr(omniglot_module, "PACKAGED_ROOT", copy)
    return copy


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def corrupt_member(path):
    """Flip bytes inside the compressed data of the first PNG: the zip opens, that member's CRC fails."""
    content = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        member = next(info for info in archive.infolist() if info.filename.endswith(".png"))
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    for offset in range(start + 8, start + 40):
        content[offset] ^= 0xFF
    path.write_bytes(bytes(content))


@pytest.mark.parametrize("damage", [os.remove, truncate, corrupt_member], ids=["missing", "truncated", "corrupt"])
def test_a_missing_or_damaged_shipped_zip_is_one_error_naming_the_file_and_the_ways_out(damaged_copy, damage):
    path = damaged_copy / "images_background_small2.zip"
    damage(path)
    with pytest.raises(data.DataFileError) as raised:
        data.load("omniglot", split="test")
    message = str(raised.value)
    assert str(path) in message and "data.root" in message and "omniglot_tfds" in message
    assert raised.value.__cause__ is None  # no zipfile traceback chained in


def test_a_damaged_zip_under_a_user_root_names_that_file(tmp_path):
    for name in omniglot_module.ZIP_NAMES:
        shutil.copy(PACKAGED / name, tmp_path / name)
    truncate(tmp_path / "images_background_small1.zip")
    with pytest.raises(data.DataFileError, match=re.escape(str(tmp_path / "images_background_small1.zip"))):
        data.omniglot(tmp_path, split="train")


def test_train_py_on_a_damaged_shipped_copy_is_one_line_not_a_traceback(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(PACKAGED, broken)
    truncate(broken / "images_background_small1.zip")
    # The same run as `python train.py`, with the shipped folder replaced by the damaged copy.
    code = (
        "import importlib, sys, pathlib, runpy; o = importlib.import_module('tfdml.data.omniglot'); "
        f"o.PACKAGED_ROOT = pathlib.Path({str(broken)!r}); sys.argv = ['train.py', '--quiet']; "
        f"runpy.run_path({str(REPO / 'train.py')!r}, run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "train.py: error: omniglot:" in result.stderr and "images_background_small1.zip" in result.stderr


@pytest.mark.slow
def test_the_default_run_opens_with_one_line_shows_the_table_and_writes_both_pictures(tmp_path):
    """README's first command, shortened to one epoch: no TensorFlow C++ start-up lines, one opening
    line, the table with one-shot accuracy for all three rows, and two PNGs in the run folder."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    result = subprocess.run([sys.executable, str(REPO / "train.py"), *SHORT], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for noise in ("cuInit", "cudart_stub", "absl::InitializeLog", "I0000", "E0000"):
        assert noise not in result.stderr and noise not in result.stdout
    assert result.stderr.count("UserWarning") <= 1  # each evaluation's same warning shown once
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Training omniglot_quickstart: MarginLoss on omniglot/train/fit (2200 images, 110 classes")
    assert "for 1 epochs of 2 steps; testing on omniglot/test (2120 images, 106 classes)" in lines[0]
    assert "exporting to models/omniglot_quickstart/<next version>/" in lines[0]
    header = next(line for line in lines if "R@1" in line)
    assert "MAP@R" in header and "20-way 1-shot" in header
    for row in ("raw pixels", "untrained", "trained"):
        assert re.search(rf"^{row} .* 0\.\d{{3}} ± 0\.\d{{3}}$", result.stdout, re.M), row
    run_dir = tmp_path / "runs" / "omniglot_quickstart"
    for picture in ("retrieval.png", "embedding_map.png"):
        assert f"runs/omniglot_quickstart/{picture}" in result.stdout
        with PIL.Image.open(run_dir / picture) as image:
            assert image.format == "PNG" and min(image.size) >= 400
    assert not list(run_dir.glob(".tmp-*"))
    assert (tmp_path / "models" / "omniglot_quickstart" / "1" / "saved_model.pb").exists()


@pytest.mark.parametrize(
    "user_level, fails, shown",
    [(None, False, False), (None, True, True), ("0", False, True)],
    ids=["unset: held back", "unset, import fails: replayed", "set by the user: untouched"],
)
def test_tensorflows_start_up_lines_are_held_back_only_when_the_user_set_no_log_level(user_level, fails, shown):
    code = (
        "import os, runpy\n"
        f"quiet = runpy.run_path({str(REPO / 'train.py')!r})['quiet_tensorflow_start']\n"
        "try:\n"
        "    with quiet():\n"
        "        os.write(2, b'C++ start-up line\\n')\n"
        f"        if {fails}: raise ImportError('no tensorflow')\n"
        "except ImportError:\n"
        "    pass\n"
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n"
        "os.write(2, b'later line\\n')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if user_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = user_level
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert ("C++ start-up line" in result.stderr) == shown and "later line" in result.stderr
    assert result.stdout.strip() == (user_level or "3")
