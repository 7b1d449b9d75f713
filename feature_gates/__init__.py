"""Gate Flask endpoints by plan and meter each user's feature usage in PostgreSQL."""

from __future__ import annotations

__all__: list[str] = []
