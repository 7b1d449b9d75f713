"""The app's shared objects, reachable from views as module-level names.

``thread_manager.add_messages(...)`` reads as it did in the original system; the
proxies find the objects of the current application (several apps, as tests
make, each have their own).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import cast

from flask import current_app
from werkzeug.local import LocalProxy

from feature_gates import FeatureGates
from feature_gates.pgserver import LocalPostgres
from feature_gates.reports import GatedRoute

from .accounts import Accounts
from .database import ProcessPool
from .itineraries import ItineraryManager
from .threads import ThreadManager

__all__ = ["Sentinel", "accounts", "gates", "itinerary_manager", "sentinel", "thread_manager"]

#: The extension, made once and bound to each app by ``gates.init_app(app)``.
gates = FeatureGates()


@dataclass
class Sentinel:
    """What the views need, kept in ``app.extensions["sentinel"]``."""

    pool: ProcessPool
    accounts: Accounts
    thread_manager: ThreadManager
    itinerary_manager: ItineraryManager
    server: LocalPostgres | None = None
    #: Each gated feature with its gate (kind, tier, what each plan gets), read
    #: from the decorators once the app is built.
    features: dict[str, GatedRoute] = field(default_factory=dict)

    def close(self) -> None:
        self.pool.close()


def sentinel() -> Sentinel:
    return cast(Sentinel, current_app.extensions["sentinel"])


accounts = cast(Accounts, LocalProxy(lambda: sentinel().accounts))
thread_manager = cast(ThreadManager, LocalProxy(lambda: sentinel().thread_manager))
itinerary_manager = cast(ItineraryManager, LocalProxy(lambda: sentinel().itinerary_manager))
