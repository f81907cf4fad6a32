"""The first run as a new user meets it: `python train.py` in a fresh clone, timed, shown in the README.

Clones the committed repository into a temporary folder (no ``../shared`` beside it, nothing trained
before), runs README's main job there, ``python train.py`` with no arguments, in a fresh process with
this interpreter (the install step is not timed) and with ``TF_CPP_MIN_LOG_LEVEL`` unset, as a user's
shell has it. Then it copies the run's two pictures to ``docs/first_run/`` and rewrites the block
between ``<!-- first-run -->`` markers of README.md: the wall time, what the run printed (without
the per-epoch progress lines) and the retrieval picture.

Usage (about 2–3 minutes on 2 cores; run it on quiet cores, after committing):

    python -m benchmarks.first_run [--limit-seconds 180]
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PICTURES = REPO / "docs" / "first_run"
BEGIN, END = "<!-- first-run -->", "<!-- /first-run -->"
RUN = pathlib.Path("runs") / "omniglot_quickstart"


def shown_output(stdout):
    """What the run printed, less the per-epoch lines: the opening line and everything from the end of training."""
    lines = stdout.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("Model selection"))
    return "\n".join([lines[0], "…", *lines[end:]]).strip()


def readme_block(seconds, cpu_seconds, shown):
    return (
        f"{BEGIN}\n<!-- written by benchmarks/first_run.py: do not edit -->\n"
        f"Measured by `python -m benchmarks.first_run`: `python train.py` in a fresh clone on 2 CPU cores took "
        f"**{seconds / 60:.1f} minutes** of wall time ({cpu_seconds / 60:.1f} min of CPU time) after install — "
        "TensorFlow's start, training, the three evaluations, the pictures and the export. It printed:\n\n"
        f"```text\n{shown}\n```\n\n"
        "The retrieval picture (`runs/omniglot_quickstart/retrieval.png`): queries from alphabets never trained "
        "on and their nearest neighbours under the trained embedding, green where they are the same character:\n\n"
        "![Held-out Omniglot queries and their nearest neighbours](docs/first_run/retrieval.png)\n\n"
        "The embedding map (`runs/omniglot_quickstart/embedding_map.png`) shows ten held-out characters "
        "before and after training: [docs/first_run/embedding_map.png](docs/first_run/embedding_map.png).\n"
        f"{END}"
    )


def write_readme(block):
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no {BEGIN} … {END} markers for the first run.")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    from tfdml.io import write_file_atomically

    write_file_atomically(README, head + block + tail)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-seconds", type=float, default=180.0, help="the wall-time target (3 minutes)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        clone = pathlib.Path(scratch) / "tfdml"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        started, cpu_before = time.perf_counter(), os.times()
        result = subprocess.run([sys.executable, "train.py"], cwd=clone, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        cpu_after = os.times()
        cpu_seconds = (cpu_after.children_user - cpu_before.children_user) + (
            cpu_after.children_system - cpu_before.children_system)
        if result.returncode != 0:
            raise SystemExit(f"python train.py failed ({result.returncode}):\n{result.stderr[-3000:]}")
        PICTURES.mkdir(parents=True, exist_ok=True)
        for picture in ("retrieval.png", "embedding_map.png"):
            shutil.copyfile(clone / RUN / picture, PICTURES / picture)
        shown = shown_output(result.stdout)
    write_readme(readme_block(seconds, cpu_seconds, shown))
    print(shown)
    print(f"\n| | wall | CPU | limit |\n|---|---|---|---|\n| `python train.py`, fresh clone | {seconds:.0f} s | "
          f"{cpu_seconds:.0f} s | {args.limit_seconds:.0f} s |")
    print(f"stderr:\n{result.stderr}" if result.stderr.strip() else "stderr: empty")
    if seconds > args.limit_seconds:
        raise SystemExit(f"over the limit: {seconds:.0f} s > {args.limit_seconds:.0f} s")


if __name__ == "__main__":
    main()
