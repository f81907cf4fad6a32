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
