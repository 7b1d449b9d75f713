"""Benchmarks of feature-gates: python -m benchmarks."""
