"""Build a recipe's parts: its loss (with its miner), sampler, optimizer and embedding model.

A recipe names classes (``loss.class``, ``miner.class``, ``sampler.class``) by their Keras
serialization name under the package ``"tfdml"``, the name ``keras.saving`` saves them
under. Arguments come from the section's ``params``; the arguments a run derives from its
data or from other recipe keys (``num_classes``, ``num_images``, ``class_counts``, ``embedding_dim``, the
memory ``bank``, ``samples_per_class``, the data's ``categories``) are passed to the classes
that declare them in their ``data_arguments`` attribute, unless ``params`` sets them.
The optimizer and the backbone are looked up by name in their registries
(:data:`tfdml.training.optimizers.OPTIMIZERS`, :data:`tfdml.models.BACKBONES`).
"""

import inspect

import keras

from tfdml import losses, mining, sampling
from tfdml.models import build_embedding_model
from tfdml.training.config import ConfigError
from tfdml.training.optimizers import recipe_optimizer

#: Recipe section → (base class of its classes, module that exports them).
KINDS = {
    "loss": (losses.DMLLoss, losses),
    "miner": (mining.Miner, mining),
    "sampler": (sampling.BatchSampler, sampling),
}


def resolve_class(kind, name):
    """The class registered as ``tfdml>{name}`` that is a ``kind`` (a ``ConfigError`` otherwise)."""
    base, module = KINDS[kind]
    cls = keras.saving.get_registered_object(f"tfdml>{name}")
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise ConfigError(f"{kind}.class={name!r} is not a class of {module.__name__}.")
    return cls


def construct(kind, section, always=None, derived=None):
    """``section['class']`` built with ``section['params']``; ``always`` (arguments every class of
    ``kind`` takes) and those ``derived`` arguments the class declares fill what ``params`` leaves out."""
    cls = resolve_class(kind, section["class"])
    params = dict(section.get("params") or {})
    supplied = dict(always or {})
    supplied.update(
        {key: value for key, value in (derived or {}).items() if key in cls.data_arguments and value is not None}
    )
    for key, value in supplied.items():
        params.setdefault(key, value)
    try:
        return cls(**params)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{kind} ({section['class']}): {error}") from None


def build_miner(config):
    """The recipe's miner, or ``None`` without ``miner.class``."""
    if not config["miner"]["class"]:
        return None
    return construct("miner", config["miner"], always={"seed": config["seed"]})


def build_loss(config, num_classes, num_images, class_counts=None, steps_per_epoch=None):
    """The recipe's loss with its miner, for training data of ``num_classes`` classes and ``num_images`` images
    (``class_counts``: the number of images of each class), in a :class:`~tfdml.losses.CrossBatchMemory` when
    ``memory.size`` is set (its ``start_epoch`` counted in ``steps_per_epoch`` steps)."""
    derived = {
        "miner": build_miner(config),
        "num_classes": num_classes,
        "num_images": num_images,
        "class_counts": class_counts,
        "embedding_dim": config["model"]["embedding_dim"],
    }
    loss = construct("loss", config["loss"], derived=derived)
    memory = config["memory"]
    if not memory["size"]:
        return loss
    if memory["start_epoch"] and steps_per_epoch is None:
        raise ConfigError("memory.start_epoch needs the run's steps_per_epoch to count its steps.")
    try:
        return losses.CrossBatchMemory(
            loss,
            memory_size=memory["size"],
            embedding_dim=config["model"]["embedding_dim"],
            start_step=memory["start_epoch"] * (steps_per_epoch or 0),
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"memory: {error}") from None


def needs_memory_bank(config):
    """Whether the recipe's sampler chooses batches from a memory bank (coreset, DDM, FRD)."""
    return "bank" in resolve_class("sampler", config["sampler"]["class"]).data_arguments


def build_sampler(config, train_data, bank=None):
    """The recipe's sampler over ``train_data``'s labels (and categories, for the samplers that read them);
    ``bank``: its memory bank, if it reads one."""
    sampler_config = config["sampler"]
    reads_categories = "categories" in resolve_class("sampler", sampler_config["class"]).data_arguments
    if reads_categories and train_data.categories is None:
        raise ConfigError(
            f"sampler.class={sampler_config['class']!r} draws batches by category, but the training data "
            f"(data.name={config['data']['name']!r}) has no categories."
        )
    always = {"labels": train_data.labels, "batch_size": sampler_config["batch_size"], "seed": config["seed"]}
    derived = {
        "samples_per_class": sampler_config["samples_per_class"],
        "bank": bank,
        "categories": train_data.categories,
    }
    return construct("sampler", sampler_config, always=always, derived=derived)


def build_embedder(config, image_shape, synchronized_batchnorm=False):
    """The recipe's embedding model for images of ``image_shape``."""
    model_config = config["model"]
    return build_embedding_model(
        model_config["backbone"],
        input_shape=image_shape,
        embedding_dim=model_config["embedding_dim"],
        pooling=model_config["pooling"],
        head=model_config["head"],
        head_hidden=model_config["head_hidden"],
        gem_p=model_config["gem_p"],
        normalize=model_config["normalize"],
        weights=model_config["weights"],
        backbone_config=model_config["backbone_config"],
        freeze_batchnorm=model_config["freeze_batchnorm"],
        filters=model_config["filters"],
        blocks=model_config["blocks"],
        synchronized_batchnorm=synchronized_batchnorm,
    )


def build_optimizer(config, *, steps_per_epoch, model):
    """The recipe's optimizer for ``model`` (the embedding model) in a run of ``steps_per_epoch`` steps per
    epoch: :func:`~tfdml.training.optimizers.recipe_optimizer` of its ``optimizer`` section."""
    try:
        return recipe_optimizer(config["optimizer"], epochs=config["epochs"], steps_per_epoch=steps_per_epoch, model=model)
    except ValueError as error:  # the recipe's values, named by their keys
        raise ConfigError(str(error)) from None
