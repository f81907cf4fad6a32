"""Run one recipe end to end: data → sampler → model + loss → ``fit`` → evaluate → export.

A run writes ``<run_dir>/<name>/``: ``config.yaml`` (the resolved recipe),
``metrics.jsonl`` (one JSON object per finished epoch), TensorBoard logs under
``logs/``, per-epoch weights under ``checkpoints/``, Keras ``BackupAndRestore``
state under ``backup/`` and, once training has finished, ``final.weights.h5`` and
the ``done.json`` marker.

Rerunning the same recipe after an interruption (even ``kill -9`` mid-epoch) resumes
from the last finished epoch, and with a fixed seed the resumed run equals the
uninterrupted one: the backup also holds the random state that lives outside the
weights (the miners' random counters), and the input pipeline restarts at the batch
the interrupted run would have read next. A finished run is never trained again:
rerunning it evaluates and exports its final weights. A different resolved config
in the same directory is refused, except that the ``export`` section may change
(exporting a gallery from a finished run is not a new run), and a directory whose
run never finished an epoch does not block its name.
"""

import inspect
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfdml import data as tfdml_data
from tfdml import evaluation, losses, mining, sampling
from tfdml.export import check_export_settings, export_embedding_model, export_retrieval_model
from tfdml.index import GalleryIndex
from tfdml.io import save_file_atomically, write_file_atomically
from tfdml.models import build_embedding_model
from tfdml.training.config import ConfigError, dump_config, read_config
from tfdml.training.model import MetricLearningModel, resolve_jit_compile


class EpochJSONLogger(keras.callbacks.Callback):
    """Keeps ``{"epoch": e, **logs}`` per finished epoch in a JSON-lines file.

    The file is rewritten atomically after every epoch, replacing any record of this or a
    later epoch: a resumed run that repeats an epoch (its backup was lost to a kill during
    the write) leaves one record per epoch, never a half-written line.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        records = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                records = [json.loads(line) for line in f if line.strip()]
        records = [r for r in records if r["epoch"] < epoch + 1]
        records.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        write_file_atomically(self.path, "".join(json.dumps(r) + "\n" for r in records))


def save_weights_atomically(model, path):
    """``model.save_weights(path)`` through a file beside it and a rename (Keras writes in place)."""
    return save_file_atomically(path, lambda tmp: model.save_weights(tmp, overwrite=True))


def external_state(loss):
    """Variables of ``loss`` (and its miners) that ``save_weights`` does not save, by attribute path.

    The miners' random counters are plain variables of tfdml objects, not Keras weights; a
    resumed run needs them to draw the tuples the uninterrupted run would have drawn. Keras
    layers are not searched: their variables are saved with the model's weights.
    """
    found = {}

    def visit(value, path, seen):
        if id(value) in seen or isinstance(value, keras.layers.Layer):
            return
        seen.add(id(value))
        if isinstance(value, (tf.Variable, keras.Variable)):
            found[path] = value
        elif isinstance(value, tf.random.Generator):
            found[f"{path}.state"] = value.state
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{path}.{i}", seen)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{path}.{key}", seen)
        elif type(value).__module__.startswith("tfdml.") and hasattr(value, "__dict__"):
            for key, item in vars(value).items():
                visit(item, f"{path}.{key}", seen)

    visit(loss, "loss", set())
    return found


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras ``BackupAndRestore`` whose backup files are replaced atomically and which also
    backs up ``state``: variables outside the model's weights (see :func:`external_state`).

    Keras writes the backup in place, so a ``kill -9`` during the write leaves a corrupt file
    and the rerun cannot resume. Here each file is written beside its target and renamed
    over it. A kill between the two renames pairs the new weights with the previous epoch
    number: the rerun repeats that epoch from its end state, losing nothing.

    Args:
        backup_dir: the backup folder.
        state: ``{name: variable}`` saved in the metadata after each epoch and restored with the weights.
    """

    def __init__(self, backup_dir, state=None, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.state = dict(state or {})

    @staticmethod
    def finished_epochs(backup_dir):
        """Epochs the backup in ``backup_dir`` holds (0 without one): where a rerun resumes."""
        path = os.path.join(backup_dir, "training_metadata.json")
        if not os.path.exists(path):
            return 0
        with open(path) as f:
            return int(json.load(f)["epoch"])

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        save_weights_atomically(self.model, self._weights_path)
        metadata = {
            "epoch": self._current_epoch,
            "batch": self._last_batch_seen,
            "state": {name: np.asarray(variable.numpy()).tolist() for name, variable in self.state.items()},
        }
        write_file_atomically(self._training_metadata_path, json.dumps(metadata))

    def _load_model(self):
        super()._load_model()
        if not os.path.exists(self._training_metadata_path):
            return
        with open(self._training_metadata_path) as f:
            saved = json.load(f).get("state", {})
        unknown = sorted(set(saved) - set(self.state))
        if unknown:
            raise ConfigError(f"The backup in {self.backup_dir} holds state this run does not have: {unknown}.")
        for name, value in saved.items():
            variable = self.state[name]
            variable.assign(np.asarray(value, variable.dtype.as_numpy_dtype))


class FinishTraining(keras.callbacks.Callback):
    """At the end of ``fit``: save the embedder's final weights, then write the ``done`` marker.

    Runs before :class:`AtomicBackupAndRestore` removes its backup, so at every moment either
    the backup or the marker (with the final weights) exists: a run killed after its last
    epoch resumes straight to evaluation and export instead of training again.
    """

    def __init__(self, run_dir, embedder, select_by=None):
        """``select_by``: a logged validation key; the final weights are then those of its best epoch."""
        super().__init__()
        self.run_dir = run_dir
        self.embedder = embedder
        self.select_by = select_by

    def on_train_end(self, logs=None):
        done = {"finished": time.time()}
        if self.select_by:
            epoch = best_epoch(os.path.join(self.run_dir, "metrics.jsonl"), self.select_by)
            self.model.load_weights(os.path.join(self.run_dir, CHECKPOINTS.format(epoch=epoch)))
            done.update(best_epoch=epoch, select_by=self.select_by)
        save_weights_atomically(self.embedder, os.path.join(self.run_dir, FINAL_WEIGHTS))
        write_file_atomically(os.path.join(self.run_dir, DONE_FILE), json.dumps(done))


FINAL_WEIGHTS = "final.weights.h5"
CHECKPOINTS = os.path.join("checkpoints", "epoch{epoch:03d}.weights.h5")
DONE_FILE = "done.json"
# Sections that do not change what is trained: a finished run may be exported again with other settings.
EXPORT_SECTIONS = ("export",)


def make_strategy(name):
    """The recipe's ``distribute.strategy``; create it before any other TF work (collectives need that)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


def distribute_batches(strategy, batches, global_batch_size):
    """Give each replica its consecutive slice of every global batch (replica order = all-gather order).

    Samplers build whole global batches (the class structure is a property of the global
    batch), so every input pipeline builds the same global batches from the same seed and
    keeps its own part; ``all_gather`` in the loss reassembles the batch in order.
    """
    if strategy.num_replicas_in_sync == 1:
        return batches

    def pipeline(context):
        per_pipeline = global_batch_size // context.num_input_pipelines
        start = context.input_pipeline_id * per_pipeline
        sliced = batches.map(lambda images, labels: (images[start : start + per_pipeline], labels[start : start + per_pipeline]))
        return sliced.unbatch().batch(context.get_per_replica_batch_size(global_batch_size), drop_remainder=True)

    if global_batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"sampler.batch_size={global_batch_size} must be divisible by the {strategy.num_replicas_in_sync} replicas."
        )
    return strategy.distribute_datasets_from_function(pipeline)


def load_split(config, split):
    """One split; with an augmentation protocol, images stay at their stored size (the protocol
    crops and resizes them once, to ``data.image_size``)."""
    data_config = config["data"]
    return tfdml_data.load(
        data_config["name"],
        root=data_config["root"],
        split=split,
        image_size=None if data_config["augmentation"] else data_config["image_size"],
        **data_config["params"],
    )


def training_classes(config, train):
    """``(fit, validation)``: the training split less its held-out validation classes (``None``
    without ``data.validation``), with rotation classes added to ``fit`` only, so that no rotated
    copy of a validation class is trained on."""
    data_config = config["data"]
    validation = None
    if data_config["validation"] is not None:
        try:
            train, validation = tfdml_data.hold_out_validation(train, data_config["validation"], seed=config["seed"])
        except ValueError as error:
            raise ConfigError(f"data.validation: {error}") from None
    if data_config["rotations"]:
        train = tfdml_data.with_rotations(train)
    return train, validation


def eval_transform(protocol, size):
    """The eval counterpart of a training augmentation protocol, applied after the reader's own
    preprocessing: Roth's ``"eval"`` (resize, centre crop) for the cropping protocols; a whole-image
    area resize for ``"affine"``, whose distortions keep the whole character in view."""
    if protocol == "affine":
        return lambda image: tf.image.resize(image, [size, size], method="area")
    return tfdml_data.augmentation("eval", size=size)


def best_epoch(metrics_file, key):
    """The epoch with the highest ``key`` among the records of ``metrics_file`` (the first on ties)."""
    records = []
    if os.path.exists(metrics_file):
        with open(metrics_file) as f:
            records = [json.loads(line) for line in f if line.strip()]
    scored = [r for r in records if key in r and np.isfinite(r[key])]
    if not scored:
        raise ConfigError(
            f"evaluation.select_by={key!r}: no epoch in {metrics_file} logged it; name a key the validation "
            "evaluation logs (e.g. val_recall_at_1) and evaluate at least once (evaluation.every_n_epochs)."
        )
    return max(scored, key=lambda r: (r[key], -r["epoch"]))["epoch"]


def _construct(module, section, kind, **available):
    """Instantiate ``module.<section['class']>`` with ``section['params']``; fill ``available``
    arguments the class accepts but the recipe left out (e.g. ``num_classes``)."""
    name = section["class"]
    cls = getattr(module, name, None)
    if cls is None or not inspect.isclass(cls):
        raise ConfigError(f"{kind}.class={name!r} is not a class of {module.__name__}.")
    params = dict(section.get("params") or {})
    accepted = inspect.signature(cls).parameters
    for key, value in available.items():
        if key in accepted and key not in params and value is not None:
            params[key] = value
    try:
        return cls(**params)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{kind} ({name}): {error}") from None


def build_loss(config, num_classes, num_images):
    miner = None
    if config["miner"]["class"]:
        miner = _construct(mining, config["miner"], "miner", seed=config["seed"])
    return _construct(
        losses,
        config["loss"],
        "loss",
        miner=miner,
        num_classes=num_classes,
        num_images=num_images,
        embedding_dim=config["model"]["embedding_dim"],
    )


def build_sampler(config, train, bank=None):
    sampler_config = config["sampler"]
    return _construct(
        sampling,
        {"class": sampler_config["class"], "params": sampler_config["params"]},
        "sampler",
        labels=train.labels,
        categories=train.categories,
        batch_size=sampler_config["batch_size"],
        samples_per_class=sampler_config["samples_per_class"],
        bank=bank,
        seed=config["seed"],
    )


def needs_memory_bank(config):
    """Whether the recipe's sampler chooses batches from a memory bank (coreset, DDM, FRD)."""
    cls = getattr(sampling, config["sampler"]["class"] or "", None)
    return inspect.isclass(cls) and "bank" in inspect.signature(cls).parameters


def build_embedder(config, image_shape, synchronized_batchnorm=False):
    """The recipe's embedding model for images of ``image_shape``."""
    model_config = config["model"]
    return build_embedding_model(
        model_config["backbone"],
        input_shape=image_shape,
        embedding_dim=model_config["embedding_dim"],
        pooling=model_config["pooling"],
        normalize=model_config["normalize"],
        weights=model_config["weights"],
        freeze_batchnorm=model_config["freeze_batchnorm"],
        filters=model_config["filters"],
        blocks=model_config["blocks"],
        synchronized_batchnorm=synchronized_batchnorm,
    )


def build_optimizer(config):
    opt = config["optimizer"]
    name = opt["name"].lower()
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=opt["learning_rate"], weight_decay=opt["weight_decay"] or None)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=opt["learning_rate"], momentum=0.9, weight_decay=opt["weight_decay"] or None)
    raise ConfigError(f"optimizer.name must be 'adam' or 'sgd'; got {opt['name']!r}.")


def raw_pixels(images):
    """Flattened pixels of a dataset of image batches: the baseline embedding."""
    return np.concatenate([batch.numpy().reshape(len(batch), -1) for batch in images])


def evaluate_embeddings(embeddings, labels, config, categories=None):
    return evaluation.evaluate(
        embeddings, labels, metrics=config["evaluation"]["metrics"], k=config["evaluation"]["recall_k"],
        categories=categories,
    )


def training_part(config):
    """``config`` without the sections that only concern exporting."""
    return {key: value for key, value in config.items() if key not in EXPORT_SECTIONS}


def has_progress(run_dir):
    """Whether ``run_dir`` holds a finished epoch or a finished training (something a rerun resumes)."""
    metrics = os.path.join(run_dir, "metrics.jsonl")
    return (
        os.path.exists(os.path.join(run_dir, DONE_FILE))
        or os.path.isdir(os.path.join(run_dir, "backup"))
        or (os.path.exists(metrics) and os.path.getsize(metrics) > 0)
    )


def prepare_run_dir(config, chief=True, task_id=0):
    """The run's folder, checked against and then holding ``config``.

    A folder with progress (see :func:`has_progress`) under a config that differs in more
    than its ``export`` section is refused; one without progress (the run failed before its
    first epoch ended) is taken over by the new config.
    """
    run_dir = os.path.join(config["run_dir"], config["name"])
    if not chief:
        # Workers other than the chief keep their own backups and logs beside the chief's.
        run_dir = os.path.join(run_dir, f"worker-{task_id}")
    saved = os.path.join(run_dir, "config.yaml")
    if os.path.exists(saved) and has_progress(run_dir):
        if training_part(read_config(saved)) != training_part(config):
            raise ConfigError(
                f"{run_dir} holds a run of a different config ({saved}); resume it with the same recipe and "
                "overrides (only export.* may differ), or choose another name (--set name=...) or delete the "
                "directory."
            )
    os.makedirs(run_dir, exist_ok=True)
    dump_config(config, saved)
    if not os.path.isdir(os.path.join(run_dir, "backup")) and not os.path.exists(os.path.join(run_dir, DONE_FILE)):
        # Nothing to resume: this is a fresh start, so earlier epochs' records do not belong to it.
        metrics_file = os.path.join(run_dir, "metrics.jsonl")
        if os.path.exists(metrics_file):
            os.remove(metrics_file)
    return run_dir


def format_table(rows):
    """``rows``: {row name: {metric: value}} → an aligned text table."""
    metrics = list(next(iter(rows.values())))
    # Long names (fewshot_20way_1shot_within_ci95) widen their column instead of shifting the rest.
    widths = {m: max(14, len(m) + 2) for m in metrics}
    header = f"{'':<20}" + "".join(f"{m:>{widths[m]}}" for m in metrics)
    lines = [header] + [
        f"{name:<20}" + "".join(f"{values[m]:>{widths[m]}.4f}" for m in metrics) for name, values in rows.items()
    ]
    return "\n".join(lines)


class Setup:
    """Everything one training run needs, built from a config (shared by ``train`` and ``tfdml.tune``)."""

    def __init__(self, config, strategy=None, splits=None):
        """``splits``: optional already loaded ``(train, test)`` data of this config, to skip reading it again."""
        self.config = config
        strategy = strategy or make_strategy(config["distribute"]["strategy"])
        train, self.test_data = splits or (
            load_split(config, config["data"]["train_split"]),
            load_split(config, config["data"]["test_split"]),
        )
        self.train_data, self.validation_data = training_classes(config, train)
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

    def evaluation_callback(self, every_n_epochs=None):
        """Logs ``val_*`` scores during training: on the held-out validation classes when the recipe
        has ``data.validation`` (the test split is then touched once, after training), else on the
        test split."""
        evaluation_config = self.config["evaluation"]
        data = self.validation_eval_data if self.validation_data is not None else self.eval_data
        return evaluation.RetrievalEvaluation(
            data.dataset(batch_size=256),
            embedding_model=self.embedder,
            every_n_epochs=every_n_epochs or evaluation_config["every_n_epochs"],
            metrics=evaluation_config["metrics"],
            k=evaluation_config["recall_k"],
            categories=data.categories,
        )

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

    def evaluate(self, embeddings=None):
        if embeddings is None:
            embeddings = self.embedder.predict(self.test_images(), verbose=0)
        return evaluate_embeddings(embeddings, self.test_data.labels, self.config, self.test_data.categories)


def check_export_config(config):
    """Fail before training on export settings that would only fail after it."""
    export_config = config["export"]
    try:
        check_export_settings(
            config["name"], export_config["version"], export_config["dir"], gallery=export_config["gallery"],
            gallery_k=export_config["gallery_k"], max_image_pixels=export_config["max_image_pixels"],
        )
    except (ValueError, FileExistsError) as error:
        raise ConfigError(str(error)) from None


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
    A run whose training finished earlier (``done.json``) is not trained again: its final
    weights are evaluated and exported. Export settings are checked before anything trains.
    """
    check_export_config(config)
    strategy = make_strategy(config["distribute"]["strategy"])
    keras.utils.set_random_seed(config["seed"])
    if config["model"]["mixed_precision"]:
        keras.mixed_precision.set_global_policy("mixed_float16")
    chief = is_chief(strategy)
    resolver = getattr(strategy, "cluster_resolver", None)
    run_dir = prepare_run_dir(config, chief, getattr(resolver, "task_id", 0))
    started = time.time()
    setup = Setup(config, strategy)
    rows = {"raw pixels": setup.evaluate(raw_pixels(setup.test_images())), "untrained": setup.evaluate()}
    if os.path.exists(os.path.join(run_dir, DONE_FILE)):
        print(f"Training of {run_dir} finished earlier: evaluating and exporting its final weights.")
        setup.embedder.load_weights(os.path.join(run_dir, FINAL_WEIGHTS))
    else:
        backup_dir = os.path.join(run_dir, "backup")
        resumed_epochs = AtomicBackupAndRestore.finished_epochs(backup_dir)
        # Order matters: evaluation adds val_* to the logs before they are recorded; the epoch is
        # recorded before it is backed up, so a kill in between repeats the epoch rather than losing
        # its record; the backup restores the weights before the memory bank is embedded with them;
        # the final weights and done marker are written before the backup is removed.
        run_callbacks = [
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
    rows["trained"] = setup.evaluate()
    if setup.validation_data is not None:
        with open(os.path.join(run_dir, DONE_FILE)) as f:
            done = json.load(f)
        print(
            f"Model selection on {len(setup.validation_data)} validation images "
            f"({setup.validation_data.name}): epoch {done['best_epoch']} by {done['select_by']}."
        )
    if not chief:
        return {"metrics": rows, "export_path": None, "run_dir": run_dir}
    export_path = export_embedder(setup, config)
    if config["export"]["gallery"]:
        search_path = export_gallery_search(setup, config)
        print(f"Exported retrieval SavedModel to {search_path}")
    print(f"\nHeld-out classes ({setup.test_data.name}, {len(setup.test_data)} images):")
    print(format_table(rows))
    print(f"\nExported SavedModel to {export_path} ({time.time() - started:.0f} s in all)")
    return {"metrics": rows, "export_path": export_path, "run_dir": run_dir}
