"""The Omniglot claims study behind ``benchmarks/omniglot_study.py``, one job per module.

``experiments`` (the YAML definitions, resolved configs and run keys), ``store`` (training runs
and the resumable ``.jsonl`` results), ``tuning`` (the equal-budget keras-tuner search per
configuration), ``batches`` (what a sampler's batches hold), ``claims`` (seed statistics and
verdicts) and ``report`` (``docs/results.md`` and its plots).
"""
