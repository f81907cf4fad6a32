"""The optimizers a recipe names (``optimizer.name``), by name in :data:`OPTIMIZERS`, and the
fine-tuning controls of the recipe's ``optimizer`` section.

A builder maps the recipe's ``optimizer`` section to a Keras optimizer,
``builder(learning_rate, weight_decay, **options) -> keras.optimizers.Optimizer``, where
``weight_decay=None`` means none (decoupled weight decay, as Keras applies it: ``w ← w − lr·wd·w``
before each step) and ``options`` are the :class:`BackboneRate` arguments and Keras' ``clipnorm``/
``global_clipnorm``. Names are matched case-insensitively (``Adam`` is ``adam``), as Keras matches its
own optimizer names. :func:`recipe_optimizer` builds the whole section for a model:

- ``schedule``: the learning rate over the run, in epochs (converted to steps with the run's steps
  per epoch), one of Keras' own schedules (see :data:`SCHEDULES`); ``{}`` (default) keeps it constant.
- weight decay, for every optimizer that has one, skips the variables of rank ≤ 1 — biases and the
  scales and offsets of normalisation layers (BatchNorm, LayerNorm), timm's rule after Loshchilov &
  Hutter 2019 (AdamW) — through Keras' ``exclude_from_weight_decay``.
- ``backbone_lr_multiplier`` (default 1): the backbone's variables learn at ``lr × multiplier``, the
  head at ``lr`` (pretrained backbones are fine-tuned 10–100× slower than the new head); loss
  parameters such as proxies have their own optimizer (:class:`~tfdml.training.model.MetricLearningModel`).
- ``backbone_frozen_epochs`` (default 0): the backbone is not updated at all (nor its optimizer state,
  nor by weight decay) for the first K epochs, then learns at ``lr × multiplier``.
- ``backbone_frozen_until`` (default null: the whole backbone): freeze, for those first epochs, only the
  backbone's early blocks — its layers up to and including the one of this name (in the backbone's
  depth-first layer order, e.g. ``conv3_block4_out`` of ResNet50V2) — while the later blocks already learn.
- ``clipnorm`` / ``global_clipnorm`` (default null): Keras' gradient clipping, per variable or over all.

Example::

    optimizer:
      name: adamw
      learning_rate: 1.0e-4
      weight_decay: 0.05
      schedule: {name: cosine, warmup_epochs: 2}
      backbone_lr_multiplier: 0.1
      backbone_frozen_epochs: 1
      backbone_frozen_until: conv3_block4_out
      global_clipnorm: 1.0

>>> OPTIMIZERS.get("sgd")(learning_rate=0.1, weight_decay=None).momentum
0.9
"""

import difflib
import math

import keras
from keras import ops

from tfdml.registry import Registry

OPTIMIZERS = Registry("optimizer")

#: ``optimizer.schedule`` names → {key: (type, default; ``None`` = required)}. Epoch counts may be
#: fractional; each becomes ``round(epochs × steps_per_epoch)`` steps.
SCHEDULES = {
    # Linear warm-up from 0 to learning_rate over warmup_epochs, then cosine decay to
    # final_fraction × learning_rate at the end of the run (Loshchilov & Hutter 2017; Goyal et al. 2017).
    "cosine": {"warmup_epochs": (float, 0.0), "final_fraction": (float, 0.0)},
    # learning_rate × factor**i after the i-th of boundaries_epochs (He et al. 2016's step schedule).
    "step": {"boundaries_epochs": (list, None), "factor": (float, 0.1)},
    # learning_rate × rate**(epoch / decay_epochs), in whole steps of decay_epochs when staircase.
    "exponential": {"decay_epochs": (float, None), "rate": (float, None), "staircase": (bool, False)},
}


class BackboneRate:
    """Mixin for a Keras optimizer: the backbone's variables learn at ``learning_rate × backbone_lr_multiplier``
    and are not updated at all during the first ``backbone_frozen_steps`` steps.

    Keras has no per-variable learning rate; its optimizers call ``update_step(gradient, variable,
    learning_rate)`` once per variable, so this scales the rate passed for the backbone's variables,
    and applies decoupled weight decay in that same call with the variable's own rate (Keras applies
    it to all variables at the global rate first; the result is the same with multiplier 1). A frozen
    step is a ``cond`` on ``iterations``: nothing is recompiled, and a resumed run, whose optimizer
    iterations come back with its weights, freezes and thaws at the same step.

    Which variables are the backbone's is set by :meth:`set_backbone` before the optimizer is built
    (like Keras' ``exclude_from_weight_decay``, not serialised); the two numbers are in ``get_config``.

    Args:
        backbone_lr_multiplier: the backbone's learning-rate factor (default 1).
        backbone_frozen_steps: steps during which the backbone is not updated (default 0).
    """

    def __init__(self, *args, backbone_lr_multiplier=1.0, backbone_frozen_steps=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.backbone_lr_multiplier = float(backbone_lr_multiplier)
        self.backbone_frozen_steps = int(backbone_frozen_steps)
        self._backbone_keys = frozenset()
        self._frozen_keys = frozenset()

    def set_backbone(self, var_list, frozen=None):
        """The variables that learn at the backbone's rate, and those of them frozen for the first
        ``backbone_frozen_steps`` steps (``None``: all of them); call before the optimizer is built."""
        if self.built:
            raise ValueError("set_backbone() can only be called before the optimizer is built.")
        self._backbone_keys = frozenset(self._var_key(variable) for variable in var_list)
        self._frozen_keys = frozenset(self._var_key(variable) for variable in (var_list if frozen is None else frozen))

    def _apply_weight_decay(self, variables):
        pass  # applied in update_step, at each variable's own rate

    def update_step(self, gradient, variable, learning_rate):
        backbone = self._var_key(variable) in self._backbone_keys
        if backbone:
            learning_rate = learning_rate * self.backbone_lr_multiplier

        def step():
            if self.weight_decay is not None and self._use_weight_decay(variable):
                decay = ops.cast(learning_rate, variable.dtype) * ops.cast(self.weight_decay, variable.dtype)
                self.assign_sub(variable, variable * decay)
            super(BackboneRate, self).update_step(gradient, variable, learning_rate)

        if self.backbone_frozen_steps and self._var_key(variable) in self._frozen_keys:
            ops.cond(self.iterations < self.backbone_frozen_steps, lambda: None, step)
        else:
            step()

    def get_config(self):
        return {
            **super().get_config(),
            "backbone_lr_multiplier": self.backbone_lr_multiplier,
            "backbone_frozen_steps": self.backbone_frozen_steps,
        }


@keras.saving.register_keras_serializable(package="tfdml")
class FineTuningAdam(BackboneRate, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with :class:`BackboneRate`."""


@keras.saving.register_keras_serializable(package="tfdml")
class FineTuningAdamW(BackboneRate, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` (Loshchilov & Hutter 2019) with :class:`BackboneRate`."""


@keras.saving.register_keras_serializable(package="tfdml")
class FineTuningSGD(BackboneRate, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with :class:`BackboneRate`."""


@OPTIMIZERS.register("adam")
def adam(learning_rate, weight_decay, **options):
    """Adam with Keras' default moment decays and epsilon (its weight decay is decoupled, as AdamW's)."""
    return FineTuningAdam(learning_rate=learning_rate, weight_decay=weight_decay, **options)


@OPTIMIZERS.register("adamw")
def adamw(learning_rate, weight_decay, **options):
    """AdamW (Loshchilov & Hutter 2019) with Keras' defaults; it needs a weight decay > 0."""
    return FineTuningAdamW(learning_rate=learning_rate, weight_decay=weight_decay, **options)


@OPTIMIZERS.register("sgd")
def sgd(learning_rate, weight_decay, **options):
    """SGD with momentum 0.9."""
    return FineTuningSGD(learning_rate=learning_rate, momentum=0.9, weight_decay=weight_decay, **options)


def _number(key, value, low, *, integer=False, strict=True):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ValueError(f"{key} must be {'an integer' if integer else 'a finite number'}; got {value!r}.")
    if value < low or (strict and value == low):
        raise ValueError(f"{key} must be {'>' if strict else '>='} {low}; got {value!r}.")
    return value


def check_optimizer(section, epochs):
    """Check the fine-tuning keys of a recipe's ``optimizer`` section (a run of ``epochs`` epochs);
    errors (``ValueError``; :mod:`tfdml.training.config`, which imports this module, raises them as its
    ``ConfigError``) name the key. Returns the schedule with its defaults filled in (``{}`` for none)."""
    if section["name"].lower() == "adamw" and not section["weight_decay"]:
        raise ValueError(
            f"optimizer.weight_decay must be > 0 with optimizer.name=adamw; got {section['weight_decay']!r} "
            "(use adam for no weight decay)."
        )
    _number("optimizer.backbone_lr_multiplier", section["backbone_lr_multiplier"], 0)
    _number("optimizer.backbone_frozen_epochs", section["backbone_frozen_epochs"], 0, integer=True, strict=False)
    for key in ("clipnorm", "global_clipnorm"):
        if section[key] is not None:
            _number(f"optimizer.{key}", section[key], 0)
    if section["clipnorm"] is not None and section["global_clipnorm"] is not None:
        raise ValueError("optimizer.clipnorm and optimizer.global_clipnorm are both set; keep one.")
    return _check_schedule(section["schedule"], epochs)


def _check_schedule(schedule, epochs):
    if not schedule:
        return {}
    if not isinstance(schedule, dict):
        raise ValueError(f"optimizer.schedule must be a mapping such as {{name: cosine}}; got {schedule!r}.")
    if schedule.get("name") not in SCHEDULES:
        raise ValueError(f"optimizer.schedule.name must be one of {', '.join(SCHEDULES)}; got {schedule.get('name')!r}.")
    name = schedule["name"]
    keys = SCHEDULES[name]
    unknown = sorted(set(schedule) - set(keys) - {"name"})
    if unknown:
        raise ValueError(f"Unknown key optimizer.schedule.{unknown[0]} for schedule {name}; known: {', '.join(keys)}.")
    filled = {"name": name}
    for key, (kind, default) in keys.items():
        path = f"optimizer.schedule.{key}"
        if key not in schedule and default is None:
            raise ValueError(f"{path} is required by schedule {name}.")
        value = schedule.get(key, default)
        if kind is bool and not isinstance(value, bool):
            raise ValueError(f"{path} must be a boolean; got {value!r}.")
        if kind is list and not (isinstance(value, list) and value):
            raise ValueError(f"{path} must be a non-empty list of epochs; got {value!r}.")
        filled[key] = value
    if name == "cosine":
        _number("optimizer.schedule.warmup_epochs", filled["warmup_epochs"], 0, strict=False)
        if filled["warmup_epochs"] >= epochs:
            raise ValueError(
                f"optimizer.schedule.warmup_epochs={filled['warmup_epochs']} must be less than epochs={epochs}."
            )
        fraction = _number("optimizer.schedule.final_fraction", filled["final_fraction"], 0, strict=False)
        if fraction > 1:
            raise ValueError(f"optimizer.schedule.final_fraction must be in [0, 1]; got {fraction!r}.")
    elif name == "step":
        for boundary in filled["boundaries_epochs"]:
            _number("optimizer.schedule.boundaries_epochs", boundary, 0)
        if sorted(set(filled["boundaries_epochs"])) != filled["boundaries_epochs"]:
            raise ValueError(
                f"optimizer.schedule.boundaries_epochs must increase strictly; got {filled['boundaries_epochs']!r}."
            )
        _number("optimizer.schedule.factor", filled["factor"], 0)
    else:
        _number("optimizer.schedule.decay_epochs", filled["decay_epochs"], 0)
        _number("optimizer.schedule.rate", filled["rate"], 0)
    return filled


def _steps(epochs, steps_per_epoch):
    return max(1, round(epochs * steps_per_epoch))


def learning_rate_schedule(learning_rate, schedule, epochs, steps_per_epoch):
    """The Keras learning rate (a float, or a ``LearningRateSchedule`` of the optimizer's step) for a
    checked ``optimizer.schedule`` (:func:`check_optimizer`) over a run of ``epochs`` epochs."""
    schedules = keras.optimizers.schedules
    if not schedule:
        return learning_rate
    if schedule["name"] == "cosine":
        warmup = round(schedule["warmup_epochs"] * steps_per_epoch)
        decay_steps = max(1, _steps(epochs, steps_per_epoch) - warmup)
        if warmup:  # Keras warms up linearly from initial_learning_rate to warmup_target
            return schedules.CosineDecay(
                0.0, decay_steps, alpha=schedule["final_fraction"], warmup_target=learning_rate, warmup_steps=warmup
            )
        return schedules.CosineDecay(learning_rate, decay_steps, alpha=schedule["final_fraction"])
    if schedule["name"] == "step":
        boundaries = [round(b * steps_per_epoch) for b in schedule["boundaries_epochs"]]
        values = [learning_rate * schedule["factor"] ** i for i in range(len(boundaries) + 1)]
        return schedules.PiecewiseConstantDecay(boundaries, values)
    return schedules.ExponentialDecay(
        learning_rate, _steps(schedule["decay_epochs"], steps_per_epoch), schedule["rate"],
        staircase=schedule["staircase"],
    )


def backbone_variables(model):
    """The trainable variables of ``model``'s backbone: those of the Keras models nested in it as
    layers (:func:`~tfdml.models.build_embedding_model`'s feature extractor), found by type, not by name,
    so any backbone counts; pooling, head and embedding layers are plain layers of ``model``."""
    return [v for layer in model.layers if isinstance(layer, keras.Model) for v in layer.trainable_variables]


def early_block_variables(model, until):
    """The trainable variables of ``model``'s backbone layers up to and including the layer named ``until``,
    in depth-first order through the nested Keras models (the backbone's early blocks)."""

    def leaves(layer):
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                yield from leaves(inner)
        else:
            yield layer

    layers = [leaf for layer in model.layers if isinstance(layer, keras.Model) for leaf in leaves(layer)]
    names = [layer.name for layer in layers]
    if until not in names:
        close = ", ".join(difflib.get_close_matches(until, names, n=5, cutoff=0.5)) or ", ".join(names[:5]) + ", …"
        raise ValueError(f"optimizer.backbone_frozen_until: the backbone has no layer {until!r} (close: {close}).")
    return [v for layer in layers[: names.index(until) + 1] for v in layer.trainable_variables]


def recipe_optimizer(section, *, epochs, steps_per_epoch, model):
    """The optimizer of a recipe's ``optimizer`` section for ``model`` (the embedding model), in a run of
    ``epochs`` epochs of ``steps_per_epoch`` steps: its schedule, weight decay exclusions (rank ≤ 1)
    and backbone (:func:`backbone_variables`). Create it in the strategy's scope.

    >>> opt = recipe_optimizer(config["optimizer"], epochs=20, steps_per_epoch=50, model=embedder)
    """
    schedule = check_optimizer(section, epochs)
    try:
        builder = OPTIMIZERS.get(section["name"].lower())
    except ValueError as error:
        raise ValueError(f"optimizer.name: {error}") from None
    backbone = backbone_variables(model)
    frozen_until = section["backbone_frozen_until"]
    if frozen_until is not None and not section["backbone_frozen_epochs"]:
        raise ValueError(
            f"optimizer.backbone_frozen_until={frozen_until!r} names the early blocks frozen for the first "
            "optimizer.backbone_frozen_epochs, which is 0: set it too."
        )
    if not backbone and (section["backbone_lr_multiplier"] != 1 or section["backbone_frozen_epochs"]):
        raise ValueError(
            "optimizer.backbone_lr_multiplier and optimizer.backbone_frozen_epochs need a backbone: a Keras model "
            f"nested in the embedding model {model.name!r}, which has none with trainable variables."
        )
    optimizer = builder(
        learning_rate=learning_rate_schedule(section["learning_rate"], schedule, epochs, steps_per_epoch),
        weight_decay=section["weight_decay"] or None,
        clipnorm=section["clipnorm"],
        global_clipnorm=section["global_clipnorm"],
        backbone_lr_multiplier=section["backbone_lr_multiplier"],
        backbone_frozen_steps=section["backbone_frozen_epochs"] * steps_per_epoch,
    )
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) <= 1])
    optimizer.set_backbone(backbone, None if frozen_until is None else early_block_variables(model, frozen_until))
    return optimizer
