"""Every loss and miner registered under the Keras package ``"tfdml"``, built generically.

Tests that run over "every loss" or "every miner" walk these, never a hand list, so a new
registered class is tested without anyone remembering to add it. A class is built from its
``data_arguments`` (``num_classes``, ``embedding_dim``, ``num_images``, ``miner``), as a recipe run
builds it (:mod:`tfdml.training.factory`), plus the required arguments listed in :data:`SUPPLIED`.
:data:`VARIANTS` adds non-default constructions that take other code paths; it names classes,
and :func:`check_variants` fails when one of them is no longer registered.
"""

import inspect

import keras
import numpy as np

from tfdml import losses, mining

BATCH, DIM, PER_CLASS = 16, 8, 4
NUM_CLASSES = BATCH // PER_CLASS

# Losses whose value is random for a fixed batch and miner (QuadrupletLoss draws its fourth sample):
# XLA draws other numbers than TensorFlow's kernels, so their XLA value is checked, not compared. A stateful
# loss whose every call changes its next value (CrossBatchMemory enqueues the batch) is declared here too.
STOCHASTIC_LOSSES = {"QuadrupletLoss", "CrossBatchMemory"}
# Losses of fourth order in the embeddings (VICReg's covariance term): their value at ‖x‖ = 1e15 exceeds float32.
QUARTIC_LOSSES = {"VICRegLoss"}
# Miners that mine nothing when every embedding is the same point (a semi-hard negative must be strictly
# farther than the positive): on the "identical" degenerate batch they return no tuple.
EMPTY_WHEN_COLLAPSED = {"BatchEasyHardMiner"}
# Miners whose tuples are a function of the batch alone (the others draw them).
DETERMINISTIC_MINERS = {"BatchEasyHardMiner", "BatchHardMiner", "HDCMiner", "MultiSimilarityMiner", "PairMarginMiner"}

# Constructions that take other code paths than a class's defaults: {class name: {variant: arguments}}.
VARIANTS = {
    "TripletLoss": {"squared": {"squared": True}},
    "MarginLoss": {
        # ν > 0: on a batch where every tuple's two terms are active their β gradients cancel.
        "learned-betas": {"learn_beta": True, "beta_class": True, "nu": 0.1},
        "all-pairs": {"pairs": "all", "miner": None},
    },
    "ContrastiveLoss": {"all-pairs": {"pairs": "all", "miner": None}},
    "DecoupledContrastiveLoss": {"weighted": {"sigma": 0.5}},
    "MultiSimilarityLoss": {"all-pairs": {"pairs": "all", "miner": None}},
    "SemiHardMiner": {"anchors-fixed": {"lower_bound": 0.5, "construction": "anchors"}},
    "DistanceWeightedMiner": {"anchors": {"construction": "anchors", "nonzero_loss_cutoff": None}},
}


def registered(base):
    """The classes registered as ``tfdml>Name`` (Keras' global custom objects) that subclass ``base``, by name."""
    classes = {
        cls
        for key, cls in keras.saving.get_custom_objects().items()
        if key.startswith("tfdml>") and inspect.isclass(cls) and issubclass(cls, base)
    }
    return sorted(classes, key=lambda cls: cls.__name__)


def loss_classes():
    return registered(losses.DMLLoss)


def miner_classes():
    return registered(mining.Miner)


def default_miner():
    """A deterministic miner: a wrapper's inner miner, and the miner of losses compared across modes."""
    return mining.BatchHardMiner()


# What a recipe run derives from its data for a class that declares it, and what a class that requires
# it without a data argument (RhoRegularizedMiner's wrapped miner) is given.
SUPPLIED = {
    "num_classes": lambda: NUM_CLASSES,
    "embedding_dim": lambda: DIM,
    "num_images": lambda: BATCH,
    "class_counts": lambda: [PER_CLASS * 4**c for c in range(NUM_CLASSES)],
    "miner": default_miner,
    # CrossBatchMemory's wrapped loss and memory (smaller than two batches, so it drops samples).
    "loss": lambda: losses.MultiSimilarityLoss(miner=mining.MultiSimilarityMiner()),
    "memory_size": lambda: BATCH + PER_CLASS,
}


def required_arguments(cls):
    return [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def build(cls, miner=None, **arguments):
    """``cls`` built as a recipe run builds it: its data arguments (``miner`` only when given: otherwise
    the class's own default, seeded), its required arguments, a fixed ``seed`` where it takes one, and ``arguments``."""
    parameters = inspect.signature(cls).parameters
    supplied = {}
    for name in (*cls.data_arguments, *required_arguments(cls)):
        if name == "miner" and name not in required_arguments(cls):
            if miner is not None:
                supplied[name] = miner
            continue
        if name not in SUPPLIED:
            raise TypeError(f"tests/registry_cases.py cannot build {cls.__name__}: add its argument {name!r} to SUPPLIED.")
        supplied[name] = miner if name == "miner" and miner is not None else SUPPLIED[name]()
    if "seed" in parameters:
        supplied["seed"] = 0
    made = cls(**{**supplied, **arguments})  # a variant's miner=None (pairs="all") overrides the given one
    own_miner = getattr(made, "miner", None)
    if "miner" not in supplied and "miner" not in arguments and own_miner is not None and own_miner.seed is None:
        # The class's default miner, seeded: two builds mine alike.
        made = cls(**{**supplied, **arguments, "miner": type(own_miner).from_config({**own_miner.get_config(), "seed": 0})})
    return made


def cases(classes, miner=None):
    """``{case id: factory}``: every class with its defaults, and its :data:`VARIANTS`."""
    made = {}
    for cls in classes:
        made[cls.__name__] = lambda cls=cls: build(cls, miner=miner() if miner else None)
        for variant, arguments in VARIANTS.get(cls.__name__, {}).items():
            made[f"{cls.__name__}-{variant}"] = lambda cls=cls, arguments=arguments: build(
                cls, **{"miner": miner() if miner else None, **arguments}
            )
    return made


def loss_cases(miner=None):
    """Every registered loss (with ``miner()`` where it takes a miner; ``None``: its default miner)."""
    return cases(loss_classes(), miner)


def miner_cases():
    return cases(miner_classes())


def class_indexed(loss):
    """Whether ``loss`` reads a table indexed by class id (proxies, class centres, class βs)."""
    return "num_classes" in required_arguments(type(loss)) or getattr(loss, "beta_class", False)


def is_stochastic(case_id):
    return case_id.split("-")[0] in STOCHASTIC_LOSSES


def check_variants():
    """The class names of :data:`VARIANTS`, :data:`STOCHASTIC_LOSSES`, :data:`QUARTIC_LOSSES`,
    :data:`EMPTY_WHEN_COLLAPSED` and :data:`DETERMINISTIC_MINERS` that are not registered."""
    names = {cls.__name__ for cls in loss_classes() + miner_classes()}
    declared = set(VARIANTS) | STOCHASTIC_LOSSES | QUARTIC_LOSSES | EMPTY_WHEN_COLLAPSED | DETERMINISTIC_MINERS
    return sorted(declared - names)


def batch(seed=0):
    """Unit embeddings ``(BATCH, DIM)`` float32 and int32 labels, ``PER_CLASS`` of each of ``NUM_CLASSES`` classes."""
    x = np.random.default_rng(seed).normal(size=(BATCH, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(NUM_CLASSES), PER_CLASS).astype(np.int32)
