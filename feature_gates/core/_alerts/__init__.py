"""Usage alerts: the crossings the database records, delivered as signals and
signed webhooks."""

from __future__ import annotations

from .events import EVENT_TYPE as EVENT_TYPE
from .events import Claimed as Claimed
from .events import event_of as event_of
from .sender import SIGNAL as SIGNAL
from .sender import AlertSender as AlertSender
from .sender import AlertStats as AlertStats
from .signature import HEADER as HEADER
from .signature import SignatureError as SignatureError
from .signature import sign as sign
from .signature import verify as verify
