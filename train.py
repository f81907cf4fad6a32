"""Train a deep-metric-learning model from a recipe, evaluate it on held-out classes, export it.

With no arguments: pipelines/omniglot_quickstart.yaml — margin loss with distance-weighted
sampling on the Omniglot characters shipped with tfdml, trained on 4 alphabets, the epoch selected
on Latin, evaluated on 3 unseen alphabets (about 2.5 minutes on 2 CPU cores). Prints Recall@k,
MAP@R, NMI and 20-way one-shot accuracy for raw pixels, the untrained and the trained network, and
writes a retrieval picture and an embedding map into the run folder.

TensorFlow's C++ log is quiet unless TF_CPP_MIN_LOG_LEVEL is set (e.g. TF_CPP_MIN_LOG_LEVEL=0).
"""

import argparse
import contextlib
import os
import sys
import tempfile
import warnings

DEFAULT_RECIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "omniglot_quickstart.yaml")


@contextlib.contextmanager
def quiet_tensorflow_start():
    """Keep TensorFlow's C++ start-up lines (CUDA probing on a CPU machine, "failed call to cuInit")
    off the terminal, unless the user set ``TF_CPP_MIN_LOG_LEVEL``.

    The level 3 hides C++ INFO, WARNING and ERROR lines (Python exceptions still say what failed);
    lines written before absl's logging starts ignore it, so stderr is also held back while
    TensorFlow is imported, and shown if the import fails.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            held.seek(0)
            os.write(saved, held.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)

# Convenience flags: each is shorthand for one --set key.
SHORTCUTS = {
    "epochs": ("epochs", int, "number of training epochs"),
    "batch_size": ("sampler.batch_size", int, "batch size b (a multiple of --samples-per-class)"),
    "samples_per_class": ("sampler.samples_per_class", int, "samples per class m in each batch"),
    "embedding_dim": ("model.embedding_dim", int, "embedding dimension (> 0)"),
    "learning_rate": ("optimizer.learning_rate", float, "learning rate of the embedding model"),
    "data_root": ("data.root", str, "directory holding the dataset (default for omniglot: the zips shipped with tfdml)"),
    "name": ("name", str, "run and export name: runs/<name>/, models/<name>/<version>/"),
    "seed": ("seed", int, "random seed"),
    "strategy": ("distribute.strategy", str, "none | mirrored | multi_worker"),
    "export_gallery": (
        "export.gallery",
        str,
        "also export a retrieval model models/<name>-search/<version>/ searching this gallery: "
        "'test' (the test split) or a folder of images (root/class/*.jpg)",
    ),
}


def show_each_warning_once():
    """Show each distinct warning once per run: the raw-pixel, untrained and trained evaluations would
    repeat the same one (e.g. an alphabet too small for 20-way episodes). Deduplicated where warnings
    are shown, since the libraries' ``catch_warnings`` blocks reset Python's own "once" registry."""
    shown = set()
    show = warnings.showwarning

    def show_once(message, category, filename, lineno, file=None, line=None):
        if (str(message), category) not in shown:
            shown.add((str(message), category))
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = show_once


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Any recipe key can be overridden: --set loss.params.beta=0.6 --set epochs=3.",
    )
    parser.add_argument("recipe", nargs="?", default=DEFAULT_RECIPE, help="YAML recipe under pipelines/ (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key (repeatable)")
    for flag, (key, kind, text) in SHORTCUTS.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", type=kind, help=f"{text} (sets {key})")
    parser.add_argument("--tune", action="store_true", help="run the recipe's keras-tuner hyperparameter search instead")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    overrides = list(args.overrides)
    for flag, (key, _, _) in SHORTCUTS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")

    with quiet_tensorflow_start():
        import tensorflow  # noqa: F401
    show_each_warning_once()

    from tfdml.data import DataFileError
    from tfdml.extras import MissingExtraError, require
    from tfdml.training.config import ConfigError, load_config

    try:
        config = load_config(args.recipe, overrides)
        if config["data"]["root"] is not None and not os.path.exists(config["data"]["root"]):
            raise ConfigError(f"data.root (--data-root) does not exist: {config['data']['root']}")
        if args.tune:
            require("keras_tuner", "python train.py --tune")
            from tfdml.tune import tune

            tune(config, verbose=0 if args.quiet else 1)
        else:
            from tfdml.run import train

            train(config, verbose=0 if args.quiet else 1)
    except (ConfigError, FileNotFoundError, DataFileError, MissingExtraError) as error:
        # Like argparse: one line naming the culprit, status 2, no traceback.
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
