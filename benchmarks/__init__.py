"""Benchmarks: our generated code side by side with hand-written JAX and with peers.

Run all with ``make bench`` (``python -m benchmarks.run``); results go to
``benchmarks/results/*.json`` and a summary table to stdout. ``benchmarks/RESULTS.md`` holds
the table from a reference run. Speed is measured here, never asserted in a timed test.
"""

import os as _os

# Compile times are measured cold: ppl's persistent compilation cache is off here unless the
# caller turned it on explicitly (PPL_COMPILATION_CACHE=1).
_os.environ.setdefault("PPL_COMPILATION_CACHE", "0")
