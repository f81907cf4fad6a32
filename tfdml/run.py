"""The run behind ``python train.py``: one recipe trained, evaluated and exported.

:func:`train` holds the run's folder ``<run_dir>/<name>/``
(:class:`~tfdml.training.run_folder.RunFolder`; a second run of the same name is refused while
it lives), trains an :class:`~tfdml.experiment.Experiment` in it, prints the table of raw
pixels, the untrained and the trained network on the test split, draws the run's pictures and
exports the SavedModels TF Serving loads.

Rerunning the same recipe after an interruption (even ``kill -9`` at any moment) resumes
from the last finished epoch, and with a fixed seed the resumed run equals the
uninterrupted one: the backup also holds the random state that lives outside the
weights (the miners' random counters), and the input pipeline restarts at the batch
the interrupted run would have read next. A finished run is never trained again:
rerunning it evaluates and exports its final weights, keeping the pinned export versions
it wrote earlier. A different resolved config in the same directory is refused, except
that the ``export`` section may change (exporting a gallery from a finished run is not a
new run), and a directory whose run never finished an epoch, or diverged, does not block its name.
"""

import hashlib
import json
import os
import pathlib
import time

import numpy as np

from tfdml import data as tfdml_data
from tfdml.evaluation import figures
from tfdml.experiment import Experiment
from tfdml.extras import require
from tfdml.export import check_export_settings, export_embedding_model, export_retrieval_model
from tfdml.index import GalleryIndex
from tfdml.io import unwritable_reason, write_file_atomically
from tfdml.training.config import ConfigError
from tfdml.training.distribute import is_chief, make_strategy
from tfdml.training.run_folder import RunFolder


def raw_pixels(images):
    """Flattened pixels of a dataset of image batches: the baseline embedding."""
    return np.concatenate([batch.numpy().reshape(len(batch), -1) for batch in images])


def cached_evaluation(experiment, embeddings):
    """``experiment.evaluate(embeddings)``, kept in ``<run_dir>/.baselines/<key>.json`` and read from there
    when a run scores the same embeddings again: the key is a SHA-256 of the embeddings, the test labels and
    categories, the evaluation settings and the source of ``tfdml.evaluation``, so a hit returns exactly what
    evaluating would.
    The raw-pixel row of a data set is then computed once per ``run_dir``, not at every run."""
    config = experiment.config
    digest = hashlib.sha256(np.ascontiguousarray(embeddings).tobytes())
    for array in (experiment.test_data.labels, experiment.test_data.categories):
        digest.update(b"-" if array is None else np.ascontiguousarray(array).tobytes())
    settings = [config["evaluation"]["metrics"], config["evaluation"]["recall_k"], list(np.shape(embeddings))]
    digest.update(json.dumps(settings).encode())
    for source in sorted(pathlib.Path(figures.__file__).parent.glob("*.py")):  # the evaluation code itself
        digest.update(source.read_bytes())
    path = os.path.join(config["run_dir"], ".baselines", f"{digest.hexdigest()}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    scores = {key: float(value) for key, value in experiment.evaluate(embeddings).items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_file_atomically(path, json.dumps(scores))
    return scores


def test_split_heading(config, test_data):
    """The heading of ``train.py``'s table: whether its classes were held out of training."""
    data_config = config["data"]
    described = f"{test_data.name}, {len(test_data)} images"
    if config["evaluation"]["data"]["name"] is not None:
        return f"Labelled evaluation data ({described}, evaluation.data):"
    if data_config["train_split"] in ("all", data_config["test_split"]):
        return (
            f"Test split '{data_config['test_split']}' ({described}): NOT held out - data.train_split="
            f"'{data_config['train_split']}' trained on these classes, so these scores do not measure generalisation:"
        )
    return f"Held-out classes ({described}):"


METRIC_HEADINGS = {
    "map_at_r": "MAP@R",
    "r_precision": "R-precision",
    "map_c": "mAP@C",
    "nmi": "NMI",
    "f1": "F1",
    "rho_spectral_decay": "rho",
    "fewshot_20way_1shot_within": "20-way 1-shot",
    "fewshot_5way_1shot": "5-way 1-shot",
    "fewshot_5way_5shot": "5-way 5-shot",
}


def metric_heading(name):
    """A metric's short column heading: ``recall_at_4`` → ``R@4``, ``map_at_r`` → ``MAP@R``."""
    if name.startswith("recall_at_"):
        return "R@" + name[len("recall_at_"):]
    if name.startswith("precision_at_"):
        return "P@" + name[len("precision_at_"):]
    return METRIC_HEADINGS.get(name, name)


def format_table(rows):
    """``rows``: {row name: {metric: value}} → an aligned text table; a metric's ``<name>_ci95``
    (few-shot accuracies) is shown as ``± half-width`` beside its value."""
    values = next(iter(rows.values()))
    metrics = [m for m in values if not (m.endswith("_ci95") and m[: -len("_ci95")] in values)]

    def cell(scores, metric):
        if f"{metric}_ci95" in scores:
            return f"{scores[metric]:.3f} ± {scores[f'{metric}_ci95']:.3f}"
        return f"{scores[metric]:.4f}"

    widths = {m: max(len(metric_heading(m)), *(len(cell(scores, m)) for scores in rows.values())) + 2 for m in metrics}
    header = f"{'':<12}" + "".join(f"{metric_heading(m):>{widths[m]}}" for m in metrics)
    lines = [header] + [
        f"{name:<12}" + "".join(f"{cell(scores, m):>{widths[m]}}" for m in metrics) for name, scores in rows.items()
    ]
    return "\n".join(lines)


def opening_line(experiment):
    """One line before anything trains: what, on which data, for how long, tested where, exported where."""
    config = experiment.config
    version = config["export"]["version"]
    export = os.path.join(config["export"]["dir"], config["name"], str(version) if version else "<next version>")
    fit, validation, test = experiment.train_data, experiment.validation_data, experiment.test_data
    selection = (
        f", selecting the epoch on {len(validation)} images of {validation.num_classes} "
        "validation classes" if validation is not None else ""
    )
    testing = (
        f"testing on {test.name} ({len(test)} images, {test.num_classes} classes)" if test is not None
        else "no labelled data to test on (evaluation.data)"
    )
    return (
        f"Training {config['name']}: {config['loss']['class']} on {fit.name} ({len(fit)} images, "
        f"{fit.num_classes} classes{selection}) for {config['epochs']} epochs of {experiment.steps_per_epoch} "
        f"steps; {testing}; exporting to {export}/"
    )


def write_figures(experiment, folder, embeddings):
    """The run's pictures of the test split: ``retrieval.png`` (trained embedding) and
    ``embedding_map.png`` (``embeddings``: {row name: test embeddings}, one panel each)."""
    seed = experiment.config["seed"]
    return {
        "retrieval": figures.retrieval_figure(
            embeddings["trained"], experiment.eval_data, folder.file("retrieval.png"), seed=seed
        ),
        "embedding map": figures.embedding_map(
            embeddings, experiment.test_data.labels, folder.file("embedding_map.png"), seed=seed,
            data_name=experiment.test_data.name,
        ),
    }


def check_writable(folder, setting):
    """Fail before training when ``folder`` (from ``setting``) cannot be created or written."""
    problem = unwritable_reason(folder)
    if problem:
        raise ConfigError(f"{setting}: cannot write {folder}: {problem}.")


def check_export_config(config, folder):
    """Fail before training on export settings that would only fail after it, an unwritable
    ``export.dir`` among them. The pinned versions that this same run exported earlier
    (:meth:`~tfdml.training.run_folder.RunFolder.earlier_exports`) may exist: :func:`train` keeps them."""
    export_config = config["export"]
    try:
        check_export_settings(
            config["name"], None if folder.earlier_exports(config) else export_config["version"], export_config["dir"],
            gallery=export_config["gallery"], gallery_k=export_config["gallery_k"],
            max_image_pixels=export_config["max_image_pixels"],
        )
    except (ValueError, FileExistsError) as error:
        raise ConfigError(str(error)) from None
    for name in [config["name"]] + ([f"{config['name']}-search"] if export_config["gallery"] else []):
        check_writable(os.path.join(export_config["dir"], name), "export.dir")


def export_once(folder, config, model_name, export):
    """``export()`` to ``model_name``'s pinned ``export.version``, unless this run wrote that folder earlier
    with the same export settings (its rerun completes an interrupted export): that folder is kept.
    Without a pinned version every call exports a new version."""
    version = config["export"]["version"]
    if version is None:
        return export()
    target = os.path.join(config["export"]["dir"], model_name, str(version))
    if os.path.exists(target) and os.path.abspath(target) in folder.earlier_exports(config):
        print(f"Kept {target}, exported earlier by this run.")
        return target
    folder.record_export(target, config["export"])
    return export()


def export_embedder(experiment):
    """Export the embedding model ``<name>`` with the eval preprocessing inside ``serving_bytes``."""
    config = experiment.config
    return export_embedding_model(
        experiment.embedder, config["export"]["dir"], config["name"], config["export"]["version"],
        preprocess=experiment.eval_preprocess, max_image_pixels=config["export"]["max_image_pixels"],
    )


def export_gallery_search(experiment):
    """Embed the gallery (``"test"`` or an image folder) and export ``<name>-search``: its ids are the
    gallery images' positions (in the folder reader's sorted order), its labels their class ids.

    A folder's files are decoded with the model's channel count and given the training data's
    eval preprocessing, as the exported ``serving_bytes`` treats queries, so gallery and queries match.
    """
    config = experiment.config
    gallery_spec = config["export"]["gallery"]
    if gallery_spec == "test":
        gallery = experiment.eval_data
    else:
        channels = experiment.embedder.input_shape[-1]
        gallery = tfdml_data.image_folder(gallery_spec, split="all", channels=channels)
        gallery = gallery.with_preprocess(experiment.eval_preprocess)
    images = gallery.dataset(batch_size=256).map(lambda images, labels: images)
    embeddings = experiment.embed(images)
    index = GalleryIndex(dim=embeddings.shape[1])
    index.add(embeddings, ids=np.arange(len(gallery), dtype=np.int64), labels=gallery.labels)
    return export_retrieval_model(
        experiment.embedder,
        index,
        config["export"]["dir"],
        f"{config['name']}-search",
        config["export"]["version"],
        k=min(config["export"]["gallery_k"], len(index)),
        preprocess=experiment.eval_preprocess,
        max_image_pixels=config["export"]["max_image_pixels"],
    )


def train(config, verbose=1, callbacks=()):
    """Train, evaluate and export one recipe; return ``{"metrics": rows, "export_path": path, "run_dir": dir}``.

    ``callbacks``: extra Keras callbacks, called after the run's own (after the epoch's backup).
    The run holds its folder until it returns (:meth:`~tfdml.training.run_folder.RunFolder.hold`): a
    second run of the same name meanwhile is refused. A run whose training finished earlier (``done.json``)
    is not trained again: its final weights are evaluated and exported. Export settings are checked
    before anything trains. Training that diverges stops at once with
    :class:`~tfdml.training.callbacks.TrainingDiverged`, a ``ConfigError``.
    """
    check_export_config(config, RunFolder.of(config))
    if config["evaluation"]["figures"]:
        require("matplotlib.figure", "evaluation.figures (the run's pictures)")
    strategy = make_strategy(config["distribute"]["strategy"])
    folder = RunFolder.of(config, strategy)
    with folder.hold():
        folder.prepare(config)
        return train_in_folder(config, folder, strategy, verbose, callbacks)


def train_in_folder(config, folder, strategy, verbose, callbacks):
    """:func:`train` in its run folder, prepared and held."""
    started = time.time()
    chief = is_chief(strategy)
    experiment = Experiment(config, strategy)
    if chief:
        print(opening_line(experiment), flush=True)
    tested = experiment.test_data is not None
    embeddings, rows = {}, {}
    if tested:
        embeddings = {"raw pixels": raw_pixels(experiment.test_images()), "untrained": experiment.embed_test()}
        rows = {name: cached_evaluation(experiment, values) for name, values in embeddings.items()}
    fitted = experiment.fit(folder, callbacks=callbacks, verbose=verbose)
    if not fitted.trained:
        print(f"Training of {folder.path} finished earlier: evaluating and exporting its final weights.")
    if tested:
        embeddings["trained"] = experiment.embed_test()
        rows["trained"] = experiment.evaluate(embeddings["trained"])
    if fitted.selected_epoch is not None:
        print(
            f"Model selection on {len(experiment.validation_data)} validation images "
            f"({experiment.validation_data.name}): epoch {fitted.selected_epoch} by {folder.done()['select_by']}."
        )
    if not chief:
        return {"metrics": rows, "export_path": None, "run_dir": folder.path}
    export_path = export_once(folder, config, config["name"], lambda: export_embedder(experiment))
    if config["export"]["gallery"]:
        search_path = export_once(folder, config, f"{config['name']}-search", lambda: export_gallery_search(experiment))
        print(f"Exported retrieval SavedModel to {search_path}")
    if not tested:
        print(
            f"\nNo retrieval table: {experiment.train_data.name} is unlabelled and evaluation.data names no labelled "
            "dataset to test on."
        )
    else:
        print(f"\n{test_split_heading(config, experiment.test_data)}")
        print(format_table(rows))
    if tested and config["evaluation"]["figures"]:
        drawn = write_figures(experiment, folder, {"raw pixels": embeddings["raw pixels"], "trained": embeddings["trained"]})
        print("\n" + "\n".join(f"Wrote the {name} picture: {path}" for name, path in drawn.items()))
    print(f"\nExported SavedModel to {export_path} ({time.time() - started:.0f} s in all)")
    return {"metrics": rows, "export_path": export_path, "run_dir": folder.path}
