"""Measured figures, printed as JSON. Each module runs with ``python -m benchmarks.NAME``."""
