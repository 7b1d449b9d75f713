"""An HTML application gated by plan, run with its own plain pytest suite: the pattern
of docs/tutorial-flaskr.md (a form view under login_required, a flash on denial, the
4th post of a free user refused, create_app() without a database URL)."""

from __future__ import annotations

import shutil
from pathlib import Path

APP = Path(__file__).parent / "htmlapp"


def test_the_blogs_own_suite_passes_without_pytest_flask(
    pytester, monkeypatch, feature_gates_server_url
):
    shutil.copytree(APP, pytester.path, dirs_exist_ok=True)
    # Its databases come from this session's server.
    monkeypatch.setenv("FEATURE_GATES_TEST_DATABASE_URL", feature_gates_server_url)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = pytester.runpytest_subprocess(
        "-p", "no:flask", "-p", "no:cacheprovider", "-W", "error", "-v"
    )
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*test_the_fourth_post_of_a_free_user_is_refused PASSED*"])
