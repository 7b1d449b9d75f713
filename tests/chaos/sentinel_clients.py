"""Clients of the Sentinel API for the soak: each one a user's app doing a random
mix of calls, counting what succeeded and checking each answer on the spot.

A client only touches the threads and itineraries it created itself, so it
knows their state exactly: how many messages a thread holds, how many
destinations an itinerary has and which alert settings it keeps. From that it
knows the cost of every call (a PATCH that grows an itinerary from 3 to 5
destinations costs 2) and whether a stock limit had to refuse it. Several
clients share a user, so the user's metered counts are raced for.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from chaos_support import Http
from chaos_support import Reply

#: Relative weights of the calls a client makes.
MIX = {
    "post_messages": 30,
    "update_itinerary": 16,
    "add_destinations": 12,
    "create_itinerary": 5,
    "export": 8,
    "read_usage": 8,
    "invite": 5,
    "route_analysis": 4,
    "intel": 4,
    "save_search": 4,
    "delete_search": 2,
}

PROBLEM = "application/problem+json"
THREAD_MESSAGE_LIMIT = 500


class Unavailable(Exception):
    """The app answered 503: its database is away, nothing was done."""


@dataclass
class Tally:
    """What the clients saw, added up."""

    #: (user_id, feature) -> uses of successful calls.
    used: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: (call, status) -> answers.
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: Answers that were wrong, described.
    wrong: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def merge(self, other: Tally) -> None:
        with self.lock:
            self.used.update(other.used)
            self.answers.update(other.answers)
            self.wrong.extend(other.wrong)

    @property
    def requests(self) -> int:
        return sum(self.answers.values())


@dataclass
class User:
    id: int
    plan: str
    token: str
    #: The plan's limits, by feature (None: unlimited; 0: not included).
    limits: dict[str, int | None]
    #: The features whose limit counts uses per month.
    metered: frozenset[str]


@dataclass
class Itinerary:
    id: int
    destinations: int
    alerts: dict[str, Any]


class SoakClient:
    def __init__(
        self, http: Http, user: User, seed: int, deadline: float, *, outages: bool = False
    ) -> None:
        self.http = http
        #: Whether a 503 problem+json is a right answer (the database is away).
        self.outages = outages
        self.user = user
        self.rng = random.Random(seed)
        self.name = f"c{seed}"
        self.deadline = deadline
        self.tally = Tally()
        self.thread: tuple[int, int] | None = None  # (id, messages)
        self.itineraries: list[Itinerary] = []
        self.searches: list[int] = []
        self.invites = 0

    # -- the loop ---------------------------------------------------------------

    def run(self) -> None:
        calls = list(MIX)
        weights = [MIX[c] for c in calls]
        try:
            while time.monotonic() < self.deadline:
                call = self.rng.choices(calls, weights)[0]
                try:
                    getattr(self, call)()
                except Unavailable:
                    time.sleep(0.05)
        except Exception as exc:  # reported with the tally: a client must not die silently
            self.tally.wrong.append(f"{self.name}: {type(exc).__name__}: {exc}")

    def call(self, name: str, method: str, path: str, json: Any = None) -> Reply:
        reply = self.http.call(method, path, token=self.user.token, json=json)
        self.tally.answers[(name, reply.status)] += 1
        if reply.status == 503 and self.outages and reply.mimetype == PROBLEM:
            raise Unavailable
        if reply.status >= 500:
            self.wrong.append(f"{name} {method} {path}: {reply.status} {reply.body[:300]!r}")
        elif reply.status >= 400 and reply.mimetype != PROBLEM:
            self.wrong.append(f"{name} {method} {path}: {reply.status} is {reply.mimetype}")
        return reply

    @property
    def wrong(self) -> list[str]:
        return self.tally.wrong

    def count(self, feature: str, uses: int = 1) -> None:
        if uses:
            self.tally.used[(self.user.id, feature)] += uses

    def expect(self, name: str, reply: Reply, *statuses: int) -> None:
        if reply.status not in statuses:
            self.wrong.append(f"{name}: {reply.status}, expected one of {statuses}")

    def limit(self, feature: str) -> int | None:
        return self.user.limits[feature]

    def included(self, feature: str) -> bool:
        return self.limit(feature) != 0

    # -- threads ----------------------------------------------------------------

    def new_thread(self) -> None:
        reply = self.call("create_thread", "POST", "/threads", {"title": f"{self.name} thread"})
        self.expect("create_thread", reply, 201)
        self.thread = (reply.json()["id"], 0)

    def post_messages(self) -> None:
        if self.thread is None:
            self.new_thread()
        assert self.thread is not None
        thread_id, held = self.thread
        n = self.rng.randint(1, 3)
        messages = [
            {"content": f"{self.name} says {i}", "role": self.rng.choice(["user", "assistant"])}
            for i in range(n)
        ]
        reply = self.call(
            "post_messages", "POST", f"/threads/{thread_id}/messages", {"messages": messages}
        )
        if reply.status == 201:
            self.count("chat_messages_monthly", n)
            self.thread = (thread_id, held + n)
            if reply.json()["thread"]["messages"] != held + n:
                self.wrong.append(f"thread {thread_id}: {reply.json()['thread']} after {held + n}")
            if held + n > THREAD_MESSAGE_LIMIT:
                self.wrong.append(f"thread {thread_id} took {held + n} messages")
        elif reply.status == 409:
            if held + n <= THREAD_MESSAGE_LIMIT:
                self.wrong.append(f"thread {thread_id} full at {held} + {n}")
            self.thread = None
        else:
            self.expect("post_messages", reply, 429)
            if self.limit("chat_messages_monthly") is None:
                self.wrong.append("an unlimited plan was refused a message")

    # -- itineraries -------------------------------------------------------------

    def waypoints(self, n: int) -> list[dict[str, Any]]:
        places = [("Nairobi", "KE", -1.29, 36.82), ("Lima", "PE", -12.05, -77.04),
                  ("Oslo", "NO", 59.91, 10.75), ("Cairo", "EG", 30.04, 31.24)]  # fmt: skip
        chosen = [self.rng.choice(places) for _ in range(n)]
        return [{"name": p, "country": c, "lat": la, "lon": lo} for p, c, la, lo in chosen]

    def alerts_patch(self) -> dict[str, Any]:
        keys = self.rng.sample(["min_level", "email", "sms", "note"], self.rng.randint(1, 3))
        values = {
            "min_level": lambda: self.rng.randint(1, 4),
            "email": lambda: self.rng.random() < 0.5,
            "sms": lambda: self.rng.random() < 0.5,
            "note": lambda: f"{self.name}-{self.rng.randint(0, 99)}",
        }
        return {key: values[key]() for key in keys}

    def fits(self, count: int) -> bool:
        limit = self.limit("itinerary_destinations")
        return limit is None or count <= limit

    def check_itinerary(self, name: str, body: dict[str, Any], itinerary: Itinerary) -> None:
        shown = (body["destinations_count"], len(body["data"]["waypoints"]), body["alerts_config"])
        if shown != (itinerary.destinations, itinerary.destinations, itinerary.alerts):
            self.wrong.append(f"{name} {itinerary}: the app shows {shown}")

    def own_itinerary(self) -> Itinerary:
        if not self.itineraries:
            self.create_itinerary()
        if not self.itineraries:  # refused: a new one with no destinations always fits
            self.create_itinerary(0)
        return self.rng.choice(self.itineraries)

    def create_itinerary(self, n: int | None = None) -> None:
        n = self.rng.randint(0, 3) if n is None else n
        alerts = self.alerts_patch() if self.rng.random() < 0.5 else None
        body: dict[str, Any] = {
            "data": {"title": f"{self.name} trip", "waypoints": self.waypoints(n)}
        }
        if alerts is not None:
            body["alerts_config"] = alerts
        reply = self.call("create_itinerary", "POST", "/itineraries", body)
        if reply.status == 201:
            if not self.fits(n):
                self.wrong.append(f"an itinerary of {n} destinations was created over the limit")
            self.count("itinerary_destinations", n)
            itinerary = Itinerary(reply.json()["id"], n, alerts or {})
            self.itineraries.append(itinerary)
            self.check_itinerary("create_itinerary", reply.json(), itinerary)
        else:
            self.expect("create_itinerary", reply, 429)
            if self.fits(n):
                self.wrong.append(f"an itinerary of {n} destinations was refused")

    def add_destinations(self) -> None:
        itinerary = self.own_itinerary()
        n = self.rng.randint(1, 3)
        reply = self.call(
            "add_destinations",
            "POST",
            f"/itineraries/{itinerary.id}/destinations",
            {"waypoints": self.waypoints(n)},
        )
        after = itinerary.destinations + n
        if reply.status == 201:
            if not self.fits(after):
                self.wrong.append(f"itinerary {itinerary.id} grew to {after}, over the limit")
            self.count("itinerary_destinations", n)
            itinerary.destinations = after
            self.check_itinerary("add_destinations", reply.json(), itinerary)
        else:
            self.expect("add_destinations", reply, 429)
            if self.fits(after):
                self.wrong.append(f"itinerary {itinerary.id} refused {n} more at {after - n}")

    def update_itinerary(self) -> None:
        itinerary = self.own_itinerary()
        body: dict[str, Any] = {}
        new_count = itinerary.destinations
        if self.rng.random() < 0.6:
            new_count = self.rng.randint(0, itinerary.destinations + 3)
            body["data"] = {"title": f"{self.name} trip", "waypoints": self.waypoints(new_count)}
        if "data" not in body or self.rng.random() < 0.5:
            body["alerts_config"] = self.alerts_patch()
        reply = self.call("update_itinerary", "PATCH", f"/itineraries/{itinerary.id}", body)
        added = max(0, new_count - itinerary.destinations)
        if reply.status == 200:
            if added and not self.fits(new_count):
                self.wrong.append(f"itinerary {itinerary.id} set to {new_count}, over the limit")
            self.count("itinerary_destinations", added)
            itinerary.destinations = new_count
            # alerts_config is merged key by key: keys the patch does not name stay.
            itinerary.alerts = {**itinerary.alerts, **body.get("alerts_config", {})}
            self.check_itinerary("update_itinerary", reply.json(), itinerary)
        else:
            self.expect("update_itinerary", reply, 429)
            if self.fits(new_count):
                self.wrong.append(f"itinerary {itinerary.id} refused {new_count} destinations")

    def route_analysis(self) -> None:
        itinerary = self.own_itinerary()
        reply = self.call(
            "route_analysis", "POST", f"/itineraries/{itinerary.id}/route-analysis", {}
        )
        if reply.status == 200:
            self.count("route_analysis")
        else:
            self.expect("route_analysis", reply, 429)

    # -- the rest -----------------------------------------------------------------

    def export(self) -> None:
        if self.rng.random() < 0.5 and self.thread is not None:
            path = f"/threads/{self.thread[0]}/export.pdf"
        else:
            path = f"/itineraries/{self.own_itinerary().id}/export.pdf"
        reply = self.call("export", "GET", path)
        if self.included("can_export_pdf"):
            self.expect("export", reply, 200)
            if reply.status == 200:
                self.count("can_export_pdf")
                if not reply.body.startswith(b"%PDF-"):
                    self.wrong.append(f"{path} is not a PDF")
        else:
            self.expect("export", reply, 403)

    def intel(self) -> None:
        reply = self.call("intel", "GET", "/intel")
        if self.user.plan == "free":
            self.expect("intel", reply, 403)
        else:
            self.expect("intel", reply, 200)
            if reply.status == 200:
                self.count("analyst_intelligence")

    def invite(self) -> None:
        self.invites += 1
        email = f"{self.name}-{self.invites}@team.example"
        reply = self.call("invite", "POST", "/team/invites", {"email": email})
        if reply.status == 201:
            self.count("team_invite")
        elif self.included("team_invite"):
            self.expect("invite", reply, 429)
        else:
            self.expect("invite", reply, 403)

    def save_search(self) -> None:
        body = {"name": f"{self.name} search", "query": "country:KE level>=2"}
        reply = self.call("save_search", "POST", "/searches", body)
        if reply.status == 201:
            self.count("saved_searches")
            self.searches.append(reply.json()["id"])
        else:
            # Another client of the same user may hold the last free place.
            self.expect("save_search", reply, 429)

    def delete_search(self) -> None:
        if not self.searches:
            return
        search_id = self.searches.pop(self.rng.randrange(len(self.searches)))
        reply = self.call("delete_search", "DELETE", f"/searches/{search_id}")
        self.expect("delete_search", reply, 204)

    def read_usage(self) -> None:
        path = "/me" if self.rng.random() < 0.5 else "/me/usage?format=json"
        reply = self.call("read_usage", "GET", path)
        self.expect("read_usage", reply, 200)
        if reply.status != 200:
            return
        body = reply.json()
        if path == "/me":
            rows = [dict(f, feature=name) for name, f in body["features"].items()]
        else:
            rows = body["features"]
        for row in rows:
            limit, used = row["limit"], row["used"]
            # Failing open (the database away) may grant past a limit, by design.
            over = None not in (limit, used) and used > limit
            if row["feature"] in self.user.metered and over and not self.outages:
                self.wrong.append(f"{path} shows {row['feature']} at {used} of {limit}")
