"""The mark a decorator leaves on a view: its gates, for ``check_views`` and ``routes``.

The same mark for every adapter: it lives in the core.
"""

from __future__ import annotations

from ..core import GATES_ATTRIBUTE
from ..core import gates_of

__all__ = ["GATES_ATTRIBUTE", "gates_of"]
