"""The project's feature-gates at run time: one engine per process, built on first use.

Nothing connects at import, at start-up or in the system checks: the engine (its
pool, its tracker) is built by the first request through a gate, in the process
that serves it. A pre-forking server (gunicorn, with or without ``--preload``)
therefore gives each worker its own pool and writer, and runserver's autoreloader
builds none in its watching parent. ``setting_changed`` (``override_settings``)
closes the engine, and the next use builds one from the new settings.
Interpreter exit writes what is pending (``atexit``).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

from ..core import Clock
from ..core import ConfigError
from ..core import Denial
from ..core import Engine
from ..core import Gate
from ..core import Override
from ..core import Subject
from ..core import gates_of
from ..core import utc_now
from ..signals import _signals
from ._settings import NO_DATABASE
from ._settings import ON_DENIED
from ._settings import SUBJECT_LOADER
from ._settings import DjangoSettings
from ._settings import import_callable
from ._settings import in_django_words
from ._settings import key_name
from ._settings import read

logger = logging.getLogger("feature_gates")

__all__ = [
    "GatedView",
    "Runtime",
    "django_settings",
    "method_gates",
    "runtime",
    "url_gates",
    "url_views",
    "view_gates",
]

#: ``load_subject(request)``: the request's Subject, None when anonymous.
Loader = Callable[[Any], "Subject | None"]
#: ``on_denied(request, denial)``: an HttpResponse, or None for the problem+json answer.
DeniedHook = Callable[[Any, Denial], Any]


def django_settings() -> DjangoSettings:
    """``settings.FEATURE_GATES``, parsed (ConfigError naming the key)."""
    from django.conf import settings

    return read(
        getattr(settings, "FEATURE_GATES", None), base_dir=getattr(settings, "BASE_DIR", None)
    )


#: A gated view of the URLconf: (endpoint, route, methods, gate).
GatedView = tuple[str, str, tuple[str, ...], Gate]


def url_views() -> Iterator[GatedView]:
    """Every gate of every view of the root URLconf: the view's name (the URL's, else
    the view's dotted name), its route, the methods the gate sees (``*`` for all)."""
    from django.urls import URLPattern
    from django.urls import URLResolver
    from django.urls import get_resolver

    def walk(patterns: list[Any], prefix: str) -> Iterator[GatedView]:
        for pattern in patterns:
            route = prefix + _readable(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                view = pattern.callback
                named = _view_class(view) or view
                name = pattern.name or f"{named.__module__}.{named.__qualname__}"
                for methods, gate in method_gates(view):
                    yield name, route, methods, gate

    yield from walk(get_resolver().url_patterns, "/")


def _readable(pattern: Any) -> str:
    """A route as written: a regular expression without its anchors."""
    from django.urls.resolvers import RegexPattern

    text = str(pattern)
    if isinstance(pattern, RegexPattern):
        text = text.removeprefix("^").removesuffix("\\Z").removesuffix("$")
    return text


def _view_class(view: Callable[..., Any]) -> Any:
    """The class of a class-based view's function (Django's, or DRF's), else None."""
    return getattr(view, "view_class", None) or getattr(view, "cls", None)


def url_gates() -> Iterator[tuple[str, Gate]]:
    """Every gate of every view of the root URLconf, with the view's route."""
    for _, route, _, gate in url_views():
        yield route, gate


def view_gates(view: Callable[..., Any]) -> tuple[Gate, ...]:
    """The gates of a URL's view: the function's, or its class's handlers'
    (``method_decorator``, or a decorator put on a handler directly; DRF's
    ``APIView`` and viewsets)."""
    return tuple(gate for _, gate in method_gates(view))


def method_gates(view: Callable[..., Any]) -> list[tuple[tuple[str, ...], Gate]]:
    """The gates of a URL's view with the HTTP methods each one sees."""
    found = [(_seen(None, gate), gate) for gate in gates_of(view)]
    cls = _view_class(view)
    if cls is not None:
        found += [(_seen(None, gate), gate) for gate in gates_of(getattr(cls, "dispatch", None))]
        # A viewset routes methods to actions; a view, each method to its handler.
        actions: dict[str, str] = getattr(view, "actions", None) or {
            method: method for method in getattr(cls, "http_method_names", ())
        }
        handlers: dict[str, set[str]] = {}
        for method, handler in actions.items():
            handlers.setdefault(handler, set()).add(method.upper())
        for handler, methods in handlers.items():
            gates = gates_of(getattr(cls, handler, None))
            found += [(_seen(methods, gate), gate) for gate in gates]
    return [(methods, gate) for methods, gate in found if methods]


def _seen(methods: set[str] | None, gate: Gate) -> tuple[str, ...]:
    """The methods a gate sees of those that reach it (None: any, shown ``*``); empty
    when it sees none of them."""
    if gate.methods is None:
        return ("*",) if methods is None else tuple(sorted(methods))
    gated = gate.methods - {"HEAD", "OPTIONS"}
    return tuple(sorted(gated if methods is None else gated & methods))


def _listening(name: str) -> bool:
    return bool(_signals.signal(name).receivers)


class Runtime:
    """The process's engine, its callbacks and a test's override."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self.settings: DjangoSettings | None = None
        self.loader: Loader | None = None
        self.on_denied: DeniedHook | None = None
        self.override: Override | None = None
        self._validated: set[int] = set()
        self.sender: object = self
        #: Returns the current time (aware): fixes the period of each use.
        self.clock: Clock = utc_now

    @property
    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._build()
                engine = self._engine
        return engine

    def _build(self) -> Engine:
        from django.core.exceptions import ImproperlyConfigured

        try:
            parsed = django_settings()
            loader = None
            if parsed.subject_loader is not None:
                loader = import_callable(parsed.subject_loader, SUBJECT_LOADER)
            on_denied = None
            if parsed.on_denied is not None:
                on_denied = import_callable(parsed.on_denied, ON_DENIED)
        except ConfigError as exc:
            raise ImproperlyConfigured(str(exc)) from None
        sender = self.sender

        def emit(name: str, **data: Any) -> None:
            _signals.signal(name).send(sender, **data)

        engine = Engine(
            parsed.core, parsed.catalogue, clock=self.clock, emit=emit, listening=_listening
        )
        self.settings, self.loader, self.on_denied = parsed, loader, on_denied
        self._validated = set()
        from django.conf import settings

        if getattr(settings, "ROOT_URLCONF", None):  # none in a script
            engine.stock_features = frozenset(
                gate.feature for _, gate in url_gates() if gate.kind == "stock"
            )
        if parsed.unrecorded:
            logger.warning("%s", NO_DATABASE)
        atexit.register(engine.close_at_exit)
        return engine

    def built(self) -> Engine | None:
        """The engine if one was built in this process, else None (nothing is built)."""
        return self._engine

    def reset(self, timeout: float | None = None, *, quietly: bool = False) -> None:
        """Close the engine (write what is pending); the next use builds a new one.

        :param quietly: log what cannot be written, as at interpreter exit, instead of
            raising :class:`~feature_gates.FlushTimeout` (a change of settings).
        """
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            atexit.unregister(engine.close_at_exit)
            if quietly:
                engine.close_at_exit()
            else:
                engine.close(timeout)

    def enabled(self) -> bool:
        if self.override is not None and self.override.enabled is not None:
            return self.override.enabled
        return self.engine.settings.enabled

    def validate(self, gate: Gate) -> None:
        """Check ``gate`` against the catalogue the first time it runs."""
        if id(gate) in self._validated:
            return
        try:
            self.engine.validate(gate)
        except ConfigError as exc:  # a view imported after the checks ran
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(str(in_django_words(exc))) from None
        self._validated.add(id(gate))

    def load_subject(self, request: Any) -> Subject | None:
        """Call SUBJECT_LOADER with the request (and apply a test's override)."""
        engine = self.engine
        if self.loader is None:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"{key_name(SUBJECT_LOADER)} is not set: set it to the dotted path of a "
                "function taking the request and returning Subject(user_id=..., plan=...) "
                "or None for an anonymous caller"
            )
        subject = self.loader(request)
        if subject is not None and not isinstance(subject, Subject):
            raise TypeError(
                f"{key_name(SUBJECT_LOADER)} must return a feature_gates.Subject or None, "
                f"got {type(subject).__name__}"
            )
        if subject is not None:
            engine.check_user_id(subject)
        return subject if self.override is None else self.override.apply(subject)


#: The one runtime of the process.
runtime = Runtime()
