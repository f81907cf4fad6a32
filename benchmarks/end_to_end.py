"""The whole Omniglot margin recipe end to end: ``python train.py`` against PyTorch + pytorch-metric-learning.

Both sides run ``pipelines/omniglot_margin.yaml`` as a user would, each in a fresh process on the
same number of threads (``--threads``, default all CPUs):

- **tfdml**: ``train.py <recipe>`` (``main`` of train.py in a fresh ``python`` process that first
  wraps a few methods with timers, nothing else), with ``evaluation.figures=false`` (the t-SNE
  pictures have no PyTorch counterpart; ``--figures`` keeps them) and the run and export folders in a
  temporary directory.
- **PyTorch + PML** (``requirements-peers.txt``, run with ``--peer-python``, default
  ``/tmp/peers/bin/python``): the same Conv-4 (conv 3×3 without bias → BatchNorm with Keras'
  ε = 1e-3 and momentum 0.99 → ReLU → max-pool, four times; global average pool; linear 64-d head;
  L2 normalisation), Keras' initialisation (Glorot-uniform kernels, zero biases), Adam 1e-3 with
  Keras' ε = 1e-7 for the network and Adam 5e-4 for the learned class β (tfdml's
  ``beta_learning_rate``), PML's ``MPerClassSampler`` (m = 4, batches of 64, ``steps_per_epoch``
  batches an epoch), ``MarginLoss(margin=0.2, beta=1.2, learn_beta=True, num_classes=…)`` with
  ``DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)``, Recall@1 on the held-out Latin
  alphabet every 2 epochs and after the last (PML's ``AccuracyCalculator``), keeping the best
  epoch's weights (first on ties), a checkpoint (model, optimizers, β, epoch) saved every epoch, and a
  TorchScript export of the selected model. It evaluates Recall@1 and MAP@R on the test alphabets.

The pixels are the same: before timing, a tfdml process writes the fit, validation and test splits
(tfdml's own split definitions, hold-out and eval preprocessing: inverted, area-resized to 28 px,
float32 in [0, 255]) to a temporary ``.npz`` that the PyTorch side reads (its "data" phase is that
read, which is cheaper than decoding the PNGs a PyTorch user would decode: a conservative choice).

Per phase (wall seconds; ``run`` wraps these functions of the run with timers):

- import: interpreter start to the libraries imported (TensorFlow and tfdml / torch and PML);
- data: reading the data and building the model, loss and optimizer;
- baselines: tfdml's raw-pixel and untrained evaluations of the test split;
- steps: training, less validation and writes (the first epoch, with tracing, is also shown alone);
- validation: embedding the validation classes and scoring them;
- writes: per-epoch records, checkpoints, backup, TensorBoard, final weights;
- test: embedding and scoring the test split with the selected weights;
- export: the SavedModel / TorchScript export.

"step in run" is steps / trained steps without the first epoch; "bare step" (tfdml) is the same
compiled train function called on in-memory batches in the same process after the run, so the ratio
of the two is robust to other load on the machine. The process's wall and CPU stop where the run ends: the bare
step, timed after it, is left out of both.

Usage::

    python -m benchmarks.end_to_end [--epochs 60] [--seeds 0 1] [--threads N] [--output FILE.md]

writes ``FILE.md`` (the table) and ``FILE.json`` (every number). Both sides of one seed take about
2.5 minutes each on 2 quiet cores at 60 epochs.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPE = REPO / "pipelines" / "omniglot_margin.yaml"
PHASES = ("import", "data", "baselines", "steps", "validation", "writes", "test", "export")
ROWS = (
    ("process wall (s)", "wall"),
    ("process CPU (s)", "cpu"),
    ("training images/s", "images_per_s"),
    *((f"{phase} (s)", phase) for phase in PHASES),
    ("other (s)", "other"),
    ("first epoch steps (s)", "first_epoch_steps"),
    ("step in run (ms)", "step_ms"),
    ("bare step (ms)", "bare_step_ms"),
    ("validation / fit", "validation_share"),
    ("outside training (s)", "outside_training"),
    ("test Recall@1", "recall_at_1"),
    ("test MAP@R", "map_at_r"),
    ("selected epoch", "selected_epoch"),
)


def derived(result):
    """``result`` (one run's raw numbers) with the table's derived entries added."""
    result = dict(result)
    phases = result["phases"]
    result.update(phases)
    result["other"] = max(0.0, result["wall"] - sum(phases.values()))
    trained_steps = result["steps_per_epoch"] * (result["epochs"] - 1)
    later = phases["steps"] - result["first_epoch_steps"]
    result["step_ms"] = 1000 * later / trained_steps if trained_steps else None
    result["images_per_s"] = result["steps_per_epoch"] * result["epochs"] * result["batch_size"] / phases["steps"]
    fit = phases["steps"] + phases["validation"] + phases["writes"]
    result["validation_share"] = phases["validation"] / fit
    result["outside_training"] = result["wall"] - fit
    return result


def mean_and_spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell(values, key):
    summary = mean_and_spread([v.get(key) for v in values])
    if summary is None:
        return "–"
    mean, spread = summary
    digits = 3 if abs(mean) < 10 and key not in ("selected_epoch",) else 1
    if key in ("step_ms", "bare_step_ms", "wall", "cpu", "images_per_s"):
        digits = 1
    text = f"{mean:.{digits}f}"
    return text + (f" ± {spread:.{digits}f}" if len(values) > 1 and spread else "")


def markdown_table(results):
    """The side-by-side table: ``results`` is ``{side: [derived run per seed]}``."""
    sides = list(results)
    lines = ["| | " + " | ".join(sides) + " |", "|---|" + "---|" * len(sides)]
    for heading, key in ROWS:
        lines.append(f"| {heading} | " + " | ".join(cell(results[side], key) for side in sides) + " |")
    tfdml, peer = results.get("tfdml"), results.get("pytorch+pml")
    if tfdml and peer:
        ratio = statistics.mean(r["wall"] for r in tfdml) / statistics.mean(r["wall"] for r in peer)
        lines.append(f"| tfdml wall / PyTorch wall | {ratio:.2f} (goal ≤ 0.60) | |")
    steps = [r["step_ms"] / r["bare_step_ms"] for r in tfdml or () if r.get("bare_step_ms") and r.get("step_ms")]
    if steps:
        lines.append(f"| tfdml step in run / bare step | {statistics.mean(steps):.2f} (goal ≤ 1.05) | |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The tfdml side: the split dump, and train.py's main under timers.


def dump_splits(path, seed, recipe):
    """Write the recipe's fit, validation and test images (eval preprocessing) and labels to ``path``."""
    import numpy as np

    from tfdml.experiment import load_split, training_classes
    from tfdml.training.config import load_config

    config = load_config(str(recipe), [f"seed={seed}"])
    train, test = load_split(config, "train"), load_split(config, "test")
    fit, validation = training_classes(config, train)
    arrays = {}
    for name, split in (("fit", fit), ("validation", validation), ("test", test)):
        images = np.concatenate([batch.numpy() for batch, _ in split.dataset(batch_size=512)])
        arrays[f"{name}_images"], arrays[f"{name}_labels"] = images.astype(np.float32), split.labels
    np.savez(path, **arrays)


class Timers:
    """Seconds spent in wrapped functions, by phase; per-epoch sums of the fit phases."""

    def __init__(self):
        self.phases = dict.fromkeys(PHASES, 0.0)
        self.epoch_phase = 0.0
        self.in_fit = False

    def wrap(self, owner, name, phase):
        original = getattr(owner, name)
        timers = self

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - start
                timers.phases[phase] += seconds
                if timers.in_fit:
                    timers.epoch_phase += seconds

        setattr(owner, name, timed)


def tfdml_child(args):
    """Run train.py's ``main`` with timers around its phases; print one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    import keras
    import numpy as np

    import tfdml.run
    from tfdml import evaluation
    from tfdml.experiment import Experiment
    from tfdml.training import callbacks

    sys.path.insert(0, str(REPO))
    import train as train_script

    timers = Timers()
    timers.phases["import"] = time.time() - args.launched
    state = {}

    original_init = Experiment.__init__

    def init(self, *a, **k):
        start = time.perf_counter()
        original_init(self, *a, **k)
        timers.phases["data"] += time.perf_counter() - start
        state["experiment"] = self

    Experiment.__init__ = init
    original_fit = Experiment.fit

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.begin, timers.epoch_phase = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            if "first_epoch_steps" not in state:
                state["first_epoch_steps"] = time.perf_counter() - self.begin - timers.epoch_phase

    def fit(self, folder, **k):
        start = time.perf_counter()
        timers.in_fit = True
        k["callbacks"] = [*k.get("callbacks", ()), EpochClock()]
        try:
            return original_fit(self, folder, **k)
        finally:
            timers.in_fit = False
            measured = timers.phases["validation"] + timers.phases["writes"]
            timers.phases["steps"] += time.perf_counter() - start - measured

    Experiment.fit = fit
    # Before fit: the baselines; after it: the test evaluation.
    original_evaluate, original_embed = Experiment.evaluate, Experiment.embed_test

    def phase_of_test():
        return "test" if "first_epoch_steps" in state else "baselines"

    def timed_phase(original):
        def run(*a, **k):
            start = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                timers.phases[phase_of_test()] += time.perf_counter() - start

        return run

    Experiment.evaluate, Experiment.embed_test = timed_phase(original_evaluate), timed_phase(original_embed)
    tfdml.run.raw_pixels = timed_phase(tfdml.run.raw_pixels)
    timers.wrap(evaluation.RetrievalEvaluation, "on_epoch_end", "validation")
    for owner in (callbacks.EpochJSONLogger, callbacks.AtomicBackupAndRestore, keras.callbacks.TensorBoard,
                  callbacks.StopOnDivergence):
        timers.wrap(owner, "on_epoch_end", "writes")
    timers.wrap(callbacks.FinishTraining, "on_train_end", "writes")
    timers.wrap(tfdml.run, "export_once", "export")
    original_train = tfdml.run.train_in_folder

    def train_in_folder(*a, **k):
        state["result"] = original_train(*a, **k)
        return state["result"]

    tfdml.run.train_in_folder = train_in_folder
    # One run_dir for every seed: the raw-pixel baseline is scored by the first run and read by the others.
    overrides = [f"epochs={args.epochs}", f"seed={args.seed}", f"run_dir={os.path.dirname(args.work)}/runs",
                 f"export.dir={args.work}/models", f"name=e2e-seed{args.seed}"]
    if args.steps_per_epoch:
        overrides.append(f"steps_per_epoch={args.steps_per_epoch}")
    if not args.figures:
        overrides.append("evaluation.figures=false")
    with open(os.devnull, "w") as quiet, _redirect_stdout(quiet):
        train_script.main([str(args.recipe), *[f"--set={o}" for o in overrides]])
    run_end, run_end_cpu = time.perf_counter(), _process_cpu()
    phases = dict(timers.phases)
    experiment = state["experiment"]
    trained = state["result"]["metrics"]["trained"]
    selected = json.load(open(os.path.join(state["result"]["run_dir"], "done.json"))).get("best_epoch")
    bare = bare_step_ms(experiment, tf, np)
    print(json.dumps({
        "side": "tfdml", "phases": phases,
        # The bare step is timed after the run: the parent leaves it out of the process's wall and CPU.
        "after_run_wall": time.perf_counter() - run_end, "after_run_cpu": _process_cpu() - run_end_cpu,
        "first_epoch_steps": state["first_epoch_steps"], "bare_step_ms": bare,
        "steps_per_epoch": experiment.steps_per_epoch, "epochs": args.epochs,
        "batch_size": experiment.sampler.batch_size, "recall_at_1": trained["recall_at_1"],
        "map_at_r": trained["map_at_r"], "selected_epoch": selected,
    }), flush=True)


def _process_cpu():
    times = os.times()
    return times.user + times.system


class _redirect_stdout:
    """Send the run's own prints (and progress bar) to ``target``; fd level, as Keras writes to sys.stdout."""

    def __init__(self, target):
        self.target = target

    def __enter__(self):
        sys.stdout.flush()
        self.saved = os.dup(1)
        os.dup2(self.target.fileno(), 1)

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)


def bare_step_ms(experiment, tf, np, batches=20, calls=4):
    """Median ms a step of the run's compiled train function (one call runs ``steps_per_execution`` steps) on
    in-memory batches: no input path, no callbacks."""
    model = experiment.model
    drawn = list(experiment.training_batches().take(batches))
    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.stack([b[0] for b in drawn]), tf.stack([b[1] for b in drawn]))
    ).repeat()
    iterator = iter(dataset)
    train_function = model.make_train_function()
    steps = int(getattr(model, "steps_per_execution", 1) or 1)
    times = []
    for _ in range(calls + 1):  # the first call may trace
        start = time.perf_counter()
        float(train_function(iterator)["loss"])
        times.append((time.perf_counter() - start) / steps)
    return 1000 * float(np.median(times[1:]))


# ---------------------------------------------------------------------------------------------
# The PyTorch + PML side (runs in the peer environment: torch, pytorch-metric-learning, NumPy; no TF).


def peer_child(args):
    """The recipe in PyTorch + PML, timed by phase; print one JSON line."""
    import numpy as np
    import torch
    from pytorch_metric_learning import losses, miners, samplers
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    phases = dict.fromkeys(PHASES, 0.0)
    phases["import"] = time.time() - args.launched
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    start = time.perf_counter()
    arrays = np.load(args.splits)

    def tensors(name):  # NHWC [0, 255] → NCHW [0, 1]
        images = torch.from_numpy(arrays[f"{name}_images"]).permute(0, 3, 1, 2).contiguous() / 255.0
        return images, torch.from_numpy(arrays[f"{name}_labels"])

    (fit_x, fit_y), (val_x, val_y), (test_x, test_y) = tensors("fit"), tensors("validation"), tensors("test")
    model = conv4_embedder(torch, filters=64, dim=64, channels=fit_x.shape[1])
    num_classes = int(fit_y.max()) + 1
    loss = losses.MarginLoss(margin=0.2, nu=0.0, beta=1.2, triplets_per_anchor="all", learn_beta=True,
                             num_classes=num_classes)
    miner = miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_optimizer = torch.optim.Adam(loss.parameters(), lr=5e-4, eps=1e-7)
    batch_size = 64
    steps_per_epoch = args.steps_per_epoch or len(fit_y) // batch_size
    sampler = samplers.MPerClassSampler(fit_y, m=4, batch_size=batch_size,
                                        length_before_new_iter=steps_per_epoch * batch_size)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(fit_x, fit_y), batch_size=batch_size,
                                         sampler=sampler, drop_last=True)
    accuracy = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                                  knn_func=CustomKNN(LpDistance()), k="max_bin_count")
    phases["data"] = time.perf_counter() - start

    def embed(images):
        model.eval()
        with torch.no_grad():
            return torch.cat([model(images[i:i + 256]) for i in range(0, len(images), 256)])

    best = (-1.0, None, None)
    first_epoch_steps = None
    checkpoint = os.path.join(args.work, "checkpoint.pt")
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        model.train()
        for images, labels in loader:
            embeddings = model(images)
            value = loss(embeddings, labels, miner(embeddings, labels))
            optimizer.zero_grad()
            loss_optimizer.zero_grad()
            value.backward()
            optimizer.step()
            loss_optimizer.step()
        if not torch.isfinite(value):
            raise RuntimeError(f"diverged at epoch {epoch}")
        phases["steps"] += time.perf_counter() - start
        first_epoch_steps = first_epoch_steps or time.perf_counter() - start
        if epoch % 2 == 0 or epoch == args.epochs:
            start = time.perf_counter()
            recall = accuracy.get_accuracy(embed(val_x), val_y)["precision_at_1"]
            if recall > best[0]:
                best = (recall, epoch, {k: v.clone() for k, v in model.state_dict().items()})
            phases["validation"] += time.perf_counter() - start
        start = time.perf_counter()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "loss": loss.state_dict(),
                    "loss_optimizer": loss_optimizer.state_dict(), "epoch": epoch}, checkpoint)
        phases["writes"] += time.perf_counter() - start

    start = time.perf_counter()
    model.load_state_dict(best[2])
    scores = accuracy.get_accuracy(embed(test_x), test_y)
    phases["test"] = time.perf_counter() - start
    start = time.perf_counter()
    model.eval()
    torch.jit.trace(model, test_x[:1]).save(os.path.join(args.work, "model.pt"))
    phases["export"] = time.perf_counter() - start
    print(json.dumps({
        "side": "pytorch+pml", "phases": phases, "first_epoch_steps": first_epoch_steps,
        "steps_per_epoch": steps_per_epoch, "epochs": args.epochs, "batch_size": batch_size,
        "recall_at_1": scores["precision_at_1"], "map_at_r": scores["mean_average_precision_at_r"],
        "selected_epoch": best[1],
    }), flush=True)


def conv4_embedder(torch, filters, dim, channels):
    """tfdml's ``convnet`` embedder in PyTorch, with Keras' BatchNorm settings and initialisation."""
    nn = torch.nn
    layers, width = [], channels
    for _ in range(4):
        layers += [nn.Conv2d(width, filters, 3, padding=1, bias=False),
                   nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01), nn.ReLU(), nn.MaxPool2d(2)]
        width = filters
    head = nn.Linear(filters, dim)

    class Embedder(nn.Module):
        def __init__(self):
            super().__init__()
            self.features, self.head = nn.Sequential(*layers), head

        def forward(self, images):
            pooled = self.features(images).mean(dim=(2, 3))
            return nn.functional.normalize(self.head(pooled), dim=1)

    embedder = Embedder()
    for module in embedder.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return embedder


# ---------------------------------------------------------------------------------------------
# The parent: both sides per seed, then the table.


def child_command(python, mode, args, seed, work, splits=None):
    command = [python, "-m", "benchmarks.end_to_end", mode, "--seed", str(seed), "--epochs", str(args.epochs),
               "--threads", str(args.threads), "--work", work, "--recipe", str(args.recipe),
               "--launched", str(time.time())]
    if args.steps_per_epoch:
        command += ["--steps-per-epoch", str(args.steps_per_epoch)]
    if splits:
        command += ["--splits", splits]
    if args.figures:
        command.append("--figures")
    return command


def run_child(command, threads):
    """Run one side in a fresh process; its JSON line, with the process's wall and CPU as the OS saw them, less
    what the child measured after its run (tfdml's bare step)."""
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    before = os.times()
    start = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    after = os.times()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{process.stderr[-3000:]}")
    result = json.loads([line for line in process.stdout.splitlines() if line.startswith("{")][-1])
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    result["wall"] = wall - result.pop("after_run_wall", 0.0)
    result["cpu"] = cpu - result.pop("after_run_cpu", 0.0)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="fewer steps an epoch (smoke runs)")
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--peer-python", default="/tmp/peers/bin/python")
    parser.add_argument("--figures", action="store_true", help="let train.py draw its pictures")
    parser.add_argument("--sides", nargs="+", default=["tfdml", "pytorch+pml"], choices=["tfdml", "pytorch+pml"])
    parser.add_argument("--output", default="end_to_end.md", help="the markdown table; FILE.json beside it")
    parser.add_argument("--tfdml-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--peer-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--splits", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dump:
        return dump_splits(args.dump, args.seed, args.recipe)
    if args.tfdml_child:
        return tfdml_child(args)
    if args.peer_child:
        return peer_child(args)

    results = {side: [] for side in args.sides}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            splits = os.path.join(scratch, f"splits{seed}.npz")
            if "pytorch+pml" in args.sides:
                subprocess.run([sys.executable, "-m", "benchmarks.end_to_end", "--dump", splits, "--seed", str(seed),
                                "--recipe", str(args.recipe)], check=True, cwd=REPO)
            for side in args.sides:  # alternated per seed, so a load change hits both sides
                work = tempfile.mkdtemp(dir=scratch)
                if side == "tfdml":
                    command = child_command(sys.executable, "--tfdml-child", args, seed, work)
                else:
                    command = child_command(args.peer_python, "--peer-child", args, seed, work, splits)
                result = derived(run_child(command, args.threads))
                results[side].append(result)
                print(f"seed {seed} {side}: wall {result['wall']:.1f} s, R@1 {result['recall_at_1']:.3f}", flush=True)
    table = markdown_table(results)
    heading = (f"Omniglot margin recipe, {args.epochs} epochs, seeds {args.seeds}, {args.threads} threads "
               f"({os.cpu_count()} CPUs); mean ± SD over seeds")
    print(f"\n{heading}\n\n{table}")
    output = pathlib.Path(args.output)
    output.write_text(f"{heading}\n\n{table}\n")
    output.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(f"\nWrote {output} and {output.with_suffix('.json')}")


if __name__ == "__main__":
    main()
