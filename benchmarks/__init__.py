"""Benchmarks, the model zoo and the Omniglot claims study: scripts run from the repository root as
``python -m benchmarks.<name>`` against the installed tfdml (``pip install -e .``)."""
