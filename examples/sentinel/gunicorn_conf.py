"""gunicorn's settings for Sentinel: its logging.

    gunicorn -c examples/sentinel/gunicorn_conf.py 'examples.sentinel:create_app()'

Command-line options (``--workers``, ``--threads``, ``--preload``...) add to these;
docs/deployment.md says which to choose. Without a logging configuration gunicorn
sets up only its own loggers: the records of the application and of feature-gates
reach Python's last-resort handler, which prints warnings as bare lines and drops
the rest. Here every logger goes through one handler on stderr, with the time, the
level, the worker's pid and the logger's name on each line.
"""

from __future__ import annotations

from typing import Any

#: gunicorn merges this into its own defaults (one level deep), so ``loggers``
#: names gunicorn's two loggers again: they hand their records to the root's handler.
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {
            "format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        },
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "line",
            "stream": "ext://sys.stderr",
        },
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        # One line per request; WARNING silences it where a proxy logs requests.
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        # A record per denial (429, 403) at INFO: kept out of the log here.
        "feature_gates.denials": {"level": "WARNING"},
        # fpdf2's font subsetting logs each font table of each PDF at INFO.
        "fontTools": {"level": "WARNING"},
    },
}
