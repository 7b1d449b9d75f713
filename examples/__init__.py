"""Example applications built on feature-gates (run ``python -m examples.sentinel``)."""

from __future__ import annotations
