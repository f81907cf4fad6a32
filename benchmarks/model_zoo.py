"""The model zoo: train every shipped recipe, evaluate its export from the outside, write docs/zoo.md's table.

Each entry of ``ZOO`` is a recipe under ``pipelines/`` trained with ``train.py``'s own
``train()`` (run directory ``runs/zoo/<entry>-s<seed>``, export
``models/zoo/<entry>-s<seed>/1``), one seed per run. The held-out numbers are then taken
the way a client gets them: ``python -m tfdml.evaluate`` in a fresh process, sending the
test split's original files through the export's ``serving_bytes`` signature. The raw-pixel
baseline (the eval-preprocessed test images, flattened) comes from ``train()``'s own table. Wall time is the sum of
the training epochs' durations (validation included; start-up, the test evaluation and the
export are not), so a run that was interrupted and resumed is timed as if it had not been.

Results land in ``docs/zoo/<entry>-s<seed>.json`` as runs finish: an interrupted zoo
resumes where it stopped (and ``train()`` resumes an interrupted run from its last
epoch). At the end the table between the ``<!-- model-zoo -->`` markers of docs/zoo.md and README.md and
the validation curves ``docs/zoo/validation_curves.png`` are rewritten from those files.

Usage (all entries, about an hour on 2 cores):

    python -m benchmarks.model_zoo [--entries omniglot_oneshot ...] [--seeds 0 1 2] [--report-only | --reevaluate]
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from tfdml.io import write_file_atomically  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RESULTS = os.path.join(REPO, "docs", "zoo")
RUNS = os.path.join(REPO, "runs", "zoo")
PAGE = os.path.join(REPO, "docs", "zoo.md")
# README shows the same table to a newcomer (tests/test_docs.py holds the two equal).
README = os.path.join(REPO, "README.md")
BEGIN, END = "<!-- model-zoo -->", "<!-- /model-zoo -->"
FEWSHOT = ("fewshot_20way_1shot_within", "fewshot_5way_1shot", "fewshot_5way_5shot")

# entry: (recipe, training data as the table states it, dataset for tfdml.evaluate, few-shot protocols)
ZOO = {
    "omniglot_quickstart": (
        "omniglot_quickstart.yaml", "Omniglot small1 − Latin (110 characters)", "omniglot", FEWSHOT,
    ),
    "digits_margin": ("digits_margin.yaml", "digits 0–4", "digits", ()),
    "omniglot_margin": ("omniglot_margin.yaml", "Omniglot small1 − Latin (110 characters)", "omniglot", FEWSHOT),
    "omniglot_fastap": ("omniglot_fastap.yaml", "Omniglot small1 − Latin (110 characters)", "omniglot", FEWSHOT),
    "omniglot_oneshot": (
        "omniglot_oneshot.yaml", "Omniglot small1 − Latin, ×4 rotations (440 classes)", "omniglot", FEWSHOT,
    ),
    "omniglot_oneshot_all": (
        "omniglot_oneshot_all.yaml", "all 8 Omniglot alphabets, ×4 rotations (968 classes)", None, (),
    ),
}
DEFAULT_SEEDS = {"omniglot_quickstart": (0, 1, 2, 3, 4), "digits_margin": (0, 1, 2, 3, 4)}


def run_name(entry, seed):
    return f"{entry}-s{seed}"


def run_dir(entry, seed):
    return os.path.join(RUNS, run_name(entry, seed))


def result_path(entry, seed):
    return os.path.join(RESULTS, f"{run_name(entry, seed)}.json")


def zoo_config(entry, seed):
    from tfdml.training.config import load_config

    recipe = ZOO[entry][0]
    overrides = [f"seed={seed}", f"name={run_name(entry, seed)}", f"run_dir={RUNS}",
                 f"export.dir={os.path.join(REPO, 'models', 'zoo')}", "export.version=1"]
    return load_config(os.path.join(REPO, "pipelines", recipe), overrides)


def epoch_seconds_callback(path):
    """A Keras callback keeping each epoch's wall and process CPU seconds in ``path``
    (``{"wall": {epoch: s}, "cpu": {epoch: s}}``), across interruptions. CPU seconds count
    every thread of the process: on a machine shared with other jobs, the wall time on 2 dedicated cores
    lies between half the CPU seconds and the CPU seconds."""
    import keras

    class EpochSeconds(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            seconds = {"wall": {}, "cpu": {}}
            if os.path.exists(path):
                with open(path) as f:
                    seconds = json.load(f)
            seconds["wall"][str(epoch + 1)] = time.perf_counter() - self.started[0]
            seconds["cpu"][str(epoch + 1)] = time.process_time() - self.started[1]
            write_file_atomically(path, json.dumps(seconds))

    return EpochSeconds()


def train_one(entry, seed):
    """Train (or resume) one zoo run in this process, a line per epoch; record its outcome in the run dir."""
    from tfdml.run import train

    folder = run_dir(entry, seed)
    os.makedirs(folder, exist_ok=True)
    result = train(zoo_config(entry, seed), verbose=2,
                   callbacks=[epoch_seconds_callback(os.path.join(folder, "epoch_seconds.json"))])
    rows = {name: {k: float(v) for k, v in values.items()} for name, values in result["metrics"].items()}
    outcome = {"export_path": result["export_path"], "in_process": rows}
    write_file_atomically(os.path.join(folder, "zoo_outcome.json"), json.dumps(outcome))


def evaluate_export(export_path, dataset, fewshot, out_dir):
    """Held-out metrics of an export, from a fresh ``python -m tfdml.evaluate`` process."""
    command = [sys.executable, "-m", "tfdml.evaluate", export_path, "--data", dataset, "--split", "test",
               "--out", out_dir, "--verbose", "0"]
    if fewshot:
        command += ["--fewshot", *fewshot]
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    with open(os.path.join(out_dir, "report.json")) as f:
        return json.load(f)["metrics"]


def run_entry(entry, seed):
    path = result_path(entry, seed)
    if os.path.exists(path):
        return
    _, _, dataset, fewshot = ZOO[entry]
    subprocess.run([sys.executable, "-m", "benchmarks.model_zoo", "--train-one", entry, str(seed)], check=True, cwd=REPO)
    from tfdml.training.run_folder import RunFolder

    folder = run_dir(entry, seed)
    with open(os.path.join(folder, "zoo_outcome.json")) as f:
        outcome = json.load(f)
    with open(os.path.join(folder, "epoch_seconds.json")) as f:
        seconds = json.load(f)
    done, curve = RunFolder(folder).done(), RunFolder(folder).records()
    record = {
        "entry": entry, "seed": seed, "recipe": ZOO[entry][0], "epochs": len(curve),
        "best_epoch": done.get("best_epoch"), "select_by": done.get("select_by"),
        "train_seconds": float(sum(seconds["wall"].values())),
        "train_cpu_seconds": float(sum(seconds["cpu"].values())),
        # train()'s own table (raw pixels, untrained, trained) on its test split, in the training process.
        "in_process": outcome["in_process"],
        "curve": [{k: v for k, v in r.items() if k == "epoch" or k == "loss" or k.startswith("val_")} for r in curve],
    }
    if dataset is not None:
        record["test"] = evaluate_export(outcome["export_path"], dataset, fewshot, os.path.join(folder, "test_eval"))
    os.makedirs(RESULTS, exist_ok=True)
    write_file_atomically(path, json.dumps(record, indent=1))


def reevaluate(entry, seed):
    """Evaluate an existing run's export again from the outside and replace its record's held-out numbers
    (after a change to evaluation, e.g. the few-shot episode draws); training numbers stay."""
    path = result_path(entry, seed)
    with open(path) as f:
        record = json.load(f)
    _, _, dataset, fewshot = ZOO[entry]
    folder = run_dir(entry, seed)
    with open(os.path.join(folder, "zoo_outcome.json")) as f:
        export_path = json.load(f)["export_path"]
    if not os.path.isdir(export_path):
        raise SystemExit(f"model_zoo: --reevaluate {entry} seed {seed}: its export {export_path} is gone; rerun the "
                         "entry (delete its record) instead.")
    record["test"] = evaluate_export(export_path, dataset, fewshot, os.path.join(folder, "test_eval"))
    write_file_atomically(path, json.dumps(record, indent=1))


#: Fields of a ``docs/zoo`` record that the table and the curves read.
RECORD_FIELDS = ("entry", "seed", "recipe", "epochs", "best_epoch", "train_seconds", "in_process", "curve")


def load_records():
    """The records of ``RESULTS``; a corrupt or partial one, or none at all, stops the script naming the
    file (or folder), so that the zoo table is never rewritten from them."""
    names = sorted(name for name in os.listdir(RESULTS) if name.endswith(".json")) if os.path.isdir(RESULTS) else []
    if not names:
        raise SystemExit(f"model_zoo: no zoo records (*.json) in {RESULTS}; the zoo table is left as it is. "
                         "Restore them (git) or run the zoo without --report-only.")
    records = []
    for name in names:
        path = os.path.join(RESULTS, name)
        try:
            with open(path) as f:
                record = json.load(f)
        except json.JSONDecodeError as error:
            raise SystemExit(f"model_zoo: {path} is not valid JSON ({error}); restore it or delete it and rerun "
                             "its entry.") from None
        if not isinstance(record, dict):
            raise SystemExit(f"model_zoo: {path} is not a JSON object; restore it or delete it and rerun its entry.")
        missing = sorted(set(RECORD_FIELDS) - set(record))
        if missing:
            raise SystemExit(f"model_zoo: {path} lacks {', '.join(missing)} (a partial record); restore it or delete "
                             "it and rerun its entry.")
        records.append(record)
    return records


def mean_sd(values):
    values = np.asarray(values, float)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def table(records):
    columns = ("recall_at_1", "map_at_r", "nmi", "fewshot_20way_1shot_within", "fewshot_5way_5shot")
    header = ("| recipe | training data | epochs (selected) | train time, 2 cores: wall (CPU time) | R@1 | MAP@R | NMI "
              "| 20-way 1-shot | 5-way 5-shot | MAP@R of raw pixels | seeds |")
    lines = [header, "|" + "---|" * 11]
    for entry in ZOO:
        runs = [r for r in records if r["entry"] == entry]
        if not runs:
            continue
        selected = sorted({r["best_epoch"] for r in runs if r["best_epoch"] is not None})
        epochs = f"{runs[0]['epochs']}" + (f" ({', '.join(map(str, selected))})" if selected else "")
        minutes = f"{np.mean([r['train_seconds'] for r in runs]) / 60:.1f} min"
        cpu = [r["train_cpu_seconds"] for r in runs if "train_cpu_seconds" in r]
        if cpu:
            minutes += f" ({np.mean(cpu) / 60:.1f} CPU)"
        cells = []
        for column in columns:
            values = [r["test"][column] for r in runs if column in r.get("test", {})]
            cells.append(mean_sd(values) if values else "—")
        raw = [r["in_process"]["raw pixels"]["map_at_r"] for r in runs if "test" in r]
        cells.append(mean_sd(raw) if raw else "—")
        seeds = ", ".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        lines.append(f"| `pipelines/{runs[0]['recipe']}` | {ZOO[entry][1]} | {epochs} | {minutes} | "
                     + " | ".join(cells) + f" | {seeds} |")
    return "\n".join(lines)


def plot_curves(records, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [r for r in records if any("val_recall_at_1" in point for point in r["curve"])]
    if not curves:
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    for r in curves:
        points = [(p["epoch"], p["val_recall_at_1"]) for p in r["curve"] if "val_recall_at_1" in p]
        axis.plot(*zip(*points), marker=".", label=run_name(r["entry"], r["seed"]))
        if r["best_epoch"] is not None:
            axis.axvline(r["best_epoch"], color=axis.lines[-1].get_color(), linestyle=":", linewidth=0.8)
    axis.set(xlabel="epoch", ylabel="validation Recall@1", title="Validation classes (held out of training)")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def write_table(records):
    texts = {}
    for page in dict.fromkeys((PAGE, README)):
        with open(page) as f:
            texts[page] = f.read()
        if BEGIN not in texts[page] or END not in texts[page]:
            raise SystemExit(f"{page} has no {BEGIN} … {END} markers for the model zoo table.")
    body = (f"{BEGIN}\n<!-- written by benchmarks/model_zoo.py from docs/zoo/*.json: do not edit -->\n"
            f"{table(records)}\n{END}")
    for page, text in texts.items():
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        write_file_atomically(page, head + body + tail)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", nargs="+", choices=tuple(ZOO), default=tuple(ZOO))
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="default: 0 (omniglot_quickstart and digits_margin: 0–4)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the table and curves from docs/zoo/")
    parser.add_argument("--reevaluate", action="store_true",
                        help="evaluate the recorded runs' exports again (fresh process) and update their records")
    parser.add_argument("--train-one", nargs=2, metavar=("ENTRY", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train_one:
        return train_one(args.train_one[0], int(args.train_one[1]))
    if args.reevaluate:
        for entry in args.entries:
            for seed in args.seeds or DEFAULT_SEEDS.get(entry, (0,)):
                if os.path.exists(result_path(entry, seed)):
                    reevaluate(entry, seed)
    elif not args.report_only:
        import keras

        pending = [(e, s) for e in args.entries for s in (args.seeds or DEFAULT_SEEDS.get(e, (0,)))
                   if not os.path.exists(result_path(e, s))]
        progress = keras.utils.Progbar(len(pending), unit_name="run")
        for count, (entry, seed) in enumerate(pending, 1):
            run_entry(entry, seed)
            progress.update(count)
    records = load_records()
    write_table(records)
    plot_curves(records, os.path.join(RESULTS, "validation_curves.png"))
    print(table(records))


if __name__ == "__main__":
    main()
