"""Validation classes held out of a training split, for model selection without the test set.

DML splits are class-disjoint, so a validation split must be too: it holds whole
classes that the model never trains on, and with categories whole categories (an
Omniglot alphabet), so that validation measures generalisation to new alphabets as
the test split does.
"""

import numbers

import numpy as np

from tfdml.data.base import LabelledImages


def hold_out_validation(collection: LabelledImages, holdout, *, seed=0):
    """Splits ``collection`` into ``(fit, validation)`` by whole categories, or whole classes.

    The unit held out is the category when ``collection`` has categories (images of
    unknown category ``-1`` always stay in ``fit``), else the class. Labels and
    categories keep their ids.

    Args:
        collection: a ``LabelledImages`` (e.g. the ``"train"`` split).
        holdout: which units go to validation:

            - a list of category names (``collection.category_names``) or ids — or of
              class ids when there are no categories — e.g. ``["Latin"]``;
            - an int ``m``: ``m`` units drawn at random (``seed``);
            - a float in (0, 1): that fraction of the units, rounded, at least one.
        seed: seed of the random draw for an int or float ``holdout``.

    Returns:
        ``(fit, validation)`` ``LabelledImages`` named ``"<name>/fit"`` and ``"<name>/validation"``.

    Example:

    >>> fit, validation = hold_out_validation(tfdml.data.load("omniglot", root=root), ["Latin"])
    >>> validation.category_names[validation.categories[0]]
    'Latin'
    """
    by_category = collection.categories is not None and bool(np.any(collection.categories >= 0))
    unit_of_image = collection.categories if by_category else collection.labels
    units = np.unique(unit_of_image[unit_of_image >= 0])
    kind = "categories" if by_category else "classes"
    if isinstance(holdout, numbers.Integral) and not isinstance(holdout, bool):
        count = int(holdout)
    elif isinstance(holdout, numbers.Real) and not isinstance(holdout, bool):
        if not 0 < holdout < 1:
            raise ValueError(f"{collection.name}: a fractional validation holdout must be in (0, 1); got {holdout}")
        count = max(1, round(holdout * len(units)))
    else:
        count = None
    if count is not None:
        if not 1 <= count < len(units):
            raise ValueError(
                f"{collection.name}: validation holdout of {count} {kind} must leave at least one of the "
                f"{len(units)} {kind} for training"
            )
        chosen = np.random.default_rng(seed).choice(units, size=count, replace=False)
    else:
        chosen = _named_units(collection, list(holdout), units, by_category, kind)
    in_validation = np.isin(unit_of_image, chosen)
    return (
        collection.subset(np.flatnonzero(~in_validation), f"{collection.name}/fit"),
        collection.subset(np.flatnonzero(in_validation), f"{collection.name}/validation"),
    )


def _named_units(collection, holdout, units, by_category, kind):
    """Unit ids of ``holdout`` (names or ids), checked against those in ``collection``."""
    names = (collection.category_names if by_category else collection.class_names) or []
    chosen = []
    for item in holdout:
        if isinstance(item, str):
            if item not in names:
                singular = "category" if by_category else "class"
                raise ValueError(f"{collection.name}: no {singular} named {item!r}; known: {names}")
            chosen.append(names.index(item))
        else:
            chosen.append(int(item))
    missing = sorted(set(chosen) - set(units.tolist()))
    if missing:
        raise ValueError(f"{collection.name}: validation {kind} {missing} have no images here; present: {units.tolist()}")
    if not chosen or len(set(chosen)) >= len(units):
        raise ValueError(
            f"{collection.name}: the validation holdout must name at least one and not all {len(units)} {kind}"
        )
    return np.array(sorted(set(chosen)))
