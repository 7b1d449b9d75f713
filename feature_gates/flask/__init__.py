"""The Flask adapter of feature-gates: the extension, the decorators, the HTTP denials.

A thin layer over :mod:`feature_gates.core`: it knows ``app.extensions``,
``flask.g``, ``after_request``, werkzeug's HTTP exceptions and template globals.
The package root (``from feature_gates import FeatureGates``) exports the same names.
"""

from __future__ import annotations

from ..core import current_hold as current_hold
from ._app_gates import AppGates as AppGates
from ._decorators import GateDecorator as GateDecorator
from ._decorators import feature_limit as feature_limit
from ._decorators import feature_required as feature_required
from ._decorators import feature_tier as feature_tier
from ._denials import PROBLEM_CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from ._denials import FeatureCheckFailed as FeatureCheckFailed
from ._denials import FeatureCheckUnavailable as FeatureCheckUnavailable
from ._denials import FeatureDenied as FeatureDenied
from ._denials import FeatureLimitExceeded as FeatureLimitExceeded
from ._denials import FeatureNotEntitled as FeatureNotEntitled
from ._denials import NotAuthenticated as NotAuthenticated
from ._denials import TierTooLow as TierTooLow
from ._extension import EXTENSION_KEY as EXTENSION_KEY
from ._extension import FeatureGates as FeatureGates
from ._negotiation import prefers_html as prefers_html
from ._views import GATES_ATTRIBUTE as GATES_ATTRIBUTE
from ._views import gates_of as gates_of
