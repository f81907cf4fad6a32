"""Shared timing helpers for the benchmark scripts (run as ``python -m benchmarks.<name>``)."""

import time


def run_times(run, repeats, warmup=2):
    """Wall-clock seconds of ``repeats`` calls of ``run`` after ``warmup`` untimed calls (tracing, caches)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def interleaved_times(runs, repeats, warmup=2):
    """Wall-clock seconds of each of ``runs`` (a dict name → callable), called in turn for ``repeats``
    rounds after ``warmup`` untimed rounds. On a shared machine a load change then hits every run
    alike, so ratios of their medians hold where their absolute times do not."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def loss_and_gradient(loss, *, jit_compile=False, variables=()):
    """The step the loss benchmarks time: a ``tf.function`` of ``(labels, embeddings)`` returning
    ``loss(labels, embeddings)`` (``loss.value`` when it has trainable ``variables``) and its gradient with respect to the embeddings (a list
    ``[embeddings, *variables]`` when the loss has trainable ``variables``)."""
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile)
    def step(labels, embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss.value(labels, embeddings) if variables else loss(labels, embeddings)
        return value, tape.gradient(value, [embeddings, *variables] if variables else embeddings)

    return step


def limit_proxy(labels, embeddings):
    """The least work of any pair-based loss, the denominator of the loss benchmarks' ratios: the
    ``b × b`` Gram matrix of the L2-normalised embeddings, one ReLU and a sum (``labels`` unused)."""
    import tensorflow as tf

    del labels
    normalized = tf.math.l2_normalize(embeddings, axis=1)
    return tf.reduce_sum(tf.nn.relu(tf.matmul(normalized, normalized, transpose_b=True)))
