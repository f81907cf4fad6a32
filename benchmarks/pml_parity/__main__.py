"""``python -m benchmarks.pml_parity``: see the package docstring."""

from benchmarks.pml_parity import main

main()
