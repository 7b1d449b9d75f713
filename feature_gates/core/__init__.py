"""The framework-free core of feature-gates: what every adapter (Flask, and others)
builds on. It imports neither flask, werkzeug nor click.

The names below are the core's API for adapters; the modules behind them are
private.
"""

from __future__ import annotations

from ._config import PREFIX as PREFIX
from ._config import USER_ID_TYPES as USER_ID_TYPES
from ._config import ConfigError as ConfigError
from ._config import FailMode as FailMode
from ._config import Folder as Folder
from ._config import Settings as Settings
from ._config import TrackingMode as TrackingMode
from ._config import parse_setting as parse_setting
from ._config import read_settings as read_settings
from ._periods import Clock as Clock
from ._periods import month_start as month_start
from ._periods import period_end as period_end
from ._periods import utc_clock as utc_clock
from ._periods import utc_now as utc_now
from ._plans import Catalogue as Catalogue
from ._plans import Entitlement as Entitlement
from ._plans import Plan as Plan
from ._plans import UnknownFeature as UnknownFeature
from ._plans import check_feature_name as check_feature_name
from ._subject import Subject as Subject
from ._subject import SubjectLoader as SubjectLoader
from ._subject import UserIdCache as UserIdCache
from ._subject import user_id_check as user_id_check
