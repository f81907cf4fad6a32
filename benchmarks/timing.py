"""Shared timing helper for the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

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


def loss_and_gradient(loss, *, jit_compile=False, variables=()):
    """The step the loss benchmarks time: a ``tf.function`` of ``(labels, embeddings)`` returning
    ``loss(labels, embeddings)`` and its gradient with respect to the embeddings (a list
    ``[embeddings, *variables]`` when the loss has trainable ``variables``)."""
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile)
    def step(labels, embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss(labels, embeddings)
        return value, tape.gradient(value, [embeddings, *variables] if variables else embeddings)

    return step
