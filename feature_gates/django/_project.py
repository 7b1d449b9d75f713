"""The project as the command group sees it (``manage.py feature_gates``): its
settings, its gated views for ``routes``, its gates for ``usage``."""

from __future__ import annotations

from ..core import Catalogue
from ..core import ConfigError
from ..core import Engine
from ..core import Settings
from ..core import validate_gate
from ._runtime import GatedView
from ._runtime import runtime
from ._runtime import url_views
from ._settings import in_django_words

__all__ = ["DjangoProject"]


class DjangoProject:
    """What the command group reads of a Django project (``feature_gates.cli.Project``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def settings(self) -> Settings:
        return self._settings

    def gated_views(self) -> list[GatedView]:
        return sorted(url_views(), key=lambda view: (view[1], view[0]))

    def gates_state(self) -> ProjectGates:
        return ProjectGates()


class ProjectGates:
    """The process's gates, as the reports read them."""

    @property
    def engine(self) -> Engine:
        return runtime.engine

    @property
    def settings(self) -> Settings:
        return runtime.engine.settings

    @property
    def catalogue(self) -> Catalogue:
        return runtime.engine.catalogue

    def check_views(self) -> None:
        """A gate of the URLconf that cannot work raises ConfigError naming its route."""
        engine = runtime.engine
        for _, route, _, gate in url_views():
            try:
                validate_gate(gate, engine.catalogue)
            except ConfigError as exc:
                raise ConfigError(f"view at {route!r}: {in_django_words(exc)}") from None
