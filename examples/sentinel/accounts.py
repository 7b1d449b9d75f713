"""Users, their API tokens, team invites and saved searches.

A token is shown once, when it is made; the database keeps only its SHA-256
digest, so a copy of the database holds no usable token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg.rows import class_row

from feature_gates import Subject

from .database import Pool

__all__ = ["Accounts", "HoldingLimitReached", "SavedSearch", "Token", "User", "new_token"]

TOKEN_PREFIX = "sntl_"

SELECT_USER_BY_TOKEN = """
SELECT u.id, u.email, u.name, u.plan, u.is_admin, u.created_at, u.org_id, u.subscribed_at,
       u.timezone
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_sha256 = %s
"""

SELECT_USER = """
SELECT u.id, u.email, u.name, u.plan, u.is_admin, u.created_at, u.org_id, u.subscribed_at,
       u.timezone
FROM users u WHERE u.id = %s
"""

SELECT_USERS = """
SELECT u.id, u.email, u.name, u.plan, u.is_admin, u.created_at, u.org_id, u.subscribed_at,
       u.timezone
FROM users u ORDER BY u.id
"""

#: A user, in an organisation of their own unless they join one: features a plan
#: counts per organisation then count theirs alone.
INSERT_USER = """
WITH own AS (
    INSERT INTO organisations (name)
    SELECT %(email)s WHERE %(org_id)s::bigint IS NULL
    RETURNING id
)
INSERT INTO users (email, name, plan, is_admin, org_id, subscribed_at, timezone)
VALUES (%(email)s, %(name)s, %(plan)s, %(is_admin)s,
        coalesce(%(org_id)s::bigint, (SELECT id FROM own)),
        coalesce(%(subscribed_at)s::timestamptz, now()), %(timezone)s)
RETURNING id, email, name, plan, is_admin, created_at, org_id, subscribed_at, timezone
"""

INSERT_ORGANISATION = "INSERT INTO organisations (name) VALUES (%s) RETURNING id"

COUNT_USERS = "SELECT count(*) FROM users"

# Taken before counting what a user holds: concurrent requests of one user then
# count one after the other, and a limit on how many they hold is never passed.
LOCK_USER = "SELECT 1 FROM users WHERE id = %s FOR UPDATE"

INSERT_TOKEN = """
INSERT INTO api_tokens (user_id, name, token_sha256) VALUES (%s, %s, %s)
RETURNING id, name, created_at
"""

SELECT_TOKENS = "SELECT id, name, created_at FROM api_tokens WHERE user_id = %s ORDER BY id"

COUNT_TOKENS = "SELECT count(*) FROM api_tokens WHERE user_id = %s"

DELETE_TOKEN = "DELETE FROM api_tokens WHERE id = %s AND user_id = %s"

INSERT_INVITE = """
INSERT INTO team_invites (user_id, email) VALUES (%s, %s)
ON CONFLICT (user_id, email) DO NOTHING
RETURNING id, email, created_at
"""

SELECT_INVITES = "SELECT id, email, created_at FROM team_invites WHERE user_id = %s ORDER BY id"

INSERT_SEARCH = """
INSERT INTO saved_searches (user_id, name, query) VALUES (%s, %s, %s)
RETURNING id, name, query, created_at
"""

SELECT_SEARCHES = (
    "SELECT id, name, query, created_at FROM saved_searches WHERE user_id = %s ORDER BY id"
)

COUNT_SEARCHES = "SELECT count(*) FROM saved_searches WHERE user_id = %s"

DELETE_SEARCH = "DELETE FROM saved_searches WHERE id = %s AND user_id = %s"


@dataclass(frozen=True)
class User:
    id: int
    email: str
    name: str
    plan: str
    is_admin: bool
    created_at: datetime
    #: The organisation whose pool the user's team features count in.
    org_id: int | None = None
    #: When the subscription started: anchored features renew on its day.
    subscribed_at: datetime | None = None
    #: The user's IANA time zone: daily limits end at its midnight.
    timezone: str | None = None

    def subject(self) -> Subject:
        """The user as the gates count them: on their plan, in their organisation,
        from their subscription's start (the account's, before one), in their zone."""
        return Subject(
            user_id=self.id,
            plan=self.plan,
            org_id=self.org_id,
            period_anchor=self.subscribed_at or self.created_at,
            timezone=self.timezone,
        )

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "name": self.name, "plan": self.plan}


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class SavedSearch:
    id: int
    name: str
    query: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "query": self.query,
            "created_at": self.created_at.isoformat(),
        }


class HoldingLimitReached(Exception):
    """The user already holds as many of something as their plan allows."""

    def __init__(self, what: str, held: int, limit: int) -> None:
        super().__init__(f"{held} {what} held; the plan allows {limit}")
        self.held = held
        self.limit = limit


def new_token() -> str:
    """A fresh random API token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(24)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Accounts:
    """Reads and writes users and what belongs to them directly."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def _count(self, query: str, user_id: int) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(query, (user_id,)).fetchone()
        return int(row[0]) if row else 0

    # -- users and tokens ---------------------------------------------------------

    def user_for_token(self, token: str) -> User | None:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(User))
            return cur.execute(SELECT_USER_BY_TOKEN, (digest(token),)).fetchone()

    def get_user(self, user_id: int) -> User | None:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(User))
            return cur.execute(SELECT_USER, (user_id,)).fetchone()

    def list_users(self) -> list[User]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(User))
            return cur.execute(SELECT_USERS).fetchall()

    def count_users(self) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(COUNT_USERS).fetchone()
        return int(row[0]) if row else 0

    def create_user(
        self,
        email: str,
        name: str,
        plan: str,
        *,
        is_admin: bool = False,
        org_id: int | None = None,
        subscribed_at: datetime | None = None,
        timezone: str | None = None,
    ) -> User:
        """A new user, in organisation ``org_id`` (else one of their own), subscribed
        at ``subscribed_at`` (else now)."""
        params = {
            "email": email,
            "name": name,
            "plan": plan,
            "is_admin": is_admin,
            "org_id": org_id,
            "subscribed_at": subscribed_at,
            "timezone": timezone,
        }
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(User))
            user = cur.execute(INSERT_USER, params).fetchone()
        assert user is not None
        return user

    def create_organisation(self, name: str) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(INSERT_ORGANISATION, (name,)).fetchone()
        assert row is not None
        return int(row[0])

    @contextmanager
    def _holding(
        self, user_id: int, count_query: str, what: str, limit: int | None
    ) -> Iterator[psycopg.Connection[TupleRow]]:
        """A transaction in which ``user_id`` holds fewer than ``limit`` of something."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(LOCK_USER, (user_id,))
            if limit is not None:
                row = conn.execute(count_query, (user_id,)).fetchone()
                held = int(row[0]) if row else 0
                if held >= limit:
                    raise HoldingLimitReached(what, held, limit)
            yield conn

    def add_token(
        self, user_id: int, name: str, token: str | None = None, *, limit: int | None = None
    ) -> tuple[Token, str]:
        """Store a token for ``user_id`` (a new random one unless given) if they hold
        fewer than ``limit``; returns the stored record and the token, which is never
        readable again."""
        token = token or new_token()
        with self._holding(user_id, COUNT_TOKENS, "tokens", limit) as conn:
            cur = conn.cursor(row_factory=class_row(Token))
            record = cur.execute(INSERT_TOKEN, (user_id, name, digest(token))).fetchone()
        assert record is not None
        return record, token

    def list_tokens(self, user_id: int) -> list[Token]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(Token))
            return cur.execute(SELECT_TOKENS, (user_id,)).fetchall()

    def count_tokens(self, user_id: int) -> int:
        return self._count(COUNT_TOKENS, user_id)

    def delete_token(self, token_id: int, user_id: int) -> bool:
        with self.pool.connection() as conn:
            return conn.execute(DELETE_TOKEN, (token_id, user_id)).rowcount == 1

    # -- team invites ------------------------------------------------------------

    def invite(self, user_id: int, email: str) -> dict[str, Any] | None:
        """Invite ``email`` to ``user_id``'s team; None when already invited."""
        with self.pool.connection() as conn:
            row = conn.execute(INSERT_INVITE, (user_id, email)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "email": row[1], "created_at": row[2].isoformat()}

    def list_invites(self, user_id: int) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            rows = conn.execute(SELECT_INVITES, (user_id,)).fetchall()
        return [{"id": r[0], "email": r[1], "created_at": r[2].isoformat()} for r in rows]

    # -- saved searches ----------------------------------------------------------

    def save_search(
        self, user_id: int, name: str, query: str, *, limit: int | None = None
    ) -> SavedSearch:
        with self._holding(user_id, COUNT_SEARCHES, "saved searches", limit) as conn:
            cur = conn.cursor(row_factory=class_row(SavedSearch))
            search = cur.execute(INSERT_SEARCH, (user_id, name, query)).fetchone()
        assert search is not None
        return search

    def list_searches(self, user_id: int) -> list[SavedSearch]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(SavedSearch))
            return cur.execute(SELECT_SEARCHES, (user_id,)).fetchall()

    def count_searches(self, user_id: int) -> int:
        return self._count(COUNT_SEARCHES, user_id)

    def delete_search(self, search_id: int, user_id: int) -> bool:
        with self.pool.connection() as conn:
            return conn.execute(DELETE_SEARCH, (search_id, user_id)).rowcount == 1
