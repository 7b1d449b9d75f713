"""The thread and itinerary managers against a real PostgreSQL with the counters set."""

from __future__ import annotations

import threading

import pytest

from examples.sentinel.accounts import Accounts
from examples.sentinel.itineraries import DestinationLimitReached
from examples.sentinel.itineraries import ItineraryManager
from examples.sentinel.threads import ThreadFull
from examples.sentinel.threads import ThreadManager
from examples.sentinel.threads import ThreadNotFound


@pytest.fixture
def user_id(pool) -> int:
    return Accounts(pool).create_user("ada@example.com", "Ada", "pro").id


@pytest.fixture
def threads(pool) -> ThreadManager:
    return ThreadManager(pool)


@pytest.fixture
def itineraries(pool) -> ItineraryManager:
    return ItineraryManager(pool)


def counters(db, thread_id: int) -> tuple[int, int, int]:
    row = db.execute(
        "SELECT t.thread_messages_count, t.message_count, "
        "(SELECT count(*) FROM chat_messages m WHERE m.thread_id = t.id) "
        "FROM chat_threads t WHERE t.id = %s",
        (thread_id,),
    ).fetchone()
    return tuple(row)


def test_create_thread_starts_both_counters_at_zero(threads, user_id, db):
    thread = threads.create_thread(user_id, "Lagos trip")
    assert (thread.thread_messages_count, thread.message_count) == (0, 0)
    assert counters(db, thread.id) == (0, 0, 0)


def test_add_messages_moves_both_counters_with_the_rows(threads, user_id, db):
    thread = threads.create_thread(user_id, "Lagos trip")
    updated, added = threads.add_messages(
        thread.id,
        [{"content": "hello"}, {"role": "assistant", "content": "hi"}],
        limit=10,
        user_id=user_id,
    )
    assert [m.content for m in added] == ["hello", "hi"]
    assert [m.role for m in added] == ["user", "assistant"]
    assert updated.thread_messages_count == 2
    assert counters(db, thread.id) == (2, 2, 2)
    threads.add_messages(thread.id, [{"content": "three"}], limit=10, user_id=user_id)
    assert counters(db, thread.id) == (3, 3, 3)


def test_add_messages_past_the_limit_adds_nothing(threads, user_id, db):
    thread = threads.create_thread(user_id, "t")
    threads.add_messages(
        thread.id, [{"content": str(i)} for i in range(4)], limit=5, user_id=user_id
    )
    with pytest.raises(ThreadFull) as denied:
        threads.add_messages(
            thread.id, [{"content": "a"}, {"content": "b"}], limit=5, user_id=user_id
        )
    assert (denied.value.count, denied.value.adding, denied.value.limit) == (4, 2, 5)
    assert counters(db, thread.id) == (4, 4, 4)
    threads.add_messages(thread.id, [{"content": "fits"}], limit=5, user_id=user_id)
    assert counters(db, thread.id) == (5, 5, 5)


def test_the_limit_check_reads_the_counter_not_the_rows(threads, user_id, db):
    thread = threads.create_thread(user_id, "t")
    # A counter says 9 of 10 are used while no message row exists: the check must
    # believe the counter (it never counts rows).
    db.execute(
        "UPDATE chat_threads SET thread_messages_count = 9, message_count = 9 WHERE id = %s",
        (thread.id,),
    )
    with pytest.raises(ThreadFull):
        threads.add_messages(
            thread.id, [{"content": "a"}, {"content": "b"}], limit=10, user_id=user_id
        )


def test_add_messages_to_a_missing_or_anothers_thread_adds_nothing(threads, pool, user_id, db):
    with pytest.raises(ThreadNotFound):
        threads.add_messages(987654, [{"content": "x"}], limit=10, user_id=user_id)
    other = Accounts(pool).create_user("eve@example.com", "Eve", "free").id
    thread = threads.create_thread(user_id, "mine")
    with pytest.raises(ThreadNotFound):
        threads.add_messages(thread.id, [{"content": "x"}], limit=10, user_id=other)
    assert counters(db, thread.id) == (0, 0, 0)


def test_sixteen_concurrent_add_messages_at_a_limit_land_exactly_the_limit(threads, user_id, db):
    thread = threads.create_thread(user_id, "busy")
    limit, callers = 10, 16
    barrier = threading.Barrier(callers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def post(n: int) -> None:
        barrier.wait()
        try:
            threads.add_messages(
                thread.id, [{"content": f"message {n}"}], limit=limit, user_id=user_id
            )
            result = "added"
        except ThreadFull:
            result = "full"
        with lock:
            outcomes.append(result)

    workers = [threading.Thread(target=post, args=(n,)) for n in range(callers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert outcomes.count("added") == limit
    assert outcomes.count("full") == callers - limit
    assert counters(db, thread.id) == (limit, limit, limit)


def test_thread_reads_are_owner_only(threads, pool, user_id):
    other = Accounts(pool).create_user("eve@example.com", "Eve", "free").id
    thread = threads.create_thread(user_id, "mine")
    assert threads.get_thread(thread.id, user_id) is not None
    assert threads.get_thread(thread.id, other) is None
    threads.add_messages(thread.id, [{"content": "secret"}], limit=5, user_id=user_id)
    assert threads.list_messages(thread.id, other) == []
    assert [t.id for t in threads.list_threads(other)] == []


WAYPOINTS = [{"name": "Nairobi", "country": "KE"}, {"name": "Mombasa", "country": "KE"}]


def stored(db, itinerary_id: int) -> tuple[int, int, dict]:
    row = db.execute(
        "SELECT destinations_count, waypoint_count(data), alerts_config "
        "FROM travel_itineraries WHERE id = %s",
        (itinerary_id,),
    ).fetchone()
    return tuple(row)


def test_create_itinerary_counts_the_waypoints(itineraries, user_id, db):
    created = itineraries.create_itinerary(user_id, {"title": "Kenya", "waypoints": WAYPOINTS})
    assert created.destinations_count == 2
    assert stored(db, created.id)[:2] == (2, 2)
    empty = itineraries.create_itinerary(user_id, {"title": "Someday"})
    assert empty.destinations_count == 0


def test_update_itinerary_recounts_when_data_changes(itineraries, user_id, db):
    created = itineraries.create_itinerary(user_id, {"title": "Kenya", "waypoints": WAYPOINTS})
    three = {"title": "Kenya", "waypoints": [*WAYPOINTS, {"name": "Kisumu", "country": "KE"}]}
    updated = itineraries.update_itinerary(created.id, user_id, data=three)
    assert updated is not None and updated.destinations_count == 3
    updated = itineraries.update_itinerary(created.id, user_id, data={"title": "Kenya"})
    assert updated is not None and updated.destinations_count == 0
    assert stored(db, created.id)[:2] == (0, 0)


def test_update_itinerary_merges_alerts_without_losing_keys_or_the_count(itineraries, user_id, db):
    created = itineraries.create_itinerary(
        user_id, {"waypoints": WAYPOINTS}, alerts_config={"email": True, "min_level": 2}
    )
    updated = itineraries.update_itinerary(created.id, user_id, alerts_config={"sms": True})
    assert updated is not None
    assert updated.alerts_config == {"email": True, "min_level": 2, "sms": True}
    assert updated.destinations_count == 2
    updated = itineraries.update_itinerary(created.id, user_id, alerts_config={"min_level": 3})
    assert updated is not None
    assert updated.alerts_config == {"email": True, "min_level": 3, "sms": True}
    assert updated.data == {"waypoints": WAYPOINTS}
    assert stored(db, created.id) == (2, 2, {"email": True, "min_level": 3, "sms": True})


def test_update_itinerary_of_another_user_changes_nothing(itineraries, pool, user_id, db):
    other = Accounts(pool).create_user("eve@example.com", "Eve", "free").id
    created = itineraries.create_itinerary(user_id, {"waypoints": WAYPOINTS})
    assert itineraries.update_itinerary(created.id, other, data={"waypoints": []}) is None
    assert itineraries.update_itinerary(created.id, other, alerts_config={"x": 1}) is None
    assert itineraries.get_itinerary(created.id, other) is None
    assert stored(db, created.id) == (2, 2, {})


def test_update_itinerary_refuses_data_over_the_limit(itineraries, user_id, db):
    created = itineraries.create_itinerary(user_id, {"waypoints": WAYPOINTS})
    with pytest.raises(DestinationLimitReached):
        itineraries.update_itinerary(
            created.id, user_id, data={"waypoints": WAYPOINTS * 3}, max_destinations=5
        )
    assert stored(db, created.id)[:2] == (2, 2)


def test_update_itinerary_above_the_limit_may_keep_or_trim_but_not_grow(itineraries, user_id):
    six = [{"name": f"stop {n}"} for n in range(6)]
    created = itineraries.create_itinerary(user_id, {"waypoints": six})  # a larger plan's
    kept = itineraries.update_itinerary(
        created.id, user_id, data={"title": "renamed", "waypoints": six}, max_destinations=5
    )
    assert kept is not None and kept.destinations_count == 6
    with pytest.raises(DestinationLimitReached) as refused:
        itineraries.update_itinerary(
            created.id, user_id, data={"waypoints": [*six, {"name": "x"}]}, max_destinations=5
        )
    assert (refused.value.held, refused.value.count, refused.value.limit) == (6, 7, 5)
    trimmed = itineraries.update_itinerary(
        created.id, user_id, data={"waypoints": six[:4]}, max_destinations=5
    )
    assert trimmed is not None and trimmed.destinations_count == 4
    with pytest.raises(DestinationLimitReached):
        itineraries.update_itinerary(
            created.id, user_id, data={"waypoints": six}, max_destinations=5
        )


def test_add_destinations_appends_up_to_the_limit(itineraries, user_id, db):
    created = itineraries.create_itinerary(user_id, {"title": "Kenya", "waypoints": WAYPOINTS})
    more = [{"name": "Kisumu", "country": "KE"}, {"name": "Lamu", "country": "KE"}]
    updated = itineraries.add_destinations(created.id, user_id, more, limit=4)
    assert updated is not None and updated.destinations_count == 4
    assert updated.waypoints == WAYPOINTS + more
    assert updated.data["title"] == "Kenya"
    with pytest.raises(DestinationLimitReached):
        itineraries.add_destinations(created.id, user_id, more[:1], limit=4)
    assert stored(db, created.id)[:2] == (4, 4)


def test_concurrent_add_destinations_never_lose_an_update_or_pass_the_limit(
    itineraries, user_id, db
):
    created = itineraries.create_itinerary(user_id, {"waypoints": []})
    callers, limit = 12, 8
    barrier = threading.Barrier(callers)
    results: list[bool] = []

    def add(n: int) -> None:
        barrier.wait()
        try:
            itineraries.add_destinations(created.id, user_id, [{"name": f"stop {n}"}], limit)
            results.append(True)
        except DestinationLimitReached:
            results.append(False)

    workers = [threading.Thread(target=add, args=(n,)) for n in range(callers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert results.count(True) == limit
    assert stored(db, created.id)[:2] == (limit, limit)
