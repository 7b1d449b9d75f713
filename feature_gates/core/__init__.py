"""The framework-free core of feature-gates: what every adapter (Flask, and others)
builds on. It imports neither flask, werkzeug nor click.

The names below are the core's API for adapters; the modules behind them are
private. See docs/architecture.md.
"""

from __future__ import annotations

from ._alerts import AlertSender as AlertSender
from ._alerts import AlertStats as AlertStats
from ._config import PREFIX as PREFIX
from ._config import USER_ID_TYPES as USER_ID_TYPES
from ._config import ConfigError as ConfigError
from ._config import FailMode as FailMode
from ._config import Folder as Folder
from ._config import Settings as Settings
from ._config import TrackingMode as TrackingMode
from ._config import parse_setting as parse_setting
from ._config import read_settings as read_settings
from ._credits import Balance as Balance
from ._credits import CreditGrant as CreditGrant
from ._decision import Decision as Decision
from ._decision import Gate as Gate
from ._decision import GateKind as GateKind
from ._decision import Grant as Grant
from ._decision import Level as Level
from ._decision import gated_methods as gated_methods
from ._denials import KINDS as KINDS
from ._denials import PROBLEM_CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from ._denials import Denial as Denial
from ._denials import iso_utc as iso_utc
from ._engine import Engine as Engine
from ._holds import Hold as Hold
from ._holds import HoldExpired as HoldExpired
from ._holds import HoldState as HoldState
from ._holds import current_hold as current_hold
from ._holds import holding as holding
from ._marks import GATES_ATTRIBUTE as GATES_ATTRIBUTE
from ._marks import gates_of as gates_of
from ._marks import limit_gate as limit_gate
from ._marks import required_gate as required_gate
from ._marks import tier_gate as tier_gate
from ._marks import validate_gate as validate_gate
from ._metering import Usage as Usage
from ._override import Override as Override
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
from ._reports import MonthUsage as MonthUsage
from ._reports import NearLimit as NearLimit
from ._reports import UsageReport as UsageReport
from ._reports import UsageTrend as UsageTrend
from ._reports import usage_report as usage_report
from ._storage import Storage as Storage
from ._storage import StorageError as StorageError
from ._storage import StorageStats as StorageStats
from ._storage import StorageUnavailable as StorageUnavailable
from ._storage import one_line as one_line
from ._subject import Subject as Subject
from ._subject import SubjectLoader as SubjectLoader
from ._tracking import FlushTimeout as FlushTimeout
from ._tracking import TrackingStats as TrackingStats
