"""N-way K-shot few-shot classification with embeddings, over seeded random episodes.

An episode draws ``ways`` classes, then ``shots`` support images and ``queries``
query images of each (distinct images, without replacement). Each query is
assigned the class whose support is closest in Euclidean distance on the
embeddings, and the episode scores the fraction of queries classified right.
The result is the mean accuracy over the episodes and its 95% confidence interval
half-width ``1.96 · sd / √episodes`` (sd of the per-episode accuracies, ddof = 0).

Two rules for "closest class"; with one shot they coincide:

- ``"prototype"`` (default): distance to the mean of the class's support
  embeddings (Snell et al. 2017, prototypical networks);
- ``"nearest"``: distance to the nearest support image of the class (1-NN, as the
  one-shot matching of Koch et al. 2015 and Vinyals et al. 2016).

:data:`PROTOCOLS` are the standard Omniglot settings: Lake et al. 2015's 20-way
one-shot task *within an alphabet* (all classes of an episode from one category,
which needs ``categories``; the category is drawn uniformly among those with at
least ``ways`` classes), and 5-way 1-shot / 5-shot over all classes (Vinyals et al.).

Episodes are index arrays (:class:`Episodes`), sampled vectorised over the episodes, so
two embeddings of the same images (e.g. two models) can be scored on identical episodes.
Sampling memory is proportional to ``episodes × ways × (shots + queries)``, whatever the
size of the classes. This sampler (tfdml 0.1, December 2026) draws other episodes from a seed than earlier versions:
scores from earlier versions differ from today's by sampling noise (within their CIs).

Example:

>>> result = fewshot_accuracy(embeddings, labels, ways=20, shots=1, categories=alphabets, seed=0)
>>> result.mean, result.ci95
(0.93, 0.012)
"""

import dataclasses
import warnings

import numpy as np

from tfdml.checks import as_embeddings, label_array
from tfdml.neighbors import search

CLASSIFIERS = ("prototype", "nearest")
DEFAULT_EPISODES = 1000
#: Fewest episodes behind a reported protocol score (its CI half-width is then at most 1.96·0.5/√400 ≈ 0.05).
MIN_REPORTED_EPISODES = 400
#: Metric name → episode settings; ``within_category`` draws an episode's classes from one category.
PROTOCOLS = {
    "fewshot_20way_1shot_within": {"ways": 20, "shots": 1, "within_category": True},
    "fewshot_5way_1shot": {"ways": 5, "shots": 1, "within_category": False},
    "fewshot_5way_5shot": {"ways": 5, "shots": 5, "within_category": False},
}


@dataclasses.dataclass(frozen=True)
class Episodes:
    """Row indices of few-shot episodes.

    Attributes:
        classes: ``(episodes, ways)`` class label of each way.
        support: ``(episodes, ways, shots)`` indices of the support images of each way.
        query: ``(episodes, ways, queries)`` indices of the query images of each way.
    """

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray


@dataclasses.dataclass(frozen=True)
class FewShotResult:
    """Mean accuracy, its 95% confidence half-width and the ``(episodes,)`` accuracies behind them."""

    mean: float
    ci95: float
    accuracies: np.ndarray


def sample_episodes(labels, ways, shots, *, queries=1, episodes=DEFAULT_EPISODES, categories=None, seed=0):
    """Draws ``episodes`` N-way K-shot episodes from ``labels``.

    Each episode's ``ways`` classes are distinct and uniformly drawn; each way's ``shots``
    support and ``queries`` query images are distinct images of its class, uniformly drawn.

    Args:
        labels: ``(n,)`` integer class labels.
        ways: classes per episode (N).
        shots: support images per class (K).
        queries: query images per class (default 1, as Lake et al.).
        episodes: number of episodes.
        categories: optional ``(n,)`` integer category of each image, ``>= -1`` (``-1``:
            unknown, such classes are never drawn); when given, every episode's classes
            come from one category, drawn uniformly among the categories with at least
            ``ways`` classes (the others are left out with a warning). A class must lie in
            one category.
        seed: seed of ``numpy.random.default_rng``.

    Raises:
        ValueError: labels or categories are not integers (one category per label, none
            below -1), a class has fewer than ``shots + queries`` images, fewer than ``ways``
            classes (or no category with ``ways`` classes) exist, or a class spans several
            categories.
    """
    labels = label_array(labels, who="fewshot")
    for name, value in (("ways", ways), ("shots", shots), ("queries", queries), ("episodes", episodes)):
        if int(value) != value or value < 1:
            raise ValueError(f"fewshot: {name} must be an integer >= 1; got {value!r}.")
    classes, class_of_row, counts = np.unique(labels, return_inverse=True, return_counts=True)
    per_class = shots + queries
    too_small = counts < per_class
    if too_small.any():
        shown = ", ".join(f"{label} ({count})" for label, count in zip(classes[too_small][:10], counts[too_small][:10]))
        raise ValueError(
            f"fewshot: {ways}-way {shots}-shot with {queries} quer{'y' if queries == 1 else 'ies'} per class needs "
            f"{per_class} images of every class; {int(too_small.sum())} class(es) have fewer: {shown} "
            "(label (images))."
        )
    rng = np.random.default_rng(seed)
    # Classes are drawn from a group (one category, or all classes): a slice of `members`.
    if categories is None:
        if len(classes) < ways:
            raise ValueError(f"fewshot: {ways}-way episodes need {ways} classes; the labels hold {len(classes)}.")
        members = np.arange(len(classes))
        group_start, group_size = np.zeros(episodes, np.int64), np.full(episodes, len(classes))
    else:
        members, group_start, group_size = _episode_categories(categories, labels, classes, class_of_row, ways,
                                                               episodes, rng)
    chosen = members[group_start[:, np.newaxis] + _distinct_positions(rng, group_size, ways)]
    # Rows sorted by class: class c's rows are rows_by_class[first_row[c] : first_row[c] + counts[c]].
    rows_by_class = np.argsort(class_of_row, kind="stable")
    first_row = np.cumsum(counts) - counts
    picked = rows_by_class[first_row[chosen][..., np.newaxis] + _distinct_positions(rng, counts[chosen], per_class)]
    return Episodes(classes=classes[chosen], support=picked[..., :shots], query=picked[..., shots:])


def _distinct_positions(rng, sizes, count):
    """``sizes.shape + (count,)`` positions, distinct within each row, uniform in ``range(size)`` for each
    entry of ``sizes`` (all ``>= count``), in draw order.

    Draw ``j`` picks the ``r``-th position not drawn yet (``r`` uniform below ``size − j``), so memory is
    that of the result however large ``sizes`` are (random keys for every member would take ``size``).
    """
    drawn = np.empty((*sizes.shape, count), dtype=np.int64)
    for j in range(count):
        position = rng.integers(0, sizes - j)
        # Step over the earlier draws, in increasing order, at or below the position.
        for earlier in np.moveaxis(np.sort(drawn[..., :j], axis=-1), -1, 0):
            position += position >= earlier
        drawn[..., j] = position
    return drawn


def _episode_categories(categories, labels, classes, class_of_row, ways, episodes, rng):
    """Class indices grouped by category (``members``), and for each episode a category drawn uniformly
    among those with ``ways`` classes, as its group's ``(episodes,)`` start and size in ``members``."""
    categories = label_array(categories, "categories", count=labels.shape[0], who="fewshot")
    if categories.min() < -1:
        raise ValueError(f"fewshot: categories must be >= -1 (-1: unknown); got {categories.min()}.")
    class_category = np.full(len(classes), -1, dtype=np.int64)
    class_category[class_of_row] = categories
    mixed = np.flatnonzero(class_category[class_of_row] != categories)
    if mixed.size:
        raise ValueError(f"fewshot: class {labels[mixed[0]]} has images in several categories; a class needs one.")
    known, classes_per_category = np.unique(class_category[class_category >= 0], return_counts=True)
    eligible = np.flatnonzero(classes_per_category >= ways)
    if not eligible.size:
        raise ValueError(
            f"fewshot: {ways}-way episodes within a category need a category with {ways} classes; the largest has "
            f"{classes_per_category.max() if known.size else 0} (categories -1 are unknown)."
        )
    if eligible.size < known.size:
        left_out = {int(c): int(n) for c, n in zip(known, classes_per_category) if n < ways}
        warnings.warn(
            f"fewshot: categories with fewer than {ways} classes cannot host a {ways}-way episode and are left out: "
            f"{left_out} (category: classes).",
            stacklevel=3,
        )
    members = np.argsort(class_category, kind="stable")[np.count_nonzero(class_category < 0) :]
    episode_category = eligible[rng.integers(0, eligible.size, size=episodes)]
    group_start = np.cumsum(classes_per_category) - classes_per_category
    return members, group_start[episode_category], classes_per_category[episode_category]


def episode_accuracies(embeddings, episodes, *, classifier="prototype"):
    """``(episodes,)`` fraction of each episode's queries assigned their own class (Euclidean distance).

    ``classifier``: ``"prototype"`` (distance to the mean support embedding of a class)
    or ``"nearest"`` (to its nearest support embedding); see the module docstring. All episodes
    are one batched exact search (:func:`tfdml.neighbors.search`, one gallery per episode): its
    nearest prototype, or support image, names each query's class; ties go to the lower way.
    Memory: the episodes' embeddings, ``episodes × ways × (shots + queries) × d`` floats.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"fewshot: classifier must be one of {CLASSIFIERS}; got {classifier!r}.")
    # NaN or inf distances would make every query pick way 0: a chance-level score instead of an error.
    embeddings = as_embeddings(embeddings, "fewshot: embeddings")
    support = embeddings[episodes.support]  # (e, ways, shots, d)
    e, ways, shots, dim = support.shape
    queries = episodes.query.shape[2]
    if classifier == "prototype":
        gallery, per_way = support.mean(axis=2, dtype=np.float64).astype(np.float32), 1  # (e, ways, d)
    else:
        gallery, per_way = support.reshape(e, ways * shots, dim), shots  # way-major: row // shots is the way
    _, nearest = search(embeddings[episodes.query].reshape(e, ways * queries, dim), gallery, k=1)
    truth = np.repeat(np.arange(ways), queries)
    return (nearest.numpy()[..., 0] // per_way == truth).mean(axis=1)


def fewshot_accuracy(
    embeddings,
    labels,
    ways,
    shots,
    *,
    queries=1,
    episodes=DEFAULT_EPISODES,
    categories=None,
    classifier="prototype",
    seed=0,
):
    """Mean N-way K-shot accuracy of ``embeddings`` over ``episodes`` seeded episodes, with its 95% CI.

    Args: see :func:`sample_episodes` and :func:`episode_accuracies`; ``categories``
    restricts each episode to one category (Lake et al.'s within-alphabet task).

    Returns:
        :class:`FewShotResult`.

    Raises:
        ValueError: embeddings that are not a finite ``(n, d)`` array (as :func:`tfdml.evaluation.evaluate`),
            ``labels`` (or ``categories``) without one integer per embedding, or see :func:`sample_episodes`.
    """
    embeddings = as_embeddings(embeddings, "fewshot: embeddings")
    labels = label_array(labels, count=embeddings.shape[0], who="fewshot")
    drawn = sample_episodes(labels, ways, shots, queries=queries, episodes=episodes, categories=categories, seed=seed)
    accuracies = episode_accuracies(embeddings, drawn, classifier=classifier)
    return FewShotResult(
        mean=float(accuracies.mean()),
        ci95=float(1.96 * accuracies.std() / np.sqrt(len(accuracies))),
        accuracies=accuracies,
    )


def protocol_scores(name, embeddings, labels, *, categories=None, episodes=DEFAULT_EPISODES, classifier="prototype",
                    seed=0):
    """``{name: mean accuracy, name + "_ci95": half-width}`` for a protocol of :data:`PROTOCOLS`."""
    if name not in PROTOCOLS:
        raise ValueError(f"fewshot: unknown protocol {name!r}; expected one of {tuple(PROTOCOLS)}.")
    settings = PROTOCOLS[name]
    if episodes < MIN_REPORTED_EPISODES:
        raise ValueError(f"{name}: a reported few-shot score needs >= {MIN_REPORTED_EPISODES} episodes; got {episodes}.")
    if settings["within_category"] and categories is None:
        raise ValueError(f"{name} draws each episode from one category and needs categories= (e.g. the alphabets).")
    result = fewshot_accuracy(
        embeddings,
        labels,
        settings["ways"],
        settings["shots"],
        episodes=episodes,
        categories=categories if settings["within_category"] else None,
        classifier=classifier,
        seed=seed,
    )
    return {name: result.mean, f"{name}_ci95": result.ci95}
