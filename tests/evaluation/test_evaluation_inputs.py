"""Issue 33 (round three of the hostile probes): few-shot evaluation, ``python -m tfdml.evaluate``, the
image-folder reader and ``benchmarks/model_zoo.py``. Each test names the defect (Dn) it pins."""

import contextlib
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import tracemalloc
import types

import keras
import numpy as np
import PIL.Image
import pytest

import tfdml.data
from tfdml import evaluation
from tfdml.evaluate import load_embedder, main
from tfdml.evaluation import fewshot, plots
from tfdml.export import export_embedding_model, export_retrieval_model
from tfdml.index import GalleryIndex

import paths

REPO = str(paths.REPO)


# ---------------------------------------------------------------- few-shot


def _fewshot_data(classes=30, per_class=5, dim=8):
    labels = np.repeat(np.arange(classes), per_class)
    return np.random.default_rng(0).normal(size=(len(labels), dim)), labels, labels // 10


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_d10_fewshot_refuses_non_finite_embeddings(bad):
    embeddings, labels, _ = _fewshot_data()
    embeddings[::2] = bad
    with pytest.raises(ValueError, match="embeddings contain NaN or inf"):
        fewshot.fewshot_accuracy(embeddings, labels, 5, 1, episodes=10)
    with pytest.raises(ValueError, match="embeddings contain NaN or inf"):
        fewshot.episode_accuracies(embeddings, fewshot.sample_episodes(labels, 5, 1, episodes=10))


def test_d17_fewshot_categories_and_lengths_are_validated():
    embeddings, labels, categories = _fewshot_data()
    with pytest.raises(ValueError, match=r"categories must be >= -1 \(-1: unknown\); got -2"):
        fewshot.fewshot_accuracy(embeddings, labels, 5, 1, categories=categories - 2, episodes=10)
    with pytest.raises(ValueError, match="categories must hold integers; got dtype <U1"):
        fewshot.fewshot_accuracy(embeddings, labels, 5, 1, categories=np.array(["a", "b", "c"])[categories])
    with pytest.raises(ValueError, match="categories must be integer"):
        fewshot.fewshot_accuracy(embeddings, labels, 5, 1, categories=categories + 0.5)
    with pytest.raises(ValueError, match=r"categories must have shape \(150,\).*got \(10,\)"):
        fewshot.fewshot_accuracy(embeddings, labels, 5, 1, categories=categories[:10])
    with pytest.raises(ValueError, match=r"fewshot: labels must have shape \(100,\).*got \(150,\)"):
        fewshot.fewshot_accuracy(embeddings[:100], labels, 5, 1)
    with pytest.raises(ValueError, match="labels must hold integers"):
        fewshot.sample_episodes(np.array([f"c{label}" for label in labels]), 5, 1)
    with pytest.raises(ValueError, match="categories must hold integers"):
        evaluation.evaluate(embeddings, labels, metrics=["fewshot_20way_1shot_within"],
                            categories=np.array(["a", "b", "c"])[categories])
    # -1 stays "unknown": those classes are never drawn, the known categories are all used.
    categories[labels >= 20] = -1
    drawn = fewshot.sample_episodes(labels, 5, 1, episodes=200, categories=categories)
    assert set(categories[drawn.support.ravel()]) == {0, 1}


def test_d24_episode_memory_does_not_grow_with_the_largest_class():
    labels = np.concatenate([np.zeros(20_000, np.int64), np.repeat(np.arange(1, 101), 5)])
    tracemalloc.start()
    try:
        drawn = fewshot.sample_episodes(labels, 5, 1, episodes=200, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The labels' own bookkeeping is about 1 MB; keys for every image of the large class would be 160 MB.
    assert peak < 4 * 2**20, peak
    assert drawn.support.shape == (200, 5, 1)


def test_d24_episodes_draw_classes_and_images_uniformly():
    labels = np.concatenate([np.zeros(40, np.int64), np.repeat(np.arange(1, 7), 3)])  # one class of 40, six of 3
    drawn = fewshot.sample_episodes(labels, 4, 2, queries=1, episodes=4000, seed=0)
    for classes, support, query in zip(drawn.classes, drawn.support, drawn.query):
        rows = np.concatenate([support, query], axis=1)
        assert len(set(classes)) == 4 and len(set(rows.ravel())) == rows.size
        np.testing.assert_array_equal(labels[rows], np.repeat(classes[:, None], 3, axis=1))
    # Each class is in an episode with probability 4/7.
    times = np.bincount(drawn.classes.ravel(), minlength=7)
    assert np.all(np.abs(times - 4000 * 4 / 7) < 5 * np.sqrt(4000 * 4 / 7 * 3 / 7)), times
    # Each image of the large class is equally likely in every support and query slot.
    big = np.concatenate([drawn.support, drawn.query], axis=2)[drawn.classes == 0]  # (draws, 3)
    for slot in big.T:
        seen = np.bincount(slot, minlength=40)
        expected = len(slot) / 40
        assert seen.size == 40 and np.all(np.abs(seen - expected) < 5 * np.sqrt(expected)), seen


# ---------------------------------------------------------------- image-folder reader


def _image_folder(root, classes, per_class, rng, size=12):
    for name in classes:
        os.makedirs(root / name, exist_ok=True)
        for index in range(per_class):
            PIL.Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name / f"{index}.png")
    return root


def test_d35_a_loose_image_at_the_root_is_warned_about(tmp_path):
    root = _image_folder(tmp_path / "mixed", "ab", 2, np.random.default_rng(0))
    PIL.Image.new("RGB", (12, 12)).save(root / "loose.png")
    (root / "notes.txt").write_text("not an image: ignored silently")
    with pytest.warns(UserWarning, match=r"1 image file\(s\) at the root .* not in a class folder.*loose\.png"):
        data = tfdml.data.image_folder(root, validate="none")
    assert len(data) == 4 and data.class_names == ["a", "b"]


def test_d35_a_one_class_folder_cannot_be_split_into_train_and_test(tmp_path):
    root = _image_folder(tmp_path / "oneclass", ["only"], 3, np.random.default_rng(0))
    for split in ("train", "test"):
        with pytest.raises(ValueError, match=rf"split='{split}'.* at least 2 classes.* has 1.*split='all'"):
            tfdml.data.load("folder", root=root, split=split, validate="none")
    assert len(tfdml.data.load("folder", root=root, split="all", validate="none")) == 3


def test_d35_a_root_that_is_a_file_is_reported_as_not_a_folder(tmp_path):
    (tmp_path / "list.csv").write_text("a.png,0\n")
    with pytest.raises(FileNotFoundError, match=r"list\.csv is a file, not a folder"):
        tfdml.data.image_folder(tmp_path / "list.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tfdml.data.image_folder(tmp_path / "nope")


# ---------------------------------------------------------------- python -m tfdml.evaluate


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Two image folders (3 classes; 1 class), a tiny embedding export and a retrieval export of it."""
    base = tmp_path_factory.mktemp("evaluate_cli")
    rng = np.random.default_rng(0)
    _image_folder(base / "ok", "abc", 3, rng)
    _image_folder(base / "oneclass", ["only"], 4, rng)
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])
    index = GalleryIndex(dim=4)
    index.add(rng.normal(size=(6, 4)).astype(np.float32), ids=np.arange(6), labels=np.arange(6) % 3)
    return types.SimpleNamespace(
        base=base,
        embedding=export_embedding_model(model, str(base / "models"), "tiny", 1),
        search=export_retrieval_model(model, index, str(base / "models"), "tiny-search", 1, k=2),
    )


def _argv(workspace, out, folder="ok", model=None):
    return [str(model or workspace.embedding), "--data", "folder", "--root", str(workspace.base / folder),
            "--split", "all", "--out", str(out), "--verbose", "0"]


def _cli_error(argv, capsys):
    """stderr of a ``main(argv)`` that must exit like argparse (status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_d25_one_class_warns_and_reports_nan(workspace, tmp_path):
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match="one class"):
        report = main(_argv(workspace, out, folder="oneclass"))
    assert np.isnan(report["metrics"]["recall_at_1"]) and np.isnan(report["metrics"]["nmi"])
    written = json.loads((out / "report.json").read_text())
    assert written["num_classes"] == 1 and "negative_distances" not in written["figures"]
    assert sorted(os.listdir(out)) == sorted(["report.json", *written["figures"].values()])


def test_every_report_file_is_written_through_tfdml_io(workspace, tmp_path, monkeypatch):
    import tfdml.evaluate

    written = []
    for module, name in ((plots, "save_file_atomically"), (tfdml.evaluate, "write_file_atomically")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda path, *args, original=original: written.append(path) or original(path, *args))
    main(_argv(workspace, tmp_path / "eval"))
    assert sorted(os.path.basename(path) for path in written) == sorted(os.listdir(tmp_path / "eval")) == sorted(
        tfdml.evaluate.REPORT_FILES
    )


def test_entries_refuse_bad_categories_and_self_index_naming_them():
    embeddings, labels, categories = _fewshot_data()
    with pytest.raises(ValueError, match=r"^RetrievalEvaluation: categories must hold integers"):
        evaluation.RetrievalEvaluation((embeddings, labels), categories=np.array(["a", "b", "c"])[categories])
    with pytest.raises(ValueError, match=r"^categories must have shape \(150,\) to match the embeddings; got \(10,\)"):
        evaluation.evaluate(embeddings, labels, metrics=["fewshot_5way_1shot"], categories=categories[:10])
    with pytest.raises(ValueError, match=r"^self_index must hold integers; got dtype float64"):
        evaluation.nearest_neighbors(embeddings, embeddings, k=1, self_index=np.zeros(len(labels)))


def test_d25_a_failed_report_leaves_no_half_written_folder(workspace, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    def quick(embeddings, labels, path):  # the t-SNE projection is not under test here, only the folder
        pathlib.Path(path).write_bytes(b"projection")
        return path

    monkeypatch.setattr(plots, "projection_plot", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main(_argv(workspace, tmp_path / "eval"))
    assert os.listdir(tmp_path) == []
    # A folder holding an earlier report is replaced as a whole, or kept as it was.
    monkeypatch.setattr(plots, "projection_plot", quick)
    main(_argv(workspace, tmp_path / "eval"))
    before = {name: (tmp_path / "eval" / name).read_bytes() for name in os.listdir(tmp_path / "eval")}
    monkeypatch.setattr(plots, "projection_plot", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main(_argv(workspace, tmp_path / "eval") + ["--k", "1"])
    assert {name: (tmp_path / "eval" / name).read_bytes() for name in os.listdir(tmp_path / "eval")} == before
    monkeypatch.setattr(plots, "projection_plot", quick)
    report = main(_argv(workspace, tmp_path / "eval") + ["--k", "1"])
    assert "recall_at_1" in report["metrics"] and "recall_at_2" not in report["metrics"]
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["metrics"].keys() == report["metrics"].keys()
    assert os.listdir(tmp_path) == ["eval"]


def test_d26_a_retrieval_export_is_refused_naming_the_embedding_export(workspace, tmp_path, capsys):
    error = _cli_error(_argv(workspace, tmp_path / "eval", model=workspace.search), capsys)
    assert "retrieval export" in error and "models/<name>/<version>" in error and workspace.search in error
    assert not (tmp_path / "eval").exists()
    with pytest.raises(ValueError, match="retrieval export"):
        load_embedder(workspace.search)


@pytest.mark.parametrize("arguments, culprit", [
    (["--k", "0"], "argument --k: expected an integer >= 1; got '0'"),
    (["--k", "1", "-3"], "argument --k: expected an integer >= 1; got '-3'"),
    (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1; got '0'"),
    (["--batch-size", "-5"], "argument --batch-size: expected an integer >= 1; got '-5'"),
    (["--image-size", "0"], "argument --image-size: expected an integer >= 1; got '0'"),
    (["--split", "bogus"], "argument --split: invalid choice: 'bogus'"),
    (["--data", "bogus"], "argument --data: invalid choice: 'bogus'"),
])
def test_d32_bad_arguments_are_argparse_errors(workspace, tmp_path, capsys, arguments, culprit):
    assert culprit in _cli_error(_argv(workspace, tmp_path / "eval") + arguments, capsys)
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("run_folder", [False, True])
def test_d32_a_folder_without_a_saved_model_is_an_argparse_error(workspace, tmp_path, capsys, run_folder):
    model = tmp_path / "model"
    model.mkdir()
    if run_folder:
        (model / "config.yaml").write_text("seed: 0\n")
        (model / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n')
    error = _cli_error(_argv(workspace, tmp_path / "eval", model=model), capsys)
    assert f"MODEL {model} holds no SavedModel" in error and "models/<name>/<version>" in error
    assert not (tmp_path / "eval").exists()


def test_d32_an_out_that_is_a_file_or_holds_other_files_is_an_argparse_error(workspace, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    assert f"--out {taken}: " in _cli_error(_argv(workspace, taken), capsys)
    assert "not a folder" in _cli_error(_argv(workspace, taken / "eval"), capsys)
    assert taken.read_text() == "mine"
    # A folder holding someone else's files is not replaced by a report.
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("keep")
    assert "notes.txt" in _cli_error(_argv(workspace, tmp_path / "theirs"), capsys)
    assert os.listdir(tmp_path / "theirs") == ["notes.txt"]


def test_d32_an_unwritable_out_is_an_argparse_error(workspace, tmp_path, capsys):
    with _unwritable_folder(tmp_path / "locked") as locked:
        assert f"--out {locked / 'eval'}: cannot write in {locked}" in _cli_error(_argv(workspace, locked / "eval"), capsys)
        assert os.listdir(locked) == []


@contextlib.contextmanager
def _unwritable_folder(path):
    path.mkdir()
    os.chmod(path, 0o500)
    # Permission bits do not stop root; the immutable flag does (as the probes simulated it).
    immutable = os.access(path, os.W_OK)
    if immutable and (not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(path)]).returncode):
        pytest.skip("root without CAP_LINUX_IMMUTABLE: no way to make a folder unwritable here")
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        os.chmod(path, 0o700)


# ---------------------------------------------------------------- benchmarks/model_zoo.py


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """benchmarks/model_zoo.py with its records folder and README in ``tmp_path``."""
    spec = importlib.util.spec_from_file_location("model_zoo_under_test", os.path.join(REPO, "benchmarks", "model_zoo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{module.BEGIN}\n| old table |\n{module.END}\nrest\n")
    monkeypatch.setattr(module, "RESULTS", str(tmp_path / "zoo"))
    monkeypatch.setattr(module, "PAGE", str(readme))
    monkeypatch.setattr(module, "README", str(readme))
    return module


def _zoo_record(seed=0):
    return {
        "entry": "digits_margin", "seed": seed, "recipe": "digits_margin.yaml", "epochs": 2, "best_epoch": None,
        "select_by": None, "train_seconds": 6.0, "train_cpu_seconds": 5.0,
        "in_process": {"raw pixels": {"map_at_r": 0.6}}, "curve": [{"epoch": 1, "loss": 0.3}],
        "test": {"recall_at_1": 0.9, "map_at_r": 0.5, "nmi": 0.7},
    }


@pytest.mark.parametrize("folder_exists", [False, True])
def test_d12_report_only_without_records_refuses_and_keeps_the_table(zoo, tmp_path, folder_exists):
    if folder_exists:
        (tmp_path / "zoo").mkdir()
    before = (tmp_path / "README.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        zoo.main(["--report-only"])
    assert f"no zoo records (*.json) in {tmp_path / 'zoo'}" in str(exit_info.value.code)
    assert (tmp_path / "README.md").read_text() == before
    # With a record, the table is rewritten from it.
    (tmp_path / "zoo").mkdir(exist_ok=True)
    (tmp_path / "zoo" / "digits_margin-s0.json").write_text(json.dumps(_zoo_record()))
    zoo.main(["--report-only"])
    assert "| `pipelines/digits_margin.yaml` | digits 0–4 | 2 |" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize("content, problem", [
    ("{", "not valid JSON"),
    ('{"entry": "digits_margin", "seed": 9}', "lacks best_epoch, curve, epochs, in_process, recipe, train_seconds"),
    ("[1, 2]", "not a JSON object"),
])
def test_d36_a_corrupt_or_partial_record_is_named(zoo, tmp_path, content, problem):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "digits_margin-s0.json").write_text(json.dumps(_zoo_record()))
    (tmp_path / "zoo" / "digits_margin-s9.json").write_text(content)
    before = (tmp_path / "README.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        zoo.main(["--report-only"])
    message = str(exit_info.value.code)
    assert str(tmp_path / "zoo" / "digits_margin-s9.json") in message and problem in message, message
    assert (tmp_path / "README.md").read_text() == before


def test_the_evaluation_callback_config_holds_every_constructor_argument():
    """The callback's config is read from its signature, like every tfdml class: none is forgotten."""
    images, labels = np.zeros((4, 3), np.float32), np.array([0, 0, 1, 1])
    callback = evaluation.RetrievalEvaluation(
        (images, labels), every_n_epochs=2, metrics=("recall_at_k",), k=(1, 2), metric="cosine", prefix="v_",
        batch_size=2, categories=[5, 5, 6, 6], seed=3,
    )
    assert callback.get_config() == {
        "every_n_epochs": 2, "metrics": ["recall_at_k"], "k": [1, 2], "metric": "cosine", "prefix": "v_",
        "batch_size": 2, "categories": [5, 5, 6, 6], "seed": 3,
    }
