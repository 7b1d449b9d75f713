"""Deprecated module paths: ``feature_gates.usage.tracker``."""
