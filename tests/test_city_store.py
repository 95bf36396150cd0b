"""City storage (cloud_bridge.store) on a real SQLite file and a real
PostgreSQL (tests/conftest.py `city_database`): each (school, seq)
once whatever the replays, the ack is the highest seq with no gap below it,
the live room view never goes back to history (by boot, then by the
board's uptime and the gateway's seq within a boot), and older databases get
the columns added since."""

import itertools
import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_bridge.store import CityStore, StoreError
from protocol.citylink import parse_batch

SCHOOL = "0341234a"


def body_for(seq):
    return {"v": 1, "n": seq}


def batch(records, school=SCHOOL):
    raw = json.dumps({"v": 1, "school": school, "gateway": "gw-" + school, "records": records}).encode()
    return parse_batch(school, raw)


def rec(seq, room="cm2-b", kind="decision", body=None, at=None):
    return {"seq": seq, "room": room, "kind": kind, "at": at if at is not None else 1000.0 + seq,
            "body": body if body is not None else body_for(seq)}


@pytest.fixture
def store(city_database):
    s = CityStore(**city_database)
    yield s
    s.close()


def contiguous(delivered):
    n = 0
    while n + 1 in delivered:
        n += 1
    return n


def replays(n):
    seqs = list(range(1, n + 1))
    # An overlapping replay (a slice of the outbox, in any order) or a loose
    # mix with repeats (QoS 1 redeliveries, a gateway restarted mid-batch).
    slices = st.tuples(st.integers(1, n), st.integers(1, n)).flatmap(
        lambda ab: st.permutations(list(range(min(ab), max(ab) + 1))))
    return st.one_of(slices, st.lists(st.sampled_from(seqs), max_size=25))


def test_each_seq_is_stored_once_and_the_ack_never_passes_a_gap(store):
    # One database, a school of its own for each example.
    schools = (f"s{n:07d}" for n in itertools.count())

    @settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(1, 40).flatmap(lambda n: st.lists(replays(n), min_size=1, max_size=10)))
    def check(batches):
        school = next(schools)
        delivered: set[int] = set()
        last_ack = 0
        for seqs in batches:
            result = store.store_batch(batch([rec(s) for s in seqs], school), received_at=5000.0)
            fresh = set(seqs) - delivered
            delivered |= set(seqs)
            assert result.stored == len(fresh)
            assert result.stored + result.duplicates == len(seqs)
            assert result.acked == contiguous(delivered) >= last_ack
            last_ack = result.acked
        assert store.seqs(school) == sorted(delivered)
        assert store.record_count(school) == len(delivered)
        assert store.acked(school) == contiguous(delivered)
        stored = {r["seq"]: r["body"] for r in store.records(school=school, limit=1000)}
        assert stored == {s: body_for(s) for s in delivered}

    check()


def test_schools_are_counted_apart(store):
    store.store_batch(batch([rec(1), rec(2)]), 1.0)
    result = store.store_batch(batch([rec(1), rec(3)], school="0679999z"), 1.0)
    assert (result.stored, result.duplicates, result.acked) == (2, 0, 1)
    assert store.acked(SCHOOL) == 2 and store.acked("0679999z") == 1


def test_a_refused_record_is_set_aside_and_does_not_hold_the_ack_back(store):
    result = store.store_batch(batch([rec(1), rec(2, kind="tele"), rec(3)]), 1.0)
    assert (result.stored, result.set_aside, result.acked) == (2, 1, 3)
    assert store.seqs(SCHOOL) == [1, 3]
    [aside] = store.rejected(SCHOOL)
    assert (aside["seq"], aside["reason"]) == (2, "record_kind")
    assert json.loads(aside["record"])["kind"] == "tele"
    # A record with no readable seq cannot be set aside: the ack waits for it.
    result = store.store_batch(batch([{"seq": "4"}, rec(5)]), 1.0)
    assert (result.stored, result.set_aside, result.acked) == (1, 0, 3)


def birth(boot, fw="0.1.0", session="idle", ap=False, uptime_ms=5120):
    return {"v": 1, "online": True, "boot": boot, "fw": fw, "board": "olimex-esp32-poe", "uptime_ms": uptime_ms,
            "session": session, "ap": ap, "devices": ["button", "led", "ap_relay"]}


def death(boot):
    return {"v": 1, "online": False, "boot": boot}


def evt(boot, seq, kind, replay=None, uptime_ms=None, **data):
    body = {"v": 1, "boot": boot, "seq": seq, "uptime_ms": 60000 + seq if uptime_ms is None else uptime_ms,
            "time": None, "type": kind, "data": data}
    if replay is not None:
        body["replay"] = replay
    return body


def room(store, name="cm2-b"):
    [school] = store.status()["schools"]
    return {r["room"]: r for r in school["rooms"]}[name]


def test_room_state_from_birth_death_and_events(store):
    store.store_batch(batch([rec(1, kind="state", body=birth(7))]), 1.0)
    assert room(store) | {"last_seen": None} == {"room": "cm2-b", "online": True, "boot": 7, "session": "idle",
                                                 "ap": False, "last_seen": None, "fw": "0.1.0",
                                                 "board": "olimex-esp32-poe"}
    store.store_batch(batch([
        rec(2, kind="evt", body=evt(7, 3, "session.started", req=3, duration_s=2700, ap=True, projector=True, source="gateway")),
        rec(3, kind="evt", body=evt(7, 4, "ap.changed", on=True, reason="session")),
    ]), 2.0)
    assert (room(store)["session"], room(store)["ap"]) == ("active", True)
    store.store_batch(batch([rec(4, kind="state", body=death(7))]), 3.0)
    assert (room(store)["online"], room(store)["boot"]) == (False, 7)
    store.store_batch(batch([rec(5, kind="state", body=birth(8, fw="0.2.0"))]), 4.0)
    assert room(store) | {"last_seen": None} == {"room": "cm2-b", "online": True, "boot": 8, "session": "idle",
                                                 "ap": False, "last_seen": None, "fw": "0.2.0",
                                                 "board": "olimex-esp32-poe"}
    assert room(store)["last_seen"] == 1005.0


def test_history_never_overwrites_the_live_room(store):
    store.store_batch(batch([rec(1, kind="state", body=birth(8, fw="0.2.0"))]), 1.0)
    live = room(store)
    store.store_batch(batch([
        # An older boot's death and events: history.
        rec(2, kind="state", body=death(7)),
        rec(3, kind="evt", body=evt(7, 9, "session.started", req=3, duration_s=60, ap=True, projector=True, source="offline")),
        # The live boot's event replayed from the board's outbox: history too.
        rec(4, kind="evt", body=evt(8, 2, "ap.changed", replay=True, on=True, reason="session")),
    ]), 2.0)
    assert room(store) | {"last_seen": None} == live | {"last_seen": None}
    assert store.record_count() == 4  # history is stored, only the live view ignores it


def test_a_replaced_board_counting_its_boots_from_one_is_the_present(store):
    store.store_batch(batch([rec(1, kind="state", body=birth(57, fw="0.1.0"))]), 1.0)
    store.store_batch(batch([rec(2, kind="state", body=birth(1, fw="0.2.0"))]), 2.0)
    assert (room(store)["boot"], room(store)["fw"]) == (1, "0.2.0")
    # and a late batch never goes back: the old board's birth, re-sent with its old seq
    store.store_batch(batch([rec(1, kind="state", body=birth(57, fw="0.1.0"))]), 3.0)
    assert room(store)["boot"] == 1


def test_a_late_record_of_the_same_boot_does_not_go_back(store):
    # seq 3 (death) is received before seq 2 (a session start) of the same boot.
    store.store_batch(batch([rec(1, kind="state", body=birth(7)), rec(3, kind="state", body=death(7))]), 1.0)
    store.store_batch(batch([rec(2, kind="evt", body=evt(7, 1, "session.started", req=1, duration_s=60, ap=False, projector=True, source="gateway"))]), 2.0)
    assert (room(store)["online"], room(store)["session"]) == (False, "idle")


def live_uptime(store, name="cm2-b"):
    return store._read("SELECT live_uptime FROM rooms WHERE room = :room", {"room": name})[0]["live_uptime"]


def test_events_a_board_kept_in_its_outbox_are_not_the_present(store):
    # The board (boot 7) lost the network; when it is back it publishes its
    # birth (uptime 600 s), then what its flash outbox kept from the outage.
    store.store_batch(batch([rec(1, kind="state", body=birth(7, uptime_ms=600000))]), 1.0)
    assert live_uptime(store) == 600000
    result = store.store_batch(batch([
        rec(2, kind="evt", body=evt(7, 1, "session.started", uptime_ms=5000, req=1, duration_s=60, ap=True,
                                     projector=True, source="offline")),
        rec(3, kind="evt", body=evt(7, 2, "ap.changed", uptime_ms=5001, on=True, reason="session")),
    ]), 2.0)
    assert (result.stored, result.unusable_bodies) == (2, 0)
    assert store.record_count() == 3  # stored, not applied
    assert (room(store)["session"], room(store)["ap"], room(store)["online"]) == ("idle", False, True)
    assert live_uptime(store) == 600000
    # What the board does now (a later uptime, even a same one) is the present.
    store.store_batch(batch([
        rec(4, kind="evt", body=evt(7, 3, "ap.changed", uptime_ms=600000, on=True, reason="teacher")),
        rec(5, kind="evt", body=evt(7, 4, "session.started", uptime_ms=601000, req=2, duration_s=60, ap=True,
                                     projector=True, source="gateway")),
    ]), 3.0)
    assert (room(store)["session"], room(store)["ap"]) == ("active", True)
    assert live_uptime(store) == 601000
    # A new boot starts its clock again: its birth sets the live uptime lower.
    store.store_batch(batch([rec(6, kind="state", body=birth(8, uptime_ms=3000))]), 4.0)
    assert (room(store)["boot"], room(store)["session"], live_uptime(store)) == (8, "idle", 3000)
    store.store_batch(batch([rec(7, kind="evt", body=evt(8, 1, "ap.changed", uptime_ms=2900, on=True, reason="x"))]), 5.0)
    assert room(store)["ap"] is False
    # A death has no uptime: it applies within the boot, and keeps the mark.
    store.store_batch(batch([rec(8, kind="state", body=death(8))]), 6.0)
    assert (room(store)["online"], live_uptime(store)) == (False, 3000)


def test_a_birth_always_sets_the_live_uptime(store):
    # A reconnection's birth of the same boot with an earlier uptime than an
    # event already applied (it cannot be older: it is what the board says now).
    store.store_batch(batch([rec(1, kind="state", body=birth(7, uptime_ms=5000)),
                             rec(2, kind="evt", body=evt(7, 1, "ap.changed", uptime_ms=9000, on=True, reason="x")),
                             rec(3, kind="state", body=birth(7, uptime_ms=8000, session="active", ap=True))]), 1.0)
    assert (room(store)["session"], room(store)["ap"], live_uptime(store)) == ("active", True, 8000)
    # But a birth in a late batch (older by seq) is still history.
    store.store_batch(batch([rec(4, kind="evt", body=evt(7, 2, "ap.changed", uptime_ms=9500, on=False, reason="y"))]), 2.0)
    store.store_batch(batch([rec(10, kind="state", body=birth(7, uptime_ms=9600))]), 3.0)
    store.store_batch(batch([rec(9, kind="state", body=birth(7, uptime_ms=9700, session="active", ap=True))]), 4.0)
    assert (room(store)["session"], room(store)["ap"], live_uptime(store)) == ("idle", False, 9600)


OLD_ROOMS = """CREATE TABLE rooms (
    school TEXT NOT NULL, room TEXT NOT NULL, online INTEGER, boot BIGINT, last_seen DOUBLE PRECISION,
    session TEXT, ap INTEGER, fw TEXT, board TEXT, live_seq BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (school, room))"""


def test_a_database_made_before_live_uptime_gets_the_column(tmp_path):
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.execute(OLD_ROOMS)
    db.execute("INSERT INTO rooms (school, room, online, boot, last_seen, session, ap, fw, board, live_seq) "
               "VALUES (?, 'cm2-b', 1, 7, 10.0, 'active', 1, '0.1.0', 'olimex-esp32-poe', 4)", (SCHOOL,))
    db.commit()
    db.close()
    for _ in range(2):  # opening it again finds the column there
        store = CityStore(path)
        store.close()
    store = CityStore(path)
    try:
        assert live_uptime(store) is None
        # No mark yet: the gateway's seq alone orders the room's boot, as before.
        store.store_batch(batch([rec(5, kind="evt", body=evt(7, 9, "ap.changed", uptime_ms=70000, on=False, reason="x"))]), 1.0)
        assert (room(store)["ap"], live_uptime(store)) == (False, 70000)
        store.store_batch(batch([rec(6, kind="evt", body=evt(7, 10, "ap.changed", uptime_ms=1000, on=True, reason="x"))]), 2.0)
        assert room(store)["ap"] is False
    finally:
        store.close()


def test_an_unusable_body_is_stored_but_not_applied(store):
    result = store.store_batch(batch([rec(1, kind="state", body={"v": 1, "online": "yes"})]), 1.0)
    assert (result.stored, result.unusable_bodies, result.acked) == (1, 1, 1)
    assert store.status()["schools"][0]["rooms"] == []


def test_gateway_state_and_records_filters(store):
    store.set_gateway_state(SCHOOL, False, "gw-1", 10.0)
    store.store_batch(batch([rec(1, kind="state", body=birth(1)), rec(2, room="ce1"), rec(3, room="gateway")]), 11.0)
    store.set_gateway_state(SCHOOL, True, None, 12.0)
    [school] = store.status()["schools"]
    assert (school["gateway"], school["online"], school["last_seen"]) == ("gw-" + SCHOOL, True, 12.0)
    assert [r["room"] for r in school["rooms"]] == ["cm2-b"]  # decisions and the gateway make no room
    assert [r["seq"] for r in store.records()] == [3, 2, 1]
    assert [r["seq"] for r in store.records(room="ce1")] == [2]
    assert [r["seq"] for r in store.records(kind="state")] == [1]
    assert [r["seq"] for r in store.records(limit=2)] == [3, 2]


def test_a_database_that_cannot_open_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        CityStore(str(tmp_path / "missing-folder" / "city.db"))
    with pytest.raises(StoreError):
        CityStore(":memory:")
    # Nobody listens there; the password never reaches the message.
    with pytest.raises(StoreError, match="cannot open") as caught:
        CityStore(url="postgresql+psycopg://city:s3cret-word@127.0.0.1:1/city")
    assert "s3cret" not in str(caught.value)


def test_the_database_url_comes_from_the_environment_and_never_shows_its_password(monkeypatch, capsys):
    from cloud_bridge.errors import CitySettingsError
    from cloud_bridge.service import main
    from cloud_bridge.settings import CitySettings

    url = "postgresql+psycopg://city:s3cret-word@127.0.0.1:1/city"
    monkeypatch.setenv("PREAU_CITY_DATABASE_URL", url)
    settings = CitySettings.from_env(token="t" * 24)
    assert settings.database_url == url
    assert "s3cret" not in repr(settings) and "127.0.0.1:1/city" in repr(settings)
    with pytest.raises(CitySettingsError, match="PREAU_CITY_DATABASE_URL"):
        CitySettings(token="t" * 24, database_url="mysql://x/y").check()
    # Nobody listens there: a clear sentence, exit 1, no password.
    monkeypatch.setenv("PREAU_CITY_TOKEN", "t" * 24)
    assert main(["--http", "127.0.0.1:0", "--log-level", "ERROR"]) == 1
    err = capsys.readouterr().err
    assert "cannot open the city database" in err and "s3cret" not in err


def pages_of(store, limit, between=None, **filters):
    """Every page of records under `filters`, `between(n)` called after page n."""
    seen, after, n = [], None, 0
    while True:
        rows, after = store.records_page(limit=limit, after=after, **filters)
        seen.extend((r["school"], r["epoch"], r["seq"]) for r in rows)
        n += 1
        if after is None:
            return seen
        if between is not None:
            between(n)


def test_paging_through_records_gives_each_once_in_order(store):
    # Many records at one gateway time: the page boundary falls inside a tie.
    for school in ("0341234a", "0695678b"):
        store.store_batch(batch([rec(i, at=1000.0 + i // 4) for i in range(1, 31)], school=school), 5.0)
    every = [(r["school"], r["epoch"], r["seq"]) for r in store.records(limit=1000)]
    assert len(every) == 60
    for limit in (1, 3, 4, 7, 60, 100):
        assert pages_of(store, limit) == every
    one = pages_of(store, 4, school="0695678b", since=1002.0, until=1005.0)
    assert one == [("0695678b", "", s) for s in range(19, 7, -1)]


def test_paging_is_stable_while_records_are_stored(store):
    store.store_batch(batch([rec(i, at=2000.0 + i % 5) for i in range(1, 41)]), 5.0)
    present = {(SCHOOL, "", s) for s in range(1, 41)}
    new_seq = itertools.count(41)

    def more(n):
        # Between pages: newer records, older ones (a late batch), ones at the tie of the boundary.
        store.store_batch(batch([rec(next(new_seq), at=at) for at in (3000.0, 1000.0, 2002.0, 2003.0)]), 6.0 + n)

    seen = pages_of(store, 6, between=more)
    assert len(seen) == len(set(seen)), "a record twice"
    assert present <= set(seen), "a record present at the first page was skipped"
    keys = [(r["at"], r["school"], r["epoch"], r["seq"]) for r in store.records(limit=1000)]
    assert keys == sorted(keys, reverse=True)
