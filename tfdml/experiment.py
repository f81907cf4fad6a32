"""A recipe, built and trained: :class:`Experiment`, the one way tfdml assembles ``fit``.

``Experiment(config)`` reads the recipe's data, builds its sampler, embedding model, loss (with
its miner) and optimizer, and :meth:`Experiment.fit` trains them in a
:class:`~tfdml.training.run_folder.RunFolder` with one set of callbacks: the divergence stop,
evaluation of the held-out classes, per-epoch records and checkpoints, the resumable backup and
the one model-selection rule (:class:`~tfdml.training.callbacks.FinishTraining`). ``train.py``
(:func:`tfdml.run.train`), each ``--tune`` trial (:mod:`tfdml.tune`), the Omniglot study and the
model zoo are callers of it that differ only in their folder, their selection key and extra
callbacks.

>>> experiment = Experiment(tfdml.training.config.load_config("pipelines/digits_margin.yaml"))
>>> folder = RunFolder("runs/digits")
>>> with folder.hold():
...     folder.prepare(experiment.config)
...     fitted = experiment.fit(folder)
>>> experiment.evaluate()["recall_at_1"], fitted.selected_epoch
"""

import dataclasses
import functools

import keras
import tensorflow as tf

from tfdml import data as tfdml_data
from tfdml import evaluation, sampling
from tfdml.evaluation.report import CLUSTERING_METRICS
from tfdml.extras import require
from tfdml.models.embedding import embed, inference_function
from tfdml.training.callbacks import (
    AtomicBackupAndRestore, EpochJSONLogger, FinishTraining, StopOnDivergence, external_state,
)
from tfdml.training.config import ConfigError
from tfdml.training.distribute import distribute_batches, make_strategy
from tfdml.training.factory import build_embedder, build_loss, build_optimizer, build_sampler, needs_memory_bank
from tfdml.training.model import MetricLearningModel, resolve_jit_compile


def load_split(config, split, source=None):
    """One split of ``source`` (a section with ``name``, ``root``, ``params``; default ``data``); the digits
    are read with ``data.channels`` (folder and list files take their channel count from ``params.channels``;
    Omniglot and the TFDS readers have their own). With an augmentation protocol, images stay at their
    stored size (the protocol crops and resizes them once, to ``data.image_size``)."""
    data_config = config["data"]
    source = source or data_config
    channels = {"channels": data_config["channels"]} if source["name"] == "digits" else {}
    return tfdml_data.load(
        source["name"],
        root=source["root"],
        split=split,
        image_size=None if data_config["augmentation"] else data_config["image_size"],
        **channels,
        **source["params"],
    )


def load_test_split(config):
    """The labelled images evaluated after training: ``evaluation.data`` when it names a dataset, else the
    ``data.test_split``; ``None`` for unlabelled data (``tfdml.data.UNLABELLED_READERS``) without one."""
    evaluation_data = config["evaluation"]["data"]
    if evaluation_data["name"] is not None:
        return load_split(config, evaluation_data["split"], evaluation_data)
    if config["data"]["name"] in tfdml_data.UNLABELLED_READERS:
        return None
    return load_split(config, config["data"]["test_split"])


def training_classes(config, split):
    """``(fit, validation)``: the training split less its held-out validation classes (``None``
    without ``data.validation``), with rotation classes added to ``fit`` only, so that no rotated
    copy of a validation class is trained on; with ``data.labels: false`` ``fit`` is labelled by
    instance (:func:`tfdml.data.instance_labels`), after the validation classes left it."""
    data_config = config["data"]
    validation = None
    if data_config["validation"] is not None:
        try:
            split, validation = tfdml_data.hold_out_validation(split, data_config["validation"], seed=config["seed"])
        except ValueError as error:
            raise ConfigError(f"data.validation: {error}") from None
    if data_config["rotations"]:
        split = tfdml_data.with_rotations(split)
    if not data_config["labels"]:
        split = tfdml_data.instance_labels(split)
    return split, validation


def eval_transform(protocol, size):
    """The eval counterpart of a training augmentation protocol, applied after the reader's own
    preprocessing: Roth's ``"eval"`` (resize, centre crop) for the cropping protocols; a whole-image
    area resize for ``"affine"``, whose distortions keep the whole character in view."""
    if protocol == "affine":
        return lambda image: tf.image.resize(image, [size, size], method="area")
    return tfdml_data.augmentation("eval", size=size)


#: The most bytes of loaded training images :func:`loaded_once` holds in memory.
IN_MEMORY_BYTES = 256 * 2**20


def loaded_once(data, limit=IN_MEMORY_BYTES):
    """``data`` with every image loaded (decoded and preprocessed) once and held in memory as float32, so
    that the training input path gathers an image instead of decoding and resizing it at each draw (the
    same pixels: ``load`` runs once per image instead of once per draw); ``data`` itself when its images
    would take more than ``limit`` bytes."""
    first = data.load(tf.constant(0, tf.int64))
    if len(data) * first.shape.num_elements() * 4 > limit:
        return data
    images = tf.concat([tf.cast(batch, tf.float32) for batch, _ in data.dataset(batch_size=256)], axis=0)
    return dataclasses.replace(data, load=lambda index: tf.gather(images, index))


def validation_metrics(metrics, select_by):
    """The recipe's ``metrics`` less the clustering ones (k-means at every validation) unless ``select_by``
    (``val_<metric>``) names one: the test split is still scored with all of them."""
    return [m for m in metrics if m not in CLUSTERING_METRICS or select_by == f"val_{m}"]


@dataclasses.dataclass
class Fitted:
    """What :meth:`Experiment.fit` leaves.

    Attributes:
        records: every finished epoch's logs (``{"epoch": e, "loss": …, "val_…": …}``, non-finite values
            as ``None``), also those of earlier processes of a resumed run.
        selected_epoch: the epoch whose weights the model now holds when ``select_by`` chose one, else ``None``
            (the last epoch's).
        trained: ``False`` when the folder's training had finished earlier and its final weights were loaded.
    """

    records: list
    selected_epoch: int | None
    trained: bool


class Experiment:
    """One recipe's data, sampler, embedding model, loss and optimizer, built and ready to :meth:`fit`.

    Building seeds Keras with the recipe's ``seed`` (``keras.utils.set_random_seed``) and sets the
    global dtype policy from ``model.mixed_precision``, so every caller starts a recipe alike.

    Args:
        config: a resolved recipe (:func:`tfdml.training.config.load_config`).
        strategy: the ``tf.distribute`` strategy; default: the recipe's ``distribute.strategy``.
        splits: optional already loaded ``(train, test)`` data of this config, to skip reading it again.

    Attributes:
        train_data, validation_data, test_data: what is trained on, the held-out validation classes
            (``None`` without ``data.validation``) and the test split (``evaluation.data`` when named;
            ``None`` for unlabelled data without it: nothing is evaluated).
        eval_data: the test split with the eval preprocessing (what is evaluated and exported; ``None`` with
            no test split, when the training images' eval preprocessing is exported).
        served_data: :attr:`eval_data`, or without it the training images with the eval preprocessing.
        sampler, bank: the batch sampler and its memory bank (``None`` unless the sampler reads one).
        embedder, loss, model: the embedding model, the loss and the ``MetricLearningModel`` training both.
        inference: the embedder in inference mode, one traced function (:func:`tfdml.models.embedding.inference_function`).
        steps_per_epoch: ``steps_per_epoch`` of the recipe, or the sampler's epoch.
    """

    def __init__(self, config, strategy=None, splits=None):
        self.config = config
        keras.utils.set_random_seed(config["seed"])
        keras.mixed_precision.set_global_policy("mixed_float16" if config["model"]["mixed_precision"] else "float32")
        self.strategy = strategy = strategy or make_strategy(config["distribute"]["strategy"])
        train_split, self.test_data = splits or (
            load_split(config, config["data"]["train_split"]),
            load_test_split(config),
        )
        self.train_data, self.validation_data = training_classes(config, train_split)
        self.bank = None
        if needs_memory_bank(config):
            self.bank = sampling.MemoryBank(len(self.train_data), config["model"]["embedding_dim"], seed=config["seed"])
        self.sampler = build_sampler(config, self.train_data, self.bank)
        data_config = config["data"]
        self.train_preprocess = self.eval_augmentation = None
        self.eval_data, self.validation_eval_data = self.test_data, self.validation_data
        if data_config["augmentation"]:
            size = data_config["image_size"]
            self.train_preprocess = tfdml_data.augmentation(data_config["augmentation"], size=size, seed=config["seed"])
            self.eval_augmentation = eval_transform(data_config["augmentation"], size)
            if self.test_data is not None:
                self.eval_data = self.test_data.preprocessed(self.eval_augmentation)
            if self.validation_data is not None:
                self.validation_eval_data = self.validation_data.preprocessed(self.eval_augmentation)
            image_shape = (size, size, data_config["channels"])
        else:
            image_shape = tuple(int(s) for s in self.train_data.load(tf.constant(0, tf.int64)).shape)
        self.served_data = self.eval_data
        if self.served_data is None:  # nothing to evaluate: export the training images' eval preprocessing
            self.served_data = self.train_data
            if self.eval_augmentation is not None:
                self.served_data = self.train_data.preprocessed(self.eval_augmentation)
        self.steps_per_epoch = config["steps_per_epoch"] or self.sampler.batches_per_epoch
        with strategy.scope():
            self.embedder = build_embedder(config, image_shape, synchronized_batchnorm=strategy.num_replicas_in_sync > 1)
            class_counts = self.train_data.class_counts().tolist()  # classes are 0..max
            self.loss = build_loss(
                config, num_classes=len(class_counts), num_images=len(self.train_data), class_counts=class_counts,
                steps_per_epoch=self.steps_per_epoch,
            )
            self.model = MetricLearningModel(self.embedder, self.loss)
            self.inference = inference_function(self.embedder)
            optimizer = build_optimizer(config, steps_per_epoch=self.steps_per_epoch, model=self.embedder)
            # One call of the compiled train function per epoch: Keras' per-step Python (callback hooks, the
            # progress bar, a host sync of the loss) runs once an epoch, and the steps are the same. Keras 3.15's
            # multi-step loop fails under MultiWorkerMirroredStrategy (an unfed placeholder): one step a call there.
            multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            self.model.compile(
                optimizer=optimizer, jit_compile=resolve_jit_compile(config["jit_compile"]),
                steps_per_execution=1 if multi_worker else self.steps_per_epoch,
            )

    def training_batches(self, start=0):
        """The (distributed) training batches from the ``start``-th batch of the run on: a resumed run
        reads what the uninterrupted run would have read next."""
        train_data = self.train_data if self.train_preprocess is not None else loaded_once(self.train_data)
        batches = sampling.batches(train_data, self.sampler, preprocess=self.train_preprocess, start=start)
        return distribute_batches(self.strategy, batches, self.sampler.batch_size)

    @property
    def evaluation_data(self):
        """What is evaluated during training: the held-out validation classes when the recipe has
        ``data.validation`` (the test split is then touched once, after training), else the test split
        (``None`` when there is none)."""
        return self.validation_eval_data if self.validation_data is not None else self.eval_data

    @property
    def select_by(self):
        """The recipe's selection key: ``evaluation.select_by`` when it holds validation classes out
        (selecting on the test split would be tuning on it), else ``None`` (the last epoch is kept)."""
        return self.config["evaluation"]["select_by"] if self.validation_data is not None else None

    def fit(self, folder, *, select_by=None, evaluate_every=None, callbacks=(), verbose=1, initial_epoch=0):
        """Train the recipe in ``folder`` (a prepared :class:`~tfdml.training.run_folder.RunFolder`, held
        by the caller) and leave the model holding its final weights.

        A folder whose training finished earlier is not trained again: its final weights are loaded. A
        folder holding a backup resumes after its last finished epoch, reading the batches the
        uninterrupted run would have read, so the result equals it. Training that diverges stops at once
        with :class:`~tfdml.training.callbacks.TrainingDiverged`.

        Args:
            folder: where the records, checkpoints, backup, final weights and ``done`` marker go.
            select_by: the logged key whose best epoch's weights are kept (the first on ties); default
                :attr:`select_by` (the recipe's rule).
            evaluate_every: evaluate :attr:`evaluation_data` every this many epochs; default the recipe's
                ``evaluation.every_n_epochs``.
            callbacks: extra Keras callbacks, called after the run's own (after the epoch's backup).
            verbose: Keras ``fit`` verbosity.
            initial_epoch: the epoch a new run starts at (a tuner continuing an earlier trial's weights).

        Returns:
            :class:`Fitted`: the run's records and the selected epoch.
        """
        if folder.is_done():
            self.embedder.load_weights(folder.final_weights)
            return Fitted(folder.records(), folder.done().get("best_epoch"), trained=False)
        require("tensorboard", "Experiment.fit (its TensorBoard logs)")
        select_by = select_by or self.select_by
        start = folder.finished_epochs() or initial_epoch
        evaluation_config = self.config["evaluation"]
        data = self.evaluation_data
        retrieval = [] if data is None else [
            evaluation.RetrievalEvaluation(
                loaded_once(data).dataset(batch_size=256),
                embedding_model=self.embedder,
                every_n_epochs=evaluate_every or evaluation_config["every_n_epochs"],
                metrics=validation_metrics(evaluation_config["metrics"], select_by),
                k=evaluation_config["recall_k"],
                categories=data.categories,
            )
        ]
        # Order matters: a diverged epoch stops before anything evaluates, records or backs it up;
        # evaluation adds val_* to the logs before they are recorded; the epoch is recorded before
        # it is backed up, so a kill in between repeats the epoch rather than losing its record; the
        # backup restores the weights before the memory bank is embedded with them; the final
        # weights and done marker are written before the backup is removed.
        run_callbacks = [
            self.divergence_stop(folder),
            *retrieval,
            EpochJSONLogger(folder.metrics_file),
            keras.callbacks.TensorBoard(folder.logs_dir),
            FinishTraining(folder, self.embedder, select_by),
            AtomicBackupAndRestore(folder.backup_dir, state=external_state(self.loss), checkpoint=folder.checkpoint),
            *self.sampler_callbacks(),
            *callbacks,
        ]
        self.model.fit(
            self.training_batches(start=start * self.steps_per_epoch),
            epochs=self.config["epochs"], initial_epoch=initial_epoch, steps_per_epoch=self.steps_per_epoch,
            callbacks=run_callbacks, shuffle=False, verbose=verbose,
        )
        return Fitted(folder.records(), folder.done().get("best_epoch"), trained=True)

    def divergence_stop(self, folder):
        """Stops training at its first non-finite loss, or embeddings of a batch of :attr:`evaluation_data`
        (of :attr:`served_data` when nothing is evaluated)."""
        probe = next(iter((self.evaluation_data or self.served_data).dataset(batch_size=32)))[0]
        rate = self.config["optimizer"]["learning_rate"]
        advice = (
            f"The usual cause is too high a learning rate (optimizer.learning_rate={rate}): lower it and rerun; "
            f"the corrected command takes {folder.path} over."
        )
        return StopOnDivergence(folder.diverged_file, probe, advice=advice, embed=self.inference)

    def sampler_callbacks(self):
        """Callbacks the sampler needs during ``fit``: the memory-bank refresh of batch-matching samplers."""
        if self.bank is None:
            return []
        return [sampling.MemoryBankRefresh(self.bank, self.indexed_train_images(), embed=self.embedder)]

    @property
    def eval_preprocess(self):
        """The one eval preprocessing, decoded test image → model input (the reader's pixel transforms,
        then the ``"eval"`` protocol with an augmentation recipe): evaluation, the export gallery and
        both exported signatures run this function."""
        return self.served_data.preprocess

    @functools.cached_property
    def loaded_eval_data(self):
        """:attr:`eval_data` loaded once (:func:`loaded_once`): the raw-pixel row, the untrained and the trained
        network read the test images three times."""
        return loaded_once(self.eval_data)

    def test_images(self, batch_size=256):
        """The eval-preprocessed test images in index order, in batches."""
        return self.loaded_eval_data.dataset(batch_size=batch_size).map(lambda images, labels: images)

    def embed(self, images):
        """Embeddings (NumPy) of a dataset of image batches, in order: the model in inference mode, by
        :attr:`inference`, traced once for every batch size and split."""
        return embed(self.inference, images)

    def embed_test(self):
        return self.embed(self.test_images())

    def indexed_train_images(self, batch_size=256):
        """The training images with the eval preprocessing, as ``(images, indices)`` batches in index order
        (what the memory bank embeds)."""
        return sampling.indexed_batches(self.train_data, batch_size, preprocess=self.eval_augmentation)

    def embed_train(self):
        """Embeddings of the training images (eval preprocessing), in index order."""
        return self.embed(self.indexed_train_images().map(lambda images, indices: images))

    def evaluate(self, embeddings=None):
        """The recipe's metrics of ``embeddings`` (default: the model's) of the test split."""
        if embeddings is None:
            embeddings = self.embed_test()
        evaluation_config = self.config["evaluation"]
        return evaluation.evaluate(
            embeddings, self.test_data.labels, metrics=evaluation_config["metrics"], k=evaluation_config["recall_k"],
            categories=self.test_data.categories,
        )

