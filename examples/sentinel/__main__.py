"""``python -m examples.sentinel``: run Sentinel on an embedded PostgreSQL.

Migrates, creates the demo accounts, prints the URL and their tokens, then serves
on Werkzeug's development server until Ctrl+C. Set ``DATABASE_URL`` (or
``FEATURE_GATES_DATABASE_URL``) to use your own PostgreSQL instead of the embedded
one. For a production server, see docs/deployment.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import psycopg

from feature_gates.migrate import MigrationError

from . import create_app
from .database import DEFAULT_DATA_DIR
from .database import DatabaseError
from .demo import DEMO_USERS

#: The environment variables naming the database, in the order create_app reads them.
URL_VARIABLES = ("FEATURE_GATES_DATABASE_URL", "DATABASE_URL")


def first_line(error: BaseException) -> str:
    """psycopg's messages run over several lines; the first says what happened."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.sentinel", description="Run the Sentinel example app."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("SENTINEL_DATA_DIR", DEFAULT_DATA_DIR)),
        help="the embedded PostgreSQL's data folder (kept between runs; "
        "default: SENTINEL_DATA_DIR or examples/sentinel/.pgdata)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("feature_gates").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    named = [key for key in URL_VARIABLES if os.environ.get(key)]
    if named:
        where = f"the database in {named[0]}"
        fix = f"check {named[0]}, or unset it to run on the embedded PostgreSQL"
    else:
        where = f"an embedded PostgreSQL in {args.data_dir}"
        fix = "start Sentinel again, or point --data-dir somewhere else"
    print(f"Starting Sentinel on {where} ...", flush=True)
    try:
        # One process: it may migrate and seed as it starts (a deploy would not).
        app = create_app(
            {
                "SENTINEL_DATA_DIR": args.data_dir,
                "SENTINEL_AUTO_MIGRATE": True,
                "SENTINEL_DEMO_DATA": True,
                # Sentinel receives its own usage alerts (webhooks.py).
                "FEATURE_GATES_WEBHOOK_URL": os.environ.get(
                    "FEATURE_GATES_WEBHOOK_URL",
                    f"http://127.0.0.1:{args.port}/hooks/feature-gates",
                ),
            }
        )
    except DatabaseError as exc:
        return fail(str(exc))
    except psycopg.OperationalError as exc:
        return fail(f"cannot reach {where}: {first_line(exc)}; {fix}")
    except MigrationError as exc:
        return fail(f"cannot migrate {where}: {exc}")

    url = f"http://{args.host}:{args.port}"
    print(f"\nSentinel is running at {url}   (Ctrl+C stops it)\n")
    print("Demo accounts (their tokens are public: keep this on loopback):")
    for demo in DEMO_USERS:
        role = "admin, " if demo.is_admin else ""
        print(f"  {demo.email:<30} {role}{demo.plan:<12} {demo.token}")
    print(
        f"\nTry:  curl -H 'Authorization: Bearer sntl_demo_free' {url}/me/usage"
        f"\nDashboard: {url}/login (paste sntl_demo_admin)"
        "\nWalk-through: docs/example.md\n",
        flush=True,
    )
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
