"""benchmarks/gpu_check.py at its tiny sizes on the CPU, so the script waiting for a lent GPU cannot rot."""

import math

import pytest

from benchmarks import gpu_check


pytestmark = pytest.mark.slow  # two one-step Omniglot fits, a loss under XLA, a small backbone's step


@pytest.fixture(scope="module")
def results(mirrored_strategy):
    return gpu_check.run(gpu_check.TINY, strategy=mirrored_strategy)


def test_every_part_runs_at_tiny_sizes(results):
    assert not [part for part, result in results.items() if "error" in result], results
    for row in results["omniglot"].values():
        assert row["epoch 1 s"] > 0 and row["epoch 2 s"] > 0 and row["images/s"] > 0
    [loss] = results["losses"]
    assert loss["case"] == "margin+distance-weighted" and loss["batch"] == 16
    assert math.isfinite(loss["value"]) and loss["plain"] > 0 and loss["xla"] > 0 and not loss["xla_error"]
    assert [row["xla"] for row in results["backbone"]] == ["off"]
    assert all(row["step images/s"] > 0 for row in results["backbone"])
    assert results["pipeline"]["images/s"] > 0


def test_table_names_every_part_and_its_failures(results):
    table = gpu_check.markdown(results, gpu_check.TINY)
    for heading in ("## Omniglot", "MirroredStrategy", "## Loss × miner", "| margin+distance-weighted | 16 |",
                    "## MobileNetV3Small training step", "## Input pipeline"):
        assert heading in table
    failed = gpu_check.markdown({**results, "backbone": {"error": "OOM: out of memory"}}, gpu_check.TINY)
    assert "backbone: failed: OOM: out of memory" in failed and "## Input pipeline" in failed
