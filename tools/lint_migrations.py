"""Lints the migration files: squawk over each file as the runner runs it, and a
check of our own for the DDL squawk cannot see.

    .venv/bin/python tools/lint_migrations.py          # run by `make lint`

squawk (PyPI squawk-cli) reads .squawk.toml, the rules accepted everywhere. This
tool adds what one config file cannot say: a file the runner wraps in one
transaction is linted as one (``--assume-in-transaction``: an index on a table the
same transaction creates blocks no one), a ``-- feature-gates: no-transaction``
file is linted statement by statement; a rollback file may drop what its
migration made (``ROLLBACK_RULES``); and a landed migration keeps the findings
``ACCEPTED`` names, each with why it is safe (landed files are frozen).

squawk does not look inside DO blocks, function bodies or ``EXECUTE`` strings.
Migrations written after the rule (past ``LANDED``) may not hide there DDL that
has a plain form on PostgreSQL 14+ (``CREATE OR REPLACE TRIGGER``, ``ADD COLUMN IF
NOT EXISTS``, ``CREATE INDEX CONCURRENTLY IF NOT EXISTS``...), nor, even when
built at run time, DDL that takes a long lock (a plain ``CREATE INDEX``, ``SET NOT
NULL``, a constraint that scans under ACCESS EXCLUSIVE, a column type change):
see "Writing a migration" in docs/migrations.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from feature_gates.migrate.sources import directives
from feature_gates.migrate.sqltext import split_statements

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".squawk.toml"

#: The migration folders, by the set name the runner gives them.
FOLDERS = {
    "core": ROOT / "migrations" / "core",
    "counters": ROOT / "migrations" / "counters",
    "sentinel": ROOT / "examples" / "sentinel" / "migrations",
}

#: The last version of each set written before the rule on hidden DDL; those
#: files are frozen (the runner refuses an edited one). Later ones follow it.
LANDED = {"core": 8, "counters": 3, "sentinel": 1}

#: Rules a rollback file may break: removing what its migration made is its job.
#: `rollback` prints what each one removes and the data lost, and asks first.
ROLLBACK_RULES = {
    "ban-drop-table": "a rollback drops the tables its migration created",
    "ban-drop-function": "a rollback drops the functions its migration created",
    "ban-drop-domain": "core/0001's rollback drops the user id domain it created",
    "ban-drop-view": "core/0006's rollback drops the summary view it created",
    "ban-drop-column": "a rollback drops the columns its migration added",
    "ban-drop-constraint": "a rollback drops the constraints its migration added",
}

#: Our own check's name for DDL hidden from squawk, as ACCEPTED names it.
HIDDEN_DDL = "hidden-ddl"

#: Findings squawk (or the hidden DDL check) makes in a migration file, and why
#: each is safe there. Landed files are frozen: they cannot be changed to please
#: the linter. A new file gets an entry only when the plain form cannot say it.
ACCEPTED = {
    "core/0006_feature_usage_summary.up.sql": {
        "require-concurrent-index-creation": (
            "the unique index is built on the materialized view the same transaction "
            "creates: no one can read or refresh the view before the index exists"
        ),
    },
    "core/0020_feature_usage_counted_key.up.sql": {
        "prefer-robust-stmts": (
            "VALIDATE CONSTRAINT can run twice as it is, in a transaction of its own "
            "(squawk does not count it as repeatable)"
        ),
    },
    "core/0022_feature_usage_counted_key_swap.up.sql": {
        "ban-drop-constraint": (
            "the archive's old unique key is dropped after the counted key replacing it was "
            "built (0020); no client names the constraint"
        ),
        HIDDEN_DDL: (
            "the idempotency table's primary key is replaced only while it is still the old "
            "one (a rerun must not drop the new one), and an adopted table's own unique keys "
            "are named by the catalog: no plain form says either"
        ),
    },
    "core/0022_feature_usage_counted_key_swap.down.sql": {
        HIDDEN_DDL: (
            "the old primary key and an adopted table's own keys are put back only while "
            "they are absent, from definitions read from the catalog: no plain form says it"
        ),
    },
    "core/0023_feature_usage_summary_next.up.sql": {
        "ban-drop-view": "it drops only feature_usage_summary_next, left by an earlier run",
        "require-concurrent-index-creation": (
            "the unique index is built on the materialized view the same transaction "
            "creates: no one can read or refresh the view before the index exists"
        ),
    },
    "core/0023_feature_usage_summary_next.down.sql": {
        "renaming-object": (
            "the swap of the summary views in one transaction: the name readers use stays"
        ),
    },
    "core/0024_feature_usage_summary_swap.up.sql": {
        "ban-drop-view": (
            "the old summary view goes in the same transaction as the new one takes its name"
        ),
        "renaming-object": (
            "the swap of the summary views in one transaction: the name readers use stays"
        ),
    },
    "core/0024_feature_usage_summary_swap.down.sql": {
        "require-concurrent-index-creation": (
            "the unique index is built on the materialized view the same transaction "
            "creates: no one can read or refresh the view before the index exists"
        ),
    },
    "core/0043_feature_usage_ledger_uses.up.sql": {
        "ban-drop-constraint": (
            "the ledger's check of kinds is replaced at once by a wider one (NOT VALID, "
            "validated by 0045): every row the old rule allowed, the new one allows"
        ),
    },
    "core/0046_feature_usage_reset_draws.down.sql": {
        "renaming-object": (
            "the name is dropped and the old body renamed back to it in the same "
            "transaction: no caller sees it missing"
        ),
    },
    "sentinel/0002_organisations.up.sql": {
        "prefer-robust-stmts": (
            "VALIDATE CONSTRAINT can run twice as it is, in a transaction of its own "
            "(squawk does not count it as repeatable)"
        ),
    },
    "counters/0001_counter_columns.up.sql": {
        "prefer-robust-stmts": (
            "ADD COLUMN IF NOT EXISTS with ALTER COLUMN ... SET DEFAULT 0 can run twice "
            "(squawk does not count SET DEFAULT as repeatable)"
        ),
    },
}

#: Findings squawk makes in the counter sets `feature-gates counter add` writes
#: (feature_gates/migrate/counter_sql/), and why each is safe there. The tests
#: lint generated sets with these accepted; docs/counters.md tells an
#: application that lints its own folder the same.
GENERATED_ACCEPTED = {
    "prefer-robust-stmts": (
        "ALTER COLUMN ... SET DEFAULT 0 and ALTER COLUMN ... SET NOT NULL can run twice as "
        "they are (squawk does not count them as repeatable)"
    ),
    "ban-drop-constraint": (
        "the one constraint dropped is the set's own CHECK (column IS NOT NULL), added NOT "
        "VALID and validated just before so that SET NOT NULL reads the catalog instead of "
        "scanning the table under ACCESS EXCLUSIVE"
    ),
}

_FILE_NAME = re.compile(r"^(?P<version>\d+)_[a-z0-9_]+\.(?:up|down)\.sql$")


@dataclass(frozen=True)
class MigrationFile:
    set_name: str
    path: Path

    @property
    def key(self) -> str:
        return f"{self.set_name}/{self.path.name}"

    @property
    def shown(self) -> str:
        """The path as messages show it: from the project root when inside it."""
        path = self.path.resolve()
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)

    @property
    def version(self) -> int:
        match = _FILE_NAME.match(self.path.name)
        assert match is not None
        return int(match["version"])

    @property
    def rollback(self) -> bool:
        return self.path.name.endswith(".down.sql")

    @property
    def transactional(self) -> bool:
        return "no-transaction" not in directives(self.path.read_text(encoding="utf-8"))

    @property
    def landed(self) -> bool:
        return self.version <= LANDED.get(self.set_name, 0)


def migration_files(folders: dict[str, Path] | None = None) -> list[MigrationFile]:
    """Every up and down file of the folders (``FOLDERS`` by default), by set."""
    found = []
    for set_name, folder in (folders or FOLDERS).items():
        for path in sorted(folder.iterdir()):
            if _FILE_NAME.match(path.name):
                found.append(MigrationFile(set_name, path))
    return found


# -- squawk ----------------------------------------------------------------------------


def squawk_executable() -> str:
    """squawk of this virtualenv (the dev extra), else the one on PATH."""
    here = Path(sys.executable).parent / "squawk"
    found = str(here) if here.is_file() else shutil.which("squawk")
    if found is None:
        raise SystemExit(
            "lint_migrations: squawk not found: install the dev extra "
            "(pip install -e '.[dev]', which `make` does)"
        )
    return found


def config_excluded_rules() -> list[str]:
    with open(CONFIG, "rb") as config:
        rules: list[str] = tomllib.load(config).get("excluded_rules", [])
    return rules


def squawk_command(*, in_transaction: bool, also_excluded: tuple[str, ...] = ()) -> list[str]:
    """squawk with the project's config; ``also_excluded`` adds to its rules.

    squawk's ``--exclude`` replaces the config's list instead of adding to it, so
    the config's rules are passed again with the others.
    """
    excluded = sorted({*config_excluded_rules(), *also_excluded})
    return [
        squawk_executable(),
        "--config",
        str(CONFIG),
        f"--exclude={','.join(excluded)}",
        "--assume-in-transaction" if in_transaction else "--no-assume-in-transaction",
    ]


def accepted_rules(migration: MigrationFile) -> tuple[str, ...]:
    """The squawk rules accepted in ``migration`` beyond the config's."""
    rules = set(ACCEPTED.get(migration.key, {})) - {HIDDEN_DDL}
    if migration.rollback:
        rules.update(ROLLBACK_RULES)
    return tuple(sorted(rules))


def run_squawk(files: list[MigrationFile]) -> int:
    """squawk over ``files``, grouped by how each is linted; the worst exit status."""
    groups: dict[tuple[bool, tuple[str, ...]], list[MigrationFile]] = {}
    for migration in files:
        key = (migration.transactional, accepted_rules(migration))
        groups.setdefault(key, []).append(migration)
    status = 0
    for (in_transaction, also_excluded), group in sorted(groups.items()):
        command = squawk_command(in_transaction=in_transaction, also_excluded=also_excluded)
        paths = [m.shown for m in group]
        done = subprocess.run([*command, "--reporter=gcc", *paths], cwd=ROOT, check=False)
        status = max(status, done.returncode)
    return status


# -- DDL squawk cannot see -------------------------------------------------------------


@dataclass(frozen=True)
class HiddenDDL:
    """A DDL statement inside a DO block, a function body or an EXECUTE string."""

    line: int
    statement: str
    advice: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.statement[:70]}: {self.advice}"


_BODY_HOLDER = re.compile(r"^(DO|CREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE))\b", re.IGNORECASE)
_DOLLAR_QUOTE = re.compile(r"(\$[A-Za-z_]\w*\$|\$\$)(.*?)\1", re.DOTALL)
_EXECUTE = re.compile(
    r"\bEXECUTE\s+(?:format\s*\(\s*)?(?:'((?:[^']|'')*)'|(\$[A-Za-z_]?\w*\$)(.*?)\2)",
    re.IGNORECASE | re.DOTALL,
)
_INLINE_DDL = re.compile(r"\b(CREATE|ALTER|DROP|REINDEX)\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"%[IsL]|\|\|")
_TEMPORARY = re.compile(r"^CREATE (GLOBAL |LOCAL )?(TEMP|TEMPORARY) ")

# Each: a statement pattern (upper case, one space between words), and the advice.
_LONG_LOCKS = [
    (
        re.compile(r"^CREATE (UNIQUE )?INDEX (?!CONCURRENTLY)"),
        "a plain CREATE INDEX blocks writes while it builds: write CREATE INDEX "
        "CONCURRENTLY IF NOT EXISTS, on its own, in a no-transaction file",
    ),
    (
        re.compile(r"^ALTER TABLE .*\bSET NOT NULL\b"),
        "SET NOT NULL scans the table under ACCESS EXCLUSIVE unless a validated CHECK "
        "(col IS NOT NULL) exists: write the NOT VALID check, VALIDATE CONSTRAINT and "
        "SET NOT NULL as plain statements, where squawk sees them",
    ),
    (
        re.compile(r"^ALTER TABLE .*\bADD (CONSTRAINT \S+ )?(CHECK|FOREIGN KEY)\b(?!.*NOT VALID)"),
        "a CHECK or FOREIGN KEY added without NOT VALID scans the table under a lock "
        "that blocks writes: add it NOT VALID, then VALIDATE CONSTRAINT",
    ),
    (
        re.compile(
            r"^ALTER TABLE .*\bADD (CONSTRAINT \S+ )?(UNIQUE|PRIMARY KEY)\b(?! USING INDEX)"
        ),
        "a UNIQUE or PRIMARY KEY constraint builds its index under ACCESS EXCLUSIVE: "
        "build the index CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX",
    ),
    (
        re.compile(r"^ALTER TABLE .*\bALTER (COLUMN )?\S+ (SET DATA )?TYPE\b"),
        "a column type change may rewrite the table under ACCESS EXCLUSIVE: write it as "
        "a plain statement, where squawk sees it, or add a column and backfill it",
    ),
]
_STATIC_FORMS = [
    (
        re.compile(r"^CREATE (OR REPLACE )?(CONSTRAINT )?TRIGGER\b"),
        "write CREATE OR REPLACE TRIGGER (PostgreSQL 14+) as a plain statement",
    ),
    (
        re.compile(r"^CREATE (UNIQUE )?INDEX\b"),
        "write CREATE INDEX CONCURRENTLY IF NOT EXISTS as a plain statement",
    ),
    (
        re.compile(r"^CREATE (TABLE|SEQUENCE|SCHEMA|EXTENSION|MATERIALIZED VIEW)\b"),
        "write CREATE ... IF NOT EXISTS as a plain statement",
    ),
    (
        re.compile(r"^CREATE (OR REPLACE )?(VIEW|FUNCTION|PROCEDURE)\b"),
        "write CREATE OR REPLACE as a plain statement",
    ),
    (re.compile(r"^DROP\b"), "write DROP ... IF EXISTS as a plain statement"),
    (re.compile(r"^REINDEX\b"), "write REINDEX ... CONCURRENTLY as a plain statement"),
    (
        re.compile(
            r"^ALTER TABLE .*\b(ADD COLUMN|DROP COLUMN|DROP CONSTRAINT|SET DEFAULT|DROP DEFAULT"
            r"|DROP NOT NULL|VALIDATE CONSTRAINT|ENABLE TRIGGER|DISABLE TRIGGER)\b"
        ),
        "write it as a plain ALTER TABLE: ADD COLUMN IF NOT EXISTS, DROP ... IF EXISTS; "
        "SET DEFAULT and VALIDATE CONSTRAINT can run twice as they are",
    ),
]


def _blank(text: str, pattern: re.Pattern[str]) -> str:
    """``text`` with the matches of ``pattern`` turned to spaces (offsets kept)."""
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRING = re.compile(r"'(?:[^']|'')*'")


def _problem(statement: str) -> str | None:
    """Why ``statement`` may not hide from squawk, or None when it may."""
    text = re.sub(r"\s+", " ", statement).strip().upper()
    if _TEMPORARY.match(text) or " PG_TEMP." in text:
        return None  # a function's scratch table: no application table is locked
    for pattern, advice in _LONG_LOCKS:
        if pattern.search(text):
            return advice
    if _PLACEHOLDER.search(statement):
        return None  # built at run time: no plain form to write
    for pattern, advice in _STATIC_FORMS:
        if pattern.search(text):
            return advice
    return None


def _body_statements(body: str) -> list[tuple[int, str]]:
    """The DDL statements of a plpgsql body (offsets into it): written inline,
    and the string literal of each EXECUTE."""
    found = []
    for execute in _EXECUTE.finditer(body):
        quoted = execute.group(1)
        found.append(
            (execute.start(), quoted.replace("''", "'") if quoted is not None else execute[3])
        )
    code = _blank(_blank(_blank(body, _COMMENT), _STRING), _DOLLAR_QUOTE)
    position = 0
    while match := _INLINE_DDL.search(code, position):
        end = code.find(";", match.start())
        end = len(code) if end == -1 else end
        found.append((match.start(), code[match.start() : end]))
        position = end + 1  # an ALTER TABLE's DROP COLUMN is not a statement of its own
    return found


def hidden_ddl(sql: str) -> list[HiddenDDL]:
    """DDL inside DO blocks, function bodies and EXECUTE strings that may not be there."""
    problems = []
    position = 0
    for statement in split_statements(sql):
        start = sql.index(statement, position)
        position = start + len(statement)
        code = _blank(statement, _COMMENT).lstrip()
        if not _BODY_HOLDER.match(code):
            continue
        for body in _DOLLAR_QUOTE.finditer(statement):
            for at, ddl in _body_statements(body.group(2)):
                advice = _problem(ddl)
                if advice is not None:
                    line = sql.count("\n", 0, start + body.start(2) + at) + 1
                    problems.append(HiddenDDL(line, re.sub(r"\s+", " ", ddl).strip(), advice))
    return problems


def check_hidden_ddl(files: list[MigrationFile]) -> list[str]:
    """One message per hidden DDL statement in the files written after ``LANDED``."""
    messages = []
    for migration in files:
        if migration.landed:
            continue
        if HIDDEN_DDL in ACCEPTED.get(migration.key, {}):
            continue
        for problem in hidden_ddl(migration.path.read_text(encoding="utf-8")):
            messages.append(f"{migration.shown}: {problem}")
    return messages


def main() -> int:
    files = migration_files()
    status = run_squawk(files)
    messages = check_hidden_ddl(files)
    for message in messages:
        print(message)
    if messages:
        print(
            "lint_migrations: squawk cannot see DDL inside DO blocks, function bodies or "
            "EXECUTE strings; see 'Writing a migration' in docs/migrations.md"
        )
    new = sum(not m.landed for m in files)
    verdict = "problems found" if status or messages else "nothing found"
    print(f"lint_migrations: {len(files)} files ({new} past the landed ones): {verdict}")
    return 1 if status or messages else 0


if __name__ == "__main__":
    sys.exit(main())
