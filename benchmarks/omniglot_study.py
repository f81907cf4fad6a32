"""The three papers' claims, checked on real data that trains on this CPU: Omniglot.

Every configuration is the Omniglot recipe ``pipelines/omniglot_margin.yaml`` (Conv-4 at 28 px,
64-d embedding, batches of 64 with 4 images per class) with only the compared component changed,
tested on the 2,120 drawings of the 106 characters of the 3 alphabets only in
``images_background_small2`` (class- and alphabet-disjoint from training). The experiments and
both protocols are data: ``pipelines/studies/omniglot_claims.yaml``.

1. ``wu_table1``: random / semi-hard / distance-weighted sampling × contrastive, triplet ℓ2²,
   triplet ℓ2 and margin loss (Wu et al. 2017, Table 1);
2. ``wu_beta``: learned class-specific β vs fixed β ∈ {0.8, 1.0, 1.2} (Wu Table 2);
3. ``roth_sampling``: SPC-2/4/8, SPC-R, FRD, DDM and greedy coreset batches for margin (D) and
   multi-similarity (Roth et al. 2020, §4.3);
4. ``roth_rho``: contrastive, triplet, margin and SNR (distance-weighted tuples) vs their
   ρ-regularised R- variants (Roth Table 2, §5);
5. ``fastap``: FastAP with category-hard vs random-class batches, alphabets as categories
   (Cakir et al. 2019, supp. A).

Protocols:

- ``ten_epoch`` (the default): 10 epochs of 42 steps on all 5 small1 alphabets, metrics
  after the last epoch; runs in ``docs/results/omniglot_study.jsonl``.
- ``converged``: Latin held out as validation classes; first a tuning stage (the same
  keras-tuner search for every configuration on the validation classes, values in
  ``docs/results/omniglot_study_tuned.jsonl``), then the final runs with the tuned values for the
  budget the YAML states, each evaluated on the test alphabets at its best validation epoch, with its
  validation curve and (label samplers) the mean categories per batch recorded in
  ``docs/results/omniglot_study_converged.jsonl``.

Identical configurations in several experiments are trained once. Records are appended as runs
(and searches) finish, so an interrupted study resumes where it stopped: a run is keyed by its
resolved config and seed, and a changed definition is a new key. At the end ``docs/results.md``
and its plots in ``docs/results/`` are rewritten from all recorded runs: the 10-epoch study, then
(once it has tuned values or runs) the converged one with both protocols' verdicts side by side
and what changed; the text after the notes marker of an existing ``docs/results.md`` is kept.

Run:

    python -m benchmarks.omniglot_study                         # 10 epochs, 3 seeds: ~1 h on 2 cores
    python -m benchmarks.omniglot_study --protocol converged    # tune, then train: see docs/results.md
    python -m benchmarks.omniglot_study --protocol converged --tune-only
    python -m benchmarks.omniglot_study --report-only           # rewrite the report only

``--experiments wu_beta fastap`` runs a subset, ``--seeds 0 1 2 3`` other seeds (converged: the
YAML's ``seeds`` by default). Under the converged protocol a decisive comparison (a paper's claim
between two rows) whose difference is still within 2 standard errors after 3 seeds gets the YAML's
``extra_seeds`` (3 and 4) for both rows.

Measured on 2 cores with 2 workers (one thread each), the converged study costs about 40
process-hours: 248 tuning trials of about 250 s (a search of 8 trials × 15 epochs takes 15–45 min),
then the final runs: a batch-64 run of 60 epochs 4.5–10.5 min with the SPC samplers, 13.5–17 min with
the memory-bank samplers (FRD, DDM, GC) and 29–47 min for the rotation-expanded FastAP
configurations. That is about 20 hours of wall time, over several sessions. Run it in the background,
e.g. ``nohup python -m benchmarks.omniglot_study --protocol converged > runs/omniglot_study.log 2>&1 &``;
rerunning the same command resumes it.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.study.experiments import EXPERIMENTS, PROTOCOLS  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_DATA_ROOT = os.path.join(REPO, "tfdml", "data", "omniglot_background_small")  # the zips shipped with tfdml


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", default="ten_epoch", choices=list(PROTOCOLS))
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the protocol's seeds (0 1 2)")
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="folder with the two Omniglot zips")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="runs trained in parallel, each with cpu_count / workers threads")
    parser.add_argument("--tune-only", action="store_true", help="converged: only the tuning stage")
    parser.add_argument("--report-only", action="store_true", help="only rewrite docs/results.md from recorded runs")
    args = parser.parse_args()
    protocol = PROTOCOLS[args.protocol]
    seeds = args.seeds or list(protocol.seeds)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.tune_only and protocol.tuning is None:
        parser.error(f"--tune-only: protocol {args.protocol} has no tuning stage")
    if not os.path.isdir(args.data_root):
        parser.error(f"--data-root {args.data_root} does not exist: it must hold Omniglot's "
                     "images_background_small1.zip and images_background_small2.zip")

    from benchmarks.study.claims import extra_runs
    from benchmarks.study.report import write_report
    from benchmarks.study.store import read_records, run_study, train_runs
    from benchmarks.study.tuning import read_tuned, tune_study

    failures = 0
    if not args.report_only:
        if protocol.tuning is not None:
            failures += tune_study(args.experiments, args.data_root, args.workers, protocol)
        if not args.tune_only:
            tuned = read_tuned(protocol)
            # A configuration whose search failed is not trained: rerunning retries its search first.
            failures += run_study(args.experiments, seeds, args.data_root, args.workers, protocol, tuned)
            # Extra seeds for the decisive comparisons within 2 SE; asked again as a closer rival can emerge.
            while not failures and (runs := extra_runs(args.experiments, protocol, args.data_root,
                                                       read_records(protocol.results), tuned)):
                print(f"{protocol.name}: {len(runs)} runs of seeds {list(protocol.extra_seeds)} for decisive "
                      "comparisons within 2 SE.")
                failures += train_runs(runs, args.data_root, args.workers, protocol)
    write_report(args.data_root)
    if failures:
        sys.exit(f"{failures} run(s) or search(es) failed; rerun the same command to retry them.")


if __name__ == "__main__":
    main()
