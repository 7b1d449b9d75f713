"""The Django adapter of feature-gates: the decorators, ``gates`` and the denials.

.. code-block:: python

    # settings.py
    INSTALLED_APPS += ["feature_gates.django"]
    FEATURE_GATES = {
        "DATABASE_URL": "postgresql://app@localhost/app",
        "PLANS": {"free": {"exports_monthly": 10}, "pro": {"exports_monthly": None}},
        "SUBJECT_LOADER": "myapp.gates.load_subject",
    }

    # views.py
    from feature_gates.django import feature_limit

    @feature_limit("exports_monthly")
    def export(request): ...

A thin layer over :mod:`feature_gates.core`, as :mod:`feature_gates.flask` is.
See docs/django.md.
"""

from __future__ import annotations

from ..core import PROBLEM_CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from ..core import Denial as Denial
from ..core import Hold as Hold
from ..core import Subject as Subject
from ..core import current_hold as current_hold
from ._decorators import GateDecorator as GateDecorator
from ._decorators import feature_limit as feature_limit
from ._decorators import feature_required as feature_required
from ._decorators import feature_tier as feature_tier
from ._gates import DjangoGates as DjangoGates
from ._gates import gates as gates
