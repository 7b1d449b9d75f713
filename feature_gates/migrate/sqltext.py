"""Splitting a SQL file into statements, for files that run outside a transaction.

PostgreSQL runs a multi-statement query string as one implicit transaction, and
``CREATE INDEX CONCURRENTLY`` refuses to run in one, so such files are sent one
statement at a time. The splitter knows quotes, dollar quotes and comments.
"""

from __future__ import annotations

import re

__all__ = ["leading_comments", "split_statements"]

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(sql: str) -> list[str]:
    """Return the statements of ``sql`` without their trailing semicolons.

    Comment-only stretches are dropped; comments inside a statement are kept.
    """
    statements: list[str] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif ch == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif ch in ("'", '"'):
            i = _skip_quoted(sql, i, ch)
        elif ch == "$":
            match = _DOLLAR_TAG.match(sql, i)
            if match:
                end = sql.find(match.group(0), match.end())
                if end == -1:
                    raise ValueError(f"unterminated dollar quote {match.group(0)}")
                i = end + len(match.group(0))
            else:
                i += 1
        elif ch == ";":
            _append(statements, sql[start:i])
            i += 1
            start = i
        else:
            i += 1
    _append(statements, sql[start:])
    return statements


def _append(statements: list[str], text: str) -> None:
    if _has_code(text):
        statements.append(text.strip())


def _has_code(text: str) -> bool:
    stripped = re.sub(r"--[^\n]*", "", text)
    stripped = re.sub(r"/\*.*?\*/", "", stripped, flags=re.DOTALL)
    return bool(stripped.strip())


def _skip_quoted(sql: str, i: int, quote: str) -> int:
    i += 1
    while i < len(sql):
        if sql[i] == quote:
            if sql.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    raise ValueError(f"unterminated {quote} quote")


def _skip_block_comment(sql: str, i: int) -> int:
    depth = 0
    while i < len(sql):
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise ValueError("unterminated /* comment")


def leading_comments(sql: str) -> str:
    """The comment lines (and blank lines) at the start of ``sql``."""
    end = 0
    for line in sql.splitlines(keepends=True):
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            break
        end += len(line)
    return sql[:end]
