"""penspin: in-hand pen spinning (PenSpin, CoRL 2024) on MuJoCo, CPU-first and pip-installable."""

import os

# Torch's OpenMP workers spin while they wait by default. Physics threads, a second training run
# or any other process then fight them for the cores (docs/benchmarks.md). OpenMP reads this
# when torch loads, so it is set before anything imports torch; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
