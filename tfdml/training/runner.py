"""Run one recipe end to end: data → sampler → model + loss → ``fit`` → evaluate → export.

A run lives in ``<run_dir>/<name>/`` (see :mod:`tfdml.training.run_directory`), which it holds
while it lives: a second run of the same name is refused. The recipe's parts are built by
:mod:`tfdml.training.factory`, and :mod:`tfdml.training.callbacks` records, backs up, stops on
divergence and finishes the training.

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

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfdml import data as tfdml_data
from tfdml import evaluation, sampling
from tfdml.evaluation import figures
from tfdml.export import check_export_settings, export_embedding_model, export_retrieval_model
from tfdml.index import GalleryIndex
from tfdml.io import unwritable_reason
from tfdml.training.callbacks import (
    AtomicBackupAndRestore, EpochJSONLogger, FinishTraining, StopOnDivergence, external_state,
)
from tfdml.training.config import ConfigError
from tfdml.training.distribute import distribute_batches, is_chief, make_strategy
from tfdml.training.factory import build_embedder, build_loss, build_optimizer, build_sampler, needs_memory_bank
from tfdml.training.model import MetricLearningModel, resolve_jit_compile
from tfdml.training.run_directory import (
    CHECKPOINTS, DIVERGED_FILE, DONE_FILE, FINAL_WEIGHTS, earlier_exports, hold, prepare_run_dir, record_export,
    run_folder,
)


def load_split(config, split):
    """One split; the digits are read with ``data.channels`` (folder and list files take their
    channel count from ``data.params.channels``; Omniglot and the TFDS readers have their own). With an
    augmentation protocol, images stay at their stored size (the protocol crops and resizes them once,
    to ``data.image_size``)."""
    data_config = config["data"]
    channels = {"channels": data_config["channels"]} if data_config["name"] == "digits" else {}
    return tfdml_data.load(
        data_config["name"],
        root=data_config["root"],
        split=split,
        image_size=None if data_config["augmentation"] else data_config["image_size"],
        **channels,
        **data_config["params"],
    )


def training_classes(config, split):
    """``(fit, validation)``: the training split less its held-out validation classes (``None``
    without ``data.validation``), with rotation classes added to ``fit`` only, so that no rotated
    copy of a validation class is trained on."""
    data_config = config["data"]
    validation = None
    if data_config["validation"] is not None:
        try:
            split, validation = tfdml_data.hold_out_validation(split, data_config["validation"], seed=config["seed"])
        except ValueError as error:
            raise ConfigError(f"data.validation: {error}") from None
    if data_config["rotations"]:
        split = tfdml_data.with_rotations(split)
    return split, validation


def eval_transform(protocol, size):
    """The eval counterpart of a training augmentation protocol, applied after the reader's own
    preprocessing: Roth's ``"eval"`` (resize, centre crop) for the cropping protocols; a whole-image
    area resize for ``"affine"``, whose distortions keep the whole character in view."""
    if protocol == "affine":
        return lambda image: tf.image.resize(image, [size, size], method="area")
    return tfdml_data.augmentation("eval", size=size)


def raw_pixels(images):
    """Flattened pixels of a dataset of image batches: the baseline embedding."""
    return np.concatenate([batch.numpy().reshape(len(batch), -1) for batch in images])


def evaluate_embeddings(embeddings, labels, config, categories=None):
    return evaluation.evaluate(
        embeddings, labels, metrics=config["evaluation"]["metrics"], k=config["evaluation"]["recall_k"],
        categories=categories,
    )


def test_split_heading(config, test_data):
    """The heading of ``train.py``'s table: whether its classes were held out of training."""
    data_config = config["data"]
    described = f"{test_data.name}, {len(test_data)} images"
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


def opening_line(config, setup):
    """One line before anything trains: what, on which data, for how long, tested where, exported where."""
    version = config["export"]["version"]
    export = os.path.join(config["export"]["dir"], config["name"], str(version) if version else "<next version>")
    fit = setup.train_data
    selection = (
        f", selecting the epoch on {len(setup.validation_data)} images of {len(np.unique(setup.validation_data.labels))} "
        "validation classes" if setup.validation_data is not None else ""
    )
    return (
        f"Training {config['name']}: {config['loss']['class']} on {fit.name} ({len(fit)} images, "
        f"{len(np.unique(fit.labels))} classes{selection}) for {config['epochs']} epochs of {setup.steps_per_epoch} "
        f"steps; testing on {setup.test_data.name} ({len(setup.test_data)} images, "
        f"{len(np.unique(setup.test_data.labels))} classes); exporting to {export}/"
    )


def write_figures(setup, run_dir, embeddings):
    """The run's pictures of the test split: ``retrieval.png`` (trained embedding) and
    ``embedding_map.png`` (``embeddings``: {row name: test embeddings}, one panel each)."""
    seed = setup.config["seed"]
    return {
        "retrieval": figures.retrieval_figure(
            embeddings["trained"], setup.eval_data, os.path.join(run_dir, "retrieval.png"), seed=seed
        ),
        "embedding map": figures.embedding_map(
            embeddings, setup.test_data.labels, os.path.join(run_dir, "embedding_map.png"), seed=seed,
            data_name=setup.test_data.name,
        ),
    }


class Setup:
    """Everything one training run needs, built from a config (shared by ``train`` and ``tfdml.tune``)."""

    def __init__(self, config, strategy=None, splits=None):
        """``splits``: optional already loaded ``(train, test)`` data of this config, to skip reading it again."""
        self.config = config
        strategy = strategy or make_strategy(config["distribute"]["strategy"])
        train_split, self.test_data = splits or (
            load_split(config, config["data"]["train_split"]),
            load_split(config, config["data"]["test_split"]),
        )
        self.train_data, self.validation_data = training_classes(config, train_split)
        self.bank = None
        if needs_memory_bank(config):
            self.bank = sampling.MemoryBank(len(self.train_data), config["model"]["embedding_dim"], seed=config["seed"])
        self.sampler = build_sampler(config, self.train_data, self.bank)
        data_config = config["data"]
        preprocess = self.eval_augmentation = None
        self.eval_data, self.validation_eval_data = self.test_data, self.validation_data
        if data_config["augmentation"]:
            size = data_config["image_size"]
            preprocess = tfdml_data.augmentation(data_config["augmentation"], size=size, seed=config["seed"])
            self.eval_augmentation = eval_transform(data_config["augmentation"], size)
            self.eval_data = self.test_data.preprocessed(self.eval_augmentation)
            if self.validation_data is not None:
                self.validation_eval_data = self.validation_data.preprocessed(self.eval_augmentation)
            image_shape = (size, size, data_config["channels"])
        else:
            image_shape = tuple(int(s) for s in self.train_data.load(tf.constant(0, tf.int64)).shape)
        self.strategy, self.train_preprocess = strategy, preprocess
        self.batches = self.training_batches()
        self.steps_per_epoch = config["steps_per_epoch"] or self.sampler.batches_per_epoch
        with strategy.scope():
            self.embedder = build_embedder(config, image_shape, synchronized_batchnorm=strategy.num_replicas_in_sync > 1)
            self.loss = build_loss(config, num_classes=int(self.train_data.labels.max()) + 1, num_images=len(self.train_data))
            self.model = MetricLearningModel(self.embedder, self.loss)
            self.model.compile(optimizer=build_optimizer(config), jit_compile=resolve_jit_compile(config["jit_compile"]))

    def training_batches(self, start=0):
        """The (distributed) training batches from the ``start``-th batch of the run on: a resumed run
        reads what the uninterrupted run would have read next."""
        batches = sampling.batches(self.train_data, self.sampler, preprocess=self.train_preprocess, start=start)
        return distribute_batches(self.strategy, batches, self.sampler.batch_size)

    @property
    def evaluation_data(self):
        """What is evaluated during training: the held-out validation classes when the recipe has
        ``data.validation`` (the test split is then touched once, after training), else the test split."""
        return self.validation_eval_data if self.validation_data is not None else self.eval_data

    def evaluation_callback(self, every_n_epochs=None):
        """Logs ``val_*`` scores of :attr:`evaluation_data` during training."""
        evaluation_config = self.config["evaluation"]
        data = self.evaluation_data
        return evaluation.RetrievalEvaluation(
            data.dataset(batch_size=256),
            embedding_model=self.embedder,
            every_n_epochs=every_n_epochs or evaluation_config["every_n_epochs"],
            metrics=evaluation_config["metrics"],
            k=evaluation_config["recall_k"],
            categories=data.categories,
        )

    def divergence_callback(self, run_dir):
        """Stops training at its first non-finite loss, or embeddings of a batch of :attr:`evaluation_data`."""
        probe = next(iter(self.evaluation_data.dataset(batch_size=32)))[0]
        rate = self.config["optimizer"]["learning_rate"]
        advice = (
            f"The usual cause is too high a learning rate (optimizer.learning_rate={rate}): lower it and rerun; "
            f"the corrected command takes {run_dir} over."
        )
        return StopOnDivergence(os.path.join(run_dir, DIVERGED_FILE), probe, advice=advice)

    def sampler_callbacks(self):
        """Callbacks the sampler needs during ``fit``: the memory-bank refresh of batch-matching samplers."""
        if self.bank is None:
            return []
        return [
            sampling.MemoryBankRefresh(
                self.bank, sampling.indexed_batches(self.train_data, 256, preprocess=self.eval_augmentation),
                embed=self.embedder,
            )
        ]

    @property
    def eval_preprocess(self):
        """The one eval preprocessing, decoded test image → model input (the reader's pixel transforms,
        then the ``"eval"`` protocol with an augmentation recipe): evaluation, the export gallery and
        both exported signatures run this function."""
        return self.eval_data.preprocess

    def test_batches(self, batch_size=256):
        """The test split in index order as ``(images, labels)`` batches, eval-preprocessed."""
        return self.eval_data.dataset(batch_size=batch_size)

    def test_images(self):
        return self.test_batches().map(lambda images, labels: images)

    def embed_test(self):
        return self.embedder.predict(self.test_images(), verbose=0)

    def evaluate(self, embeddings=None):
        if embeddings is None:
            embeddings = self.embed_test()
        return evaluate_embeddings(embeddings, self.test_data.labels, self.config, self.test_data.categories)


def check_writable(folder, setting):
    """Fail before training when ``folder`` (from ``setting``) cannot be created or written."""
    problem = unwritable_reason(folder)
    if problem:
        raise ConfigError(f"{setting}: cannot write {folder}: {problem}.")


def check_export_config(config):
    """Fail before training on export settings that would only fail after it, an unwritable
    ``export.dir`` among them. The pinned versions that this same run exported earlier
    (:func:`~tfdml.training.run_directory.earlier_exports`) may exist: :func:`train` keeps them."""
    export_config = config["export"]
    try:
        check_export_settings(
            config["name"], None if earlier_exports(config) else export_config["version"], export_config["dir"],
            gallery=export_config["gallery"], gallery_k=export_config["gallery_k"],
            max_image_pixels=export_config["max_image_pixels"],
        )
    except (ValueError, FileExistsError) as error:
        raise ConfigError(str(error)) from None
    for name in [config["name"]] + ([f"{config['name']}-search"] if export_config["gallery"] else []):
        check_writable(os.path.join(export_config["dir"], name), "export.dir")


def export_once(run_dir, config, model_name, export):
    """``export()`` to ``model_name``'s pinned ``export.version``, unless this run wrote that folder earlier
    with the same export settings (its rerun completes an interrupted export): that folder is kept.
    Without a pinned version every call exports a new version."""
    version = config["export"]["version"]
    if version is None:
        return export()
    target = os.path.join(config["export"]["dir"], model_name, str(version))
    if os.path.exists(target) and os.path.abspath(target) in earlier_exports(config):
        print(f"Kept {target}, exported earlier by this run.")
        return target
    record_export(run_dir, target, config["export"])
    return export()


def export_embedder(setup, config):
    """Export the embedding model ``<name>`` with the eval preprocessing inside ``serving_bytes``."""
    return export_embedding_model(
        setup.embedder, config["export"]["dir"], config["name"], config["export"]["version"],
        preprocess=setup.eval_preprocess, max_image_pixels=config["export"]["max_image_pixels"],
    )


def export_gallery_search(setup, config):
    """Embed the gallery (``"test"`` or an image folder) and export ``<name>-search``: its ids are the
    gallery images' positions (in the folder reader's sorted order), its labels their class ids.

    A folder's files are decoded with the model's channel count and given the training data's
    eval preprocessing, as the exported ``serving_bytes`` treats queries, so gallery and queries match.
    """
    gallery_spec = config["export"]["gallery"]
    if gallery_spec == "test":
        gallery = setup.eval_data
    else:
        channels = setup.embedder.input_shape[-1]
        gallery = tfdml_data.image_folder(gallery_spec, split="all", channels=channels)
        gallery = gallery.with_preprocess(setup.eval_preprocess)
    images = gallery.dataset(batch_size=256).map(lambda images, labels: images)
    embeddings = setup.embedder.predict(images, verbose=0)
    index = GalleryIndex(dim=embeddings.shape[1])
    index.add(embeddings, ids=np.arange(len(gallery), dtype=np.int64), labels=gallery.labels)
    return export_retrieval_model(
        setup.embedder,
        index,
        config["export"]["dir"],
        f"{config['name']}-search",
        config["export"]["version"],
        k=min(config["export"]["gallery_k"], len(index)),
        preprocess=setup.eval_preprocess,
        max_image_pixels=config["export"]["max_image_pixels"],
    )


def train(config, verbose=1, callbacks=()):
    """Train, evaluate and export one recipe; return ``{"metrics": rows, "export_path": path, "run_dir": dir}``.

    ``callbacks``: extra Keras callbacks, called after the run's own (after the epoch's backup).
    The run holds its folder until it returns (:func:`~tfdml.training.run_directory.hold`): a second
    run of the same name meanwhile is refused. A run whose training finished earlier (``done.json``)
    is not trained again: its final weights are evaluated and exported. Export settings are checked
    before anything trains. Training that diverges stops at once with
    :class:`~tfdml.training.callbacks.TrainingDiverged`, a ``ConfigError``.
    """
    check_export_config(config)
    strategy = make_strategy(config["distribute"]["strategy"])
    keras.utils.set_random_seed(config["seed"])
    if config["model"]["mixed_precision"]:
        keras.mixed_precision.set_global_policy("mixed_float16")
    chief = is_chief(strategy)
    task_id = getattr(getattr(strategy, "cluster_resolver", None), "task_id", 0)
    run_dir = run_folder(config, chief, task_id)
    with hold(run_dir):
        prepare_run_dir(config, chief, task_id)
        return train_in_folder(config, run_dir, strategy, chief, verbose, callbacks)


def train_in_folder(config, run_dir, strategy, chief, verbose, callbacks):
    """:func:`train` in its run folder ``run_dir``, prepared and held."""
    started = time.time()
    setup = Setup(config, strategy)
    if chief:
        print(opening_line(config, setup), flush=True)
    embeddings = {"raw pixels": raw_pixels(setup.test_images()), "untrained": setup.embed_test()}
    rows = {name: setup.evaluate(values) for name, values in embeddings.items()}
    if os.path.exists(os.path.join(run_dir, DONE_FILE)):
        print(f"Training of {run_dir} finished earlier: evaluating and exporting its final weights.")
        setup.embedder.load_weights(os.path.join(run_dir, FINAL_WEIGHTS))
    else:
        backup_dir = os.path.join(run_dir, "backup")
        resumed_epochs = AtomicBackupAndRestore.finished_epochs(backup_dir)
        # Order matters: a diverged epoch stops before anything evaluates, records or backs it up;
        # evaluation adds val_* to the logs before they are recorded; the epoch is recorded before
        # it is backed up, so a kill in between repeats the epoch rather than losing its record; the
        # backup restores the weights before the memory bank is embedded with them; the final
        # weights and done marker are written before the backup is removed.
        run_callbacks = [
            setup.divergence_callback(run_dir),
            setup.evaluation_callback(),
            EpochJSONLogger(os.path.join(run_dir, "metrics.jsonl")),
            keras.callbacks.ModelCheckpoint(os.path.join(run_dir, CHECKPOINTS), save_weights_only=True),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")),
            FinishTraining(
                run_dir, setup.embedder, config["evaluation"]["select_by"] if setup.validation_data else None
            ),
            AtomicBackupAndRestore(backup_dir, state=external_state(setup.loss)),
            *setup.sampler_callbacks(),
            *callbacks,
        ]
        setup.model.fit(
            setup.training_batches(start=resumed_epochs * setup.steps_per_epoch),
            epochs=config["epochs"], steps_per_epoch=setup.steps_per_epoch, callbacks=run_callbacks,
            shuffle=False, verbose=verbose,
        )
    embeddings["trained"] = setup.embed_test()
    rows["trained"] = setup.evaluate(embeddings["trained"])
    if setup.validation_data is not None:
        with open(os.path.join(run_dir, DONE_FILE)) as f:
            done = json.load(f)
        print(
            f"Model selection on {len(setup.validation_data)} validation images "
            f"({setup.validation_data.name}): epoch {done['best_epoch']} by {done['select_by']}."
        )
    if not chief:
        return {"metrics": rows, "export_path": None, "run_dir": run_dir}
    export_path = export_once(run_dir, config, config["name"], lambda: export_embedder(setup, config))
    if config["export"]["gallery"]:
        search_path = export_once(
            run_dir, config, f"{config['name']}-search", lambda: export_gallery_search(setup, config)
        )
        print(f"Exported retrieval SavedModel to {search_path}")
    print(f"\n{test_split_heading(config, setup.test_data)}")
    print(format_table(rows))
    if config["evaluation"]["figures"]:
        drawn = write_figures(setup, run_dir, {"raw pixels": embeddings["raw pixels"], "trained": embeddings["trained"]})
        print("\n" + "\n".join(f"Wrote the {name} picture: {path}" for name, path in drawn.items()))
    print(f"\nExported SavedModel to {export_path} ({time.time() - started:.0f} s in all)")
    return {"metrics": rows, "export_path": export_path, "run_dir": run_dir}
