"""penspin: in-hand pen spinning (PenSpin, CoRL 2024) on MuJoCo, CPU-first and pip-installable."""

__version__ = "0.1.0"
