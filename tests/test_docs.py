"""The docs stay true to the code: every setting documented, every link alive."""

from __future__ import annotations

import re
from pathlib import Path

from feature_gates.core import Settings

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT_ONLY = {
    "FEATURE_GATES_TEST_DATABASE_URL",
    "FEATURE_GATES_PG_BINDIR",
    "FEATURE_GATES_PG_USER",
}


def known_keys() -> set[str]:
    return set(Settings.keys())


def test_every_setting_is_documented_and_every_documented_key_exists():
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(FEATURE_GATES_[A-Z_]+)` \|", text, re.MULTILINE))
    assert known_keys() - documented == set(), "settings missing from docs/configuration.md"
    assert documented - known_keys() - ENVIRONMENT_ONLY == set(), "documented keys not in code"


def test_keys_named_anywhere_in_the_docs_exist():
    valid = known_keys() | ENVIRONMENT_ONLY
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for key in set(re.findall(r"\bFEATURE_GATES_[A-Z_]*[A-Z]\b", page.read_text())):
            assert key in valid, f"{page.name} names {key}, which is not a setting"


def test_relative_links_point_at_files_that_exist():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
