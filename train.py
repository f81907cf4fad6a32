"""Train a deep-metric-learning model from a recipe, evaluate it on held-out classes, export it.

With no arguments: the embedded default (pipelines/digits_margin.yaml) — margin loss with
distance-weighted sampling on scikit-learn's digits, trained on digits 0–4 and evaluated on 5–9.
"""

import argparse
import os
import sys

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) is noise for a CPU training run.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_RECIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "digits_margin.yaml")

# Convenience flags: each is shorthand for one --set key.
SHORTCUTS = {
    "epochs": ("epochs", int, "number of training epochs"),
    "batch_size": ("sampler.batch_size", int, "batch size b (a multiple of --samples-per-class)"),
    "samples_per_class": ("sampler.samples_per_class", int, "samples per class m in each batch"),
    "embedding_dim": ("model.embedding_dim", int, "embedding dimension (> 0)"),
    "learning_rate": ("optimizer.learning_rate", float, "learning rate of the embedding model"),
    "data_root": ("data.root", str, "directory holding the dataset (e.g. ../shared/data/omniglot)"),
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

    from tfdml.training.config import ConfigError, load_config

    try:
        config = load_config(args.recipe, overrides)
        if config["data"]["root"] is not None and not os.path.exists(config["data"]["root"]):
            raise ConfigError(f"data.root (--data-root) does not exist: {config['data']['root']}")
        if args.tune:
            from tfdml.tune import tune

            tune(config, verbose=0 if args.quiet else 1)
        else:
            from tfdml.training.runner import train

            train(config, verbose=0 if args.quiet else 1)
    except (ConfigError, FileNotFoundError) as error:
        # Like argparse: one line naming the culprit, status 2, no traceback.
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
