"""The tracker across processes: the exit flush and forked workers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings

import psycopg
from tracking_support import tracker_for


def totals(url):
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT user_id, feature, usage_count FROM feature_usage").fetchall()
    return {(user_id, feature): count for user_id, feature, count in rows}


def run_app_script(url, body):
    """Run ``body`` in a new interpreter, in the context of an app tracking into ``url``.

    The writer would wait an hour: only the exit flush can write what is pending.
    """
    script = textwrap.dedent(
        f"""
        from flask import Flask
        from feature_gates import FeatureGates

        app = Flask("exit_flush")
        app.config.update(
            FEATURE_GATES_DATABASE_URL={url!r},
            FEATURE_GATES_FLUSH_INTERVAL=3600,
        )
        gates = FeatureGates(app)
        state = app.extensions["feature_gates"]
        with app.app_context():
        """
    )
    script += textwrap.indent(textwrap.dedent(body), "    ")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_a_process_that_exits_normally_writes_what_it_tracked(feature_gates_database_url):
    # The first part opens the pool, so the exit flush goes through it.
    run_app_script(
        feature_gates_database_url,
        """
        for n in range(100):
            gates.track(n % 10, "exports")
        gates.flush(timeout=60)
        for n in range(150):
            gates.track(n % 10, "exports")
        gates.track(99, "imports", 7)
        assert gates.tracking_stats().pending == 157
        """,
    )
    expected = {(n, "exports"): 25 for n in range(10)}
    expected[(99, "imports")] = 7
    assert totals(feature_gates_database_url) == expected


def test_the_exit_flush_works_without_an_opened_pool(feature_gates_database_url):
    # Python 3.12 refuses new threads at exit, which a pool opened then would start.
    run_app_script(
        feature_gates_database_url,
        """
        gates.track(1, "exports", 5)
        assert not state.engine.storage.pool.opened
        """,
    )
    assert totals(feature_gates_database_url) == {(1, "exports"): 5}


def fork():
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads; gunicorn does it.
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def test_a_forked_child_tracks_on_its_own(feature_gates_database_url):
    tracker = tracker_for(feature_gates_database_url, flush_interval=0.05)
    try:
        tracker.track(1, "parent_feature", 5)
        tracker.flush(timeout=30)  # the parent has a pool and a writer thread now
        tracker.track(1, "parent_feature", 2)  # pending when the child is forked
        read_end, write_end = os.pipe()
        pid = fork()
        if pid == 0:  # the child: report through the pipe, never return into pytest
            code = 1
            try:
                os.close(read_end)
                stats = tracker.stats()
                assert (stats.pending, stats.tracked) == (0, 0), stats
                tracker.track(2, "child_feature", 3)
                # Its own writer thread writes it, through its own pool.
                deadline = time.monotonic() + 60
                while tracker.stats().written < 3:
                    assert time.monotonic() < deadline, "the child's writer did not write"
                    time.sleep(0.02)
                assert tracker._thread is not None and tracker._thread.is_alive()
                tracker.close(timeout=30)
                tracker.storage.close()
                os.write(write_end, b"ok")
                code = 0
            except BaseException as exc:
                os.write(write_end, repr(exc).encode())
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            report = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert report == b"ok" and os.waitstatus_to_exitcode(status) == 0
        tracker.flush(timeout=30)
    finally:
        tracker.close(timeout=30)
        tracker.storage.close()
    # The parent's pending 2 were written once, by the parent.
    assert totals(feature_gates_database_url) == {
        (1, "parent_feature"): 7,
        (2, "child_feature"): 3,
    }
