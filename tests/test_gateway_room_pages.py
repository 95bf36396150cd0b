"""A classroom's page (/rooms/{room}) and the radio report (/radio,
/radio.pdf): the computations on their own (hand-built records in a real
SQLite history, a hypothesis property for the minutes), then in a real
browser against a real gateway whose history holds last week, with the
real firmware on a simulated board pressed by the test.

Every wait is on a condition, never a fixed sleep."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_gateway.history import INSERT_AUDIT, INSERT_RECORD, open_db, stored_digest
from edge_gateway.web import radio, room
from edge_gateway.web.i18n import event_words

PARIS = ZoneInfo("Europe/Paris")
TZ = "Europe/Paris"


def paris(y: int, m: int, d: int, h: int, mi: int = 0) -> float:
    return dt.datetime(y, m, d, h, mi, tzinfo=PARIS).timestamp()


NOW = paris(2026, 11, 24, 9, 0)  # devkit.testing.SCHOOL_TIME: a Tuesday of week 48


# a real history, by hand ---------------------------------------------------------------------


class History:
    """Records written as the journal writes them (edge_gateway/history.py's INSERT_RECORD)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seq = 0
        self.evt_seq: dict[tuple[str, int], int] = {}
        self.rows: list[tuple] = []
        self.audit: list[tuple] = []

    def evt(self, room_name: str, when: float | None, kind: str, data: dict, boot: int = 900,
            booted: float | None = None, at: float | None = None) -> History:
        n = self.evt_seq[(room_name, boot)] = self.evt_seq.get((room_name, boot), 0) + 1
        booted = booted if booted is not None else paris(2026, 11, 16, 7, 0)
        moment = when if when is not None else at
        assert moment is not None
        body = json.dumps({"v": 1, "boot": boot, "seq": n, "uptime_ms": int((moment - booted) * 1000),
                           "time": int(when) if when is not None else None, "type": kind, "data": data})
        self.seq += 1
        self.rows.append((self.seq, room_name, "evt", at if at is not None else moment + 0.2, boot, n, body,
                          stored_digest(body)))
        return self

    def ap(self, room_name: str, on: float, off: float | None) -> History:
        self.evt(room_name, on, "ap.changed", {"on": True, "reason": "session"})
        if off is not None:
            self.evt(room_name, off, "ap.changed", {"on": False, "reason": "session_end"})
        return self

    def telemetry(self, room_name: str, at: float, interval_s: int = 300, **values) -> History:
        self.seq += 1
        body = json.dumps({"v": 1, "interval_s": interval_s, "n": interval_s // 60} | values, separators=(",", ":"))
        self.rows.append((self.seq, room_name, "telemetry", at, None, None, body, None))
        return self

    def write(self) -> str:
        conn = open_db(self.path)
        with conn:
            conn.execute("BEGIN")
            conn.executemany(INSERT_RECORD, self.rows)
            conn.executemany(INSERT_AUDIT, self.audit)
        conn.close()
        return self.path


def last_week(path: str) -> History:
    """What the browser tests find in the gateway's history when it starts."""
    h = History(path)
    # cp-a: a session across Sunday's midnight, which is also the end of week 47
    h.evt("cp-a", paris(2026, 11, 22, 23, 30), "session.started",
          {"req": 1, "duration_s": 3600, "ap": True, "projector": True, "source": "offline"})
    h.ap("cp-a", paris(2026, 11, 22, 23, 30), paris(2026, 11, 23, 0, 30))
    h.evt("cp-a", paris(2026, 11, 23, 0, 30), "session.ended", {"reason": "time", "ran_s": 3600})
    # cp-a: Monday morning, 45 minutes
    h.evt("cp-a", paris(2026, 11, 23, 10, 0), "session.started",
          {"req": 5, "duration_s": 2700, "ap": True, "projector": True, "source": "gateway"})
    h.ap("cp-a", paris(2026, 11, 23, 10, 0), paris(2026, 11, 23, 10, 45))
    h.evt("cp-a", paris(2026, 11, 23, 10, 45), "session.ended", {"reason": "teacher", "ran_s": 2700})
    h.evt("cp-a", paris(2026, 11, 23, 11, 0), "<b>porte</b>", {"x": 1})  # a kind this gateway does not know
    # cm2-b: Friday afternoon, an hour; the projector, its lamp and a fault
    h.evt("cm2-b", paris(2026, 11, 20, 14, 0), "session.started",
          {"req": 3, "duration_s": 3600, "ap": True, "projector": True, "source": "gateway"})
    h.ap("cm2-b", paris(2026, 11, 20, 14, 0), paris(2026, 11, 20, 15, 0))
    h.evt("cm2-b", paris(2026, 11, 20, 14, 0), "projector.changed", {"state": "on", "lamp_h": 1234})
    h.evt("cm2-b", paris(2026, 11, 20, 14, 30), "projector.fault", {"error": "lamp_temperature"})
    h.evt("cm2-b", paris(2026, 11, 20, 15, 0), "projector.changed", {"state": "off"})
    h.evt("cm2-b", paris(2026, 11, 20, 15, 0), "session.ended", {"reason": "time", "ran_s": 3600})
    # cm2-b's kit: a reading every half hour for a week, stuffier in class hours
    at = paris(2026, 11, 17, 9, 0)
    while at <= NOW - 1800:
        hour = dt.datetime.fromtimestamp(at, PARIS).hour
        busy = 8 <= hour < 17
        co2 = 900 if busy else 480
        h.telemetry("cm2-b", at, 1800, co2=[co2 - 60, co2, co2 + 250 * busy], t=[19.5, 20.4 + busy, 21.0 + busy],
                    session="idle", ap=False, projector="off", lamp_h=1234)
        at += 1800
    return h


# the minutes (pure) ------------------------------------------------------------------------------


def test_a_run_across_midnight_and_the_week_end_is_split_at_the_local_midnight():
    switches = [radio.Switch("cp-a", paris(2026, 11, 22, 23, 30), True),
                radio.Switch("cp-a", paris(2026, 11, 23, 0, 30), False)]
    runs = radio.spans(switches, NOW, 7200)
    w47 = radio.minutes_by_day(runs, ["cp-a", "cm2-b"], dt.date(2026, 11, 16), 7, TZ)
    w48 = radio.minutes_by_day(runs, ["cp-a", "cm2-b"], dt.date(2026, 11, 23), 7, TZ)
    assert w47.minutes["cp-a"] == (0, 0, 0, 0, 0, 0, 30) and w47.total("cp-a") == 30
    assert w48.minutes["cp-a"] == (30, 0, 0, 0, 0, 0, 0) and w48.total("cp-a") == 30
    assert w48.minutes["cm2-b"] == (0,) * 7 and w48.school_total == 30


def test_an_access_point_still_on_counts_up_to_now_and_no_longer_than_the_cap():
    on = radio.Switch("cm2-b", NOW - 600, True)
    assert radio.spans([on], NOW, 7200) == {"cm2-b": [(NOW - 600, NOW)]}
    long_ago = radio.Switch("cm2-b", NOW - 86400, True)  # its end never came: the board's hard cap holds
    assert radio.spans([long_ago], NOW, 7200) == {"cm2-b": [(NOW - 86400, NOW - 86400 + 7200)]}
    # a boot is the relay off; a second "on" within a run does not restart it
    runs = radio.spans([radio.Switch("r", 100.0, True), radio.Switch("r", 200.0, True),
                        radio.Switch("r", 300.0, False), radio.Switch("r", 400.0, True),
                        radio.Switch("r", 460.0, False)], 1000.0, 7200)
    assert runs == {"r": [(100.0, 300.0), (400.0, 460.0)]}
    # a switch in the future (a board's clock ahead) counts nothing yet
    assert radio.spans([radio.Switch("r", 2000.0, True)], 1000.0, 7200) == {"r": []}


def test_the_day_the_clocks_go_back_has_25_hours():
    # 25 October 2026: Europe/Paris goes from summer to winter time
    runs = {"r": [(paris(2026, 10, 24, 12), paris(2026, 10, 26, 12))]}
    table = radio.minutes_by_day(runs, ["r"], dt.date(2026, 10, 24), 3, TZ)
    assert table.minutes["r"] == (720, 1500, 720)


def test_an_event_without_the_time_is_placed_by_the_boards_uptime():
    rows = [("r", 5000.0, {"boot": 2, "uptime_ms": 1_000, "time": None, "type": "boot", "data": {}}),
            ("r", 5000.5, {"boot": 2, "uptime_ms": 61_000, "time": 1_000_060, "type": "ap.changed",
                           "data": {"on": True}}),
            ("r", 9000.0, {"boot": 2, "uptime_ms": 121_000, "time": None, "type": "ap.changed",
                           "data": {"on": False}}),
            ("q", 7000.0, {"boot": 1, "uptime_ms": 5, "time": None, "type": "boot", "data": {}})]
    switches = radio.switches_of(rows)
    assert [(s.room, s.at, s.on) for s in switches] == [
        ("r", 1_000_000.0, False), ("r", 1_000_060.0, True), ("r", 1_000_120.0, False), ("q", 7000.0, False)]


moments_st = st.floats(min_value=paris(2026, 10, 20, 0), max_value=paris(2026, 11, 5, 0), allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["cm2-b", "cp-a"]), moments_st, st.booleans()), max_size=60),
       moments_st, st.integers(min_value=60, max_value=14400), st.integers(min_value=1, max_value=31))
def test_each_days_minutes_add_up_to_the_total_never_negative_never_longer_than_the_day(events, now, cap, days):
    switches = [radio.Switch(r, at, on) for r, at, on in events]
    runs = radio.spans(switches, now, cap)
    first = dt.date(2026, 10, 20)
    table = radio.minutes_by_day(runs, ["cm2-b", "cp-a"], first, days, TZ)
    bounds = radio.day_bounds(first, days, TZ)
    for r, row in table.minutes.items():
        assert sum(row) == table.total(r)
        seconds = sum(max(0.0, min(b, bounds[-1]) - max(a, bounds[0])) for a, b in runs.get(r, []))
        assert table.total(r) == int(seconds / 60 + 0.5)  # the rounded total of what the runs hold
        for i, minutes in enumerate(row):
            # 1440, but 1500 the day the clocks go back (25 October 2026) and 1380 the day they go forward
            assert 0 <= minutes <= round((bounds[i + 1] - bounds[i]) / 60)
    for run in runs.values():
        assert all(a < b <= now for a, b in run)
        assert all(run[i][1] < run[i + 1][0] for i in range(len(run) - 1))


def test_the_minutes_from_a_real_history(tmp_path):
    path = last_week(str(tmp_path / "gw.sqlite")).write()
    week = radio.radio_table(path, ["cm2-b", "cp-a"], dt.date(2026, 11, 23), 7, TZ, NOW, 7200)
    assert week.minutes["cp-a"] == (75, 0, 0, 0, 0, 0, 0)
    assert week.minutes["cm2-b"] == (0,) * 7
    before = radio.radio_table(path, ["cm2-b", "cp-a"], dt.date(2026, 11, 16), 7, TZ, NOW, 7200)
    assert before.minutes["cm2-b"] == (0, 0, 0, 0, 60, 0, 0)
    assert before.minutes["cp-a"] == (0, 0, 0, 0, 0, 0, 30)


def test_a_week_or_a_range_of_local_dates():
    today = dt.date(2026, 11, 24)
    assert radio.parse_period(None, None, None, today) == radio.Period(dt.date(2026, 11, 23), 7, "2026-W48")
    assert radio.parse_period("2026-W47", None, None, today).first == dt.date(2026, 11, 16)
    assert radio.parse_period("2026-11-19", None, None, today).week == "2026-W47"
    assert radio.parse_period("2026-W53", None, None, today).first == dt.date(2026, 12, 28)  # 2026 has 53
    r = radio.parse_period(None, "2026-11-20", "2026-11-23", today)
    assert (r.first, r.days, r.week, r.query()) == (dt.date(2026, 11, 20), 4, None, "from=2026-11-20&to=2026-11-23")
    for week, start, end, field in (("2026-W54", None, None, "week"), ("soon", None, None, "week"),
                                    (None, "2026-11-23", "2026-11-20", "to"), (None, "x", "2026-11-20", "from"),
                                    (None, "2026-10-01", "2026-11-20", "to"), ("1999-W01", None, None, "week")):
        with pytest.raises(ValueError, match=field):
            radio.parse_period(week, start, end, today)


def test_the_pdf_holds_the_school_the_week_and_the_rows():
    pypdf = pytest.importorskip("pypdf")
    table = radio.RadioTable(tuple(dt.date(2026, 11, 23) + dt.timedelta(days=i) for i in range(7)),
                             {"cm2-b": (12, 0, 0, 0, 0, 0, 0), "cp-a": (75, 5, 0, 0, 0, 0, 0)})
    named = SimpleNamespace(school="0341234a", school_name="École élémentaire Jules-Ferry")
    content = radio.radio_pdf("fr", radio.school_label("fr", named), "Semaine 48 de 2026, du 23/11/2026 au 29/11/2026",
                              table, dt.date(2026, 11, 24), "Établi le 24/11/2026 09:00 par la passerelle Préau.")
    assert content.startswith(b"%PDF-")
    text = pypdf.PdfReader(io.BytesIO(content)).pages[0].extract_text()
    assert "Temps de Wi-Fi des classes" in text and "École élémentaire Jules-Ferry (0341234a)" in text
    assert "Semaine 48 de 2026" in text and "Toute l'école" in text
    assert re.search(r"cm2-b\s+12\s+0\s+-\s+-", text), text  # Tuesday is today: Wednesday on is to come
    assert re.search(r"cp-a\s+75\s+5\s+-\s+-\s+-\s+-\s+-\s+80", text), text
    wide = radio.RadioTable(tuple(dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(31)),
                            {"cm2-b": (1,) * 31})
    unnamed = SimpleNamespace(school="0341234a", school_name=None)
    content = radio.radio_pdf("en", radio.school_label("en", unnamed), "from 01/11/2026 to 01/12/2026", wide,
                              dt.date(2026, 12, 5), "x")
    reader = pypdf.PdfReader(io.BytesIO(content))
    assert reader.pages[0].mediabox.width > reader.pages[0].mediabox.height  # landscape for a month
    assert "School 0341234a" in reader.pages[0].extract_text()


# the room's builders (pure) ------------------------------------------------------------------------


def test_the_sessions_and_the_timeline_from_a_real_history(tmp_path):
    h = last_week(str(tmp_path / "gw.sqlite"))
    booted = NOW - 7200
    # today: a session that the technician ended from the boards page (audited), without the Wi-Fi
    h.evt("cm2-b", NOW - 3600, "session.started",
          {"req": 2, "duration_s": 2700, "ap": False, "projector": True, "source": "offline"}, boot=901, booted=booted)
    h.evt("cm2-b", NOW - 2700, "session.ended", {"reason": "command", "ran_s": 900}, boot=901, booted=booted)
    h.audit.append((NOW - 2702, "technician:u-0002", "board.end", json.dumps({"room": "cm2-b", "id": "b-1-1"})))
    h.audit.append((NOW - 2701, "director:u-0001", "board.end", json.dumps({"room": "cp-a", "id": "b-1-2"})))
    # then one granted by the gateway that is still running, the access point on
    h.evt("cm2-b", NOW - 1200, "session.started",
          {"req": 9, "duration_s": 5400, "ap": True, "projector": True, "source": "gateway"}, boot=901, booted=booted)
    h.evt("cm2-b", NOW - 1200, "ap.changed", {"on": True, "reason": "session"}, boot=901, booted=booted)
    h.evt("cm2-b", None, "projector.changed", {"state": "warming"}, boot=901, booted=booted,
          at=NOW - 1100)  # the board did not know the time: placed by its uptime
    path = h.write()
    since = room.day_bounds(dt.date(2026, 11, 18), 7, TZ)[0]
    history = room.read_room(path, "cm2-b", since - room.SESSION_CAP_S, since)
    bars = room.room_spans(history.events, NOW, 7200)
    assert bars["ap"] == [(paris(2026, 11, 20, 14), paris(2026, 11, 20, 15)), (NOW - 1200, NOW)]
    assert bars["session"][-2:] == [(NOW - 3600, NOW - 2700), (NOW - 1200, NOW)]
    assert bars["projector"] == [(paris(2026, 11, 20, 14), paris(2026, 11, 20, 15)), (NOW - 1100, NOW)]
    sessions = room.sessions_of(history.events)
    assert [(s.source, s.ended, s.end is None) for s in sessions] == [
        ("gateway", "time", False), ("offline", "command", False), ("gateway", None, True)]
    rows = room.session_rows("fr", sessions, paris(2026, 11, 24, 0), paris(2026, 11, 25, 0), NOW, PARIS,
                             history.remote_ends)
    first, second = rows.split("</tr>")[:2]
    assert "<td>08:00</td><td>08:15</td><td>15 min 00 s</td>" in first
    assert "l&#39;enseignant (bouton) — décidée par la carte seule" in first and "éteint" in first
    assert "à distance (technicien)" in first  # a role, never the account
    assert "08:40" in second and "en cours" in second and "20 min 00 s" in second
    assert "l&#39;enseignant (bouton) — accordée par la passerelle" in second
    svg = room.timeline_svg("fr", dt.date(2026, 11, 20), paris(2026, 11, 20, 0), paris(2026, 11, 21, 0), bars, PARIS)
    assert 'role="img"' in svg and "Wi-Fi : 14:00–15:00" in svg and "Vidéoprojecteur : 14:00–15:00" in svg
    assert svg.count('class="tl-ap"') == 1 and 'x="560.0"' in svg  # 14:00 is 14/24 of 960


def test_the_charts_say_their_lowest_mean_and_highest(tmp_path):
    h = History(str(tmp_path / "gw.sqlite"))
    start = paris(2026, 11, 23, 8)
    for k, co2 in enumerate((600, 800, 1000)):
        h.telemetry("cm2-b", start + 300 * (k + 1), co2=[co2 - 100, co2, co2 + 100], t=[20, 20.5, 21])
    h.telemetry("cm2-b", start + 7200, co2=[500, 500, 500])  # after a gap: a second segment
    h.telemetry("cm2-b", start + 7500, co2="not a reading", t=[19, 19, 19])
    path = h.write()
    history = room.read_room(path, "cm2-b", start, start)
    co2 = room.readings(history.telemetry, "co2")
    assert [p.mean for p in co2] == [600, 800, 1000, 500]
    s = room.summary(co2)
    assert (s.lo, s.mean, s.hi, s.count) == (500, 725, 1100, 4)
    svg = room.chart_svg("fr", "co2", co2, start, start + 8000, PARIS, "ppm", 1000)
    assert '<title id="chart-co2-t">CO₂ (ppm)</title>' in svg
    assert "minimum 500 ppm, moyenne 725 ppm, maximum 1100 ppm (4 intervalles mesurés)" in svg
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1  # the gap breaks the line
    assert "1000 ppm" in svg  # the threshold
    temp = room.readings(history.telemetry, "t")
    assert room.summary(temp).count == 4
    assert "aucune mesure" in room.chart_svg("fr", "t", [], start, start + 8000, PARIS, "°C")
    table = room.summary_table("en", (("co2", "ppm", s), ("t", "°C", None)))
    assert "<td class=\"num\">725</td>" in table and "Temperature" in table


def test_every_event_the_boards_send_is_said_in_words():
    # docs/protocol.md's event types, as firmware/ sends them
    kinds = {"boot": {"reset_cause": "power"}, "button": {"press": "short"}, "lesson.requested": {"req": 1},
             "session.started": {"duration_s": 5400, "ap": True, "source": "gateway"},
             "session.denied": {"reason": "closed"}, "session.extended": {"added_s": 900},
             "session.ended": {"reason": "teacher"}, "ap.changed": {"on": False, "reason": "cap"},
             "cmd.rejected": {"reason": "bad"}, "projector.changed": {"state": "cooling"},
             "projector.fault": {"error": "lamp"}, "kit.attached": {"kit": "air-co2-01"},
             "kit.detached": {"kit": "air-co2-01"}, "kit.fault": {"sensor": "scd4x"}, "air.alert": {"co2": 1400, "on": True}}
    text = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    section = text.split("## Events (`evt`)", 1)[1].split("| type | `data` | when |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"^\| `([a-z.]+)` \|", section, re.M)) == set(kinds)  # every kind the contract lists
    for kind, data in kinds.items():
        for lang in ("fr", "en"):
            words = event_words(lang, kind, data)
            assert words != kind and "." not in words.split(" ")[0], (kind, words)
    assert event_words("fr", "ap.changed", {"on": False, "reason": "cap"}) == \
        "Wi-Fi de la classe éteint (durée maximale atteinte)"
    assert event_words("fr", "future.kind", {}) == "future.kind"  # as it is (and escaped by the page)
    assert event_words("fr", "boot", ["not", "a", "dict"]) == "carte démarrée"


# in a real browser, against a real gateway --------------------------------------------------------

try:
    from tests.test_gateway_pages import (  # noqa: F401 - fixtures, found by name
        SHOTS,
        boards,
        check,
        chromium,
        expect,
        log_in,
        page,
        site,
        start_board,
    )

    BROWSER = True
except pytest.skip.Exception:  # no chromium or no axe-core here: the tests above still run
    BROWSER = False

browser_test = pytest.mark.skipif(not BROWSER, reason="needs Debian's chromium and node_modules/axe-core")


@pytest.fixture
def gateway(mosquitto, tmp_path):
    """tests/test_gateway_pages.py's gateway, started on a history that holds last week."""
    from devkit.testing import school_clock
    from edge_gateway.config import Config
    from edge_gateway.gateway import Gateway

    config = Config.from_dict(mosquitto.config(str(tmp_path)) | {
        "gateway_id": "gw-0341234a", "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {}}, "policy": {"zone": "C"}})
    last_week(config.db).write()
    gw = Gateway(config, clock=school_clock(), reconnect_max_s=1).start()
    yield gw
    gw.stop()


@browser_test
@pytest.mark.broker
def test_a_rooms_page_shows_the_teachers_session_the_week_the_air_and_the_log(gateway, site, boards, page,
                                                                              mosquitto, tmp_path):
    log_in(page, site)
    sim = start_board(boards, mosquitto, tmp_path)
    card = page.locator("#room-cm2-b")
    expect(card).to_have_attribute("data-online", "online")
    boards.run(sim.press(0.2))  # the teacher's finger
    expect(card).to_have_attribute("data-ap", "on")
    try:
        card.get_by_role("link", name="cm2-b").click()
        expect(page).to_have_url(site + "/rooms/cm2-b")
        expect(page.locator("h1")).to_have_text("Classe cm2-b")
        today = page.locator("#sessions-today tbody tr")
        expect(today).to_have_count(1)
        expect(today).to_contain_text("en cours")
        expect(today).to_contain_text("l'enseignant (bouton) — accordée par la passerelle")
        expect(today).to_contain_text("allumé")
        # today's row of the timeline: a session and the access point from 09:0x until now
        row = page.locator("#day-2026-11-24")
        expect(row.locator("rect.tl-session")).to_have_count(1)
        expect(row.locator("rect.tl-ap")).to_have_count(1)
        expect(row.locator("title")).to_contain_text(re.compile(r"Séance : 09:0\d–09:\d\d ; Wi-Fi : 09:0\d–09:\d\d"))
        friday = page.locator("#day-2026-11-20")
        expect(friday).to_contain_text("1 h 00 min")
        expect(friday.locator("title")).to_contain_text("Vidéoprojecteur : 14:00–15:00")
        # the week's air, from the stored telemetry, with its numbers in words
        expect(page.locator("#chart-co2 desc")).to_contain_text("minimum 420 ppm")
        expect(page.locator("#chart-co2 desc")).to_contain_text("maximum 1150 ppm")
        expect(page.locator("#chart-summary")).to_contain_text("Température (°C)")
        expect(page.locator("#lamp-hours")).to_have_text("lampe 1234 h")
        expect(page.locator("#projector-faults")).to_contain_text("panne du vidéoprojecteur (lamp_temperature)")
        log = page.locator("#room-events")
        expect(log).to_contain_text("séance demandée par l'enseignant")
        expect(log).to_contain_text("séance démarrée par l'enseignant (90 min, Wi-Fi allumé)")
        expect(log).to_contain_text("Wi-Fi de la classe allumé (séance)")
        expect(log).not_to_contain_text("session.started")
        check(page, "room")
        page.get_by_role("link", name="24 heures").click()
        expect(page).to_have_url(site + "/rooms/cm2-b?span=24h")
        expect(page.locator("#chart-co2 desc")).to_contain_text("intervalles mesurés")
        check(page, "room-24h")
        page.get_by_role("link", name="English").click()
        expect(page.locator("#room-events")).to_contain_text("session started by the teacher (90 min, Wi-Fi on)")
        expect(page.locator("#sessions-today")).to_contain_text("the teacher (button) — granted by the gateway")
        check(page, "room-english")
        page.get_by_role("link", name="Français").click()
        # the boards page links the rooms too
        page.get_by_role("link", name="Cartes").click()
        page.locator("#board-cp-a").get_by_role("link", name="cp-a").click()
        expect(page.locator("h1")).to_have_text("Classe cp-a")
        expect(page.locator("#sessions-today")).to_have_text("Aucune séance aujourd'hui.")
        expect(page.locator("#room-events")).to_contain_text("<b>porte</b>")  # unknown: as it is, escaped
        expect(page.locator("#room-events")).to_contain_text("séance terminée par l'enseignant")
        expect(page.locator("#chart-co2")).to_contain_text("aucune mesure")
        check(page, "room-cp-a")
    finally:
        boards.run(sim.press(2.3))  # a long press ends the lesson: the access point goes off
        boards.run(sim.stop())
    assert not sim.relay


@browser_test
@pytest.mark.broker
def test_the_radio_report_counts_minutes_prints_on_a4_and_downloads_as_pdf(gateway, site, page):
    import pypdf

    log_in(page, site)
    page.get_by_role("link", name="Temps de Wi-Fi").click()
    expect(page).to_have_url(site + "/radio")
    expect(page.locator("#radio-period")).to_contain_text("Semaine 48 de 2026, du 23/11/2026 au 29/11/2026")
    cp_a = page.locator("#radio-cp-a td")
    expect(cp_a).to_have_text(["75", "0", "—", "—", "—", "—", "—", "75"])  # Monday: 30 after midnight + 45
    expect(page.locator("#radio-weeks")).to_contain_text("S47")
    check(page, "radio")
    # the print: no navigation, no forms, the table whole
    page.emulate_media(media="print")
    expect(page.locator("header nav")).to_be_hidden()
    expect(page.locator("#week-picker")).to_be_hidden()
    expect(page.get_by_role("button", name="Imprimer")).to_be_hidden()
    expect(page.locator("#radio-table")).to_be_visible()
    page.screenshot(path=str(page.shots / "radio-print.png"), full_page=True)
    page.emulate_media(media="screen")
    expect(page.locator("header nav")).to_be_visible()

    page.get_by_label("Semaine", exact=True).fill("2026-W47")
    page.locator("#week-picker").get_by_role("button", name="Afficher").click()
    expect(page).to_have_url(site + "/radio?week=2026-W47")
    expect(page.locator("#radio-cm2-b td")).to_have_text(["0", "0", "0", "0", "60", "0", "0", "60"])
    expect(page.locator("#radio-cp-a td")).to_have_text(["0", "0", "0", "0", "0", "0", "30", "30"])
    with page.expect_download() as info:
        page.get_by_role("link", name="Télécharger le PDF").click()
    download = info.value
    assert download.suggested_filename == "wifi-0341234a-2026-W47.pdf"
    content = Path(download.path()).read_bytes()
    assert content.startswith(b"%PDF-")
    text = pypdf.PdfReader(io.BytesIO(content)).pages[0].extract_text()
    assert "École 0341234a" in text and "Semaine 47 de 2026, du 16/11/2026 au 22/11/2026" in text
    assert re.search(r"cm2-b\s+0\s+0\s+0\s+0\s+60\s+0\s+0\s+60", text), text
    assert re.search(r"cp-a\s+0\s+0\s+0\s+0\s+0\s+0\s+30\s+30", text), text

    page.get_by_label("Du").fill("2026-11-20")
    page.get_by_label("au", exact=True).fill("2026-11-23")
    page.locator("#range-picker").get_by_role("button", name="Afficher").click()
    expect(page.locator("#radio-period")).to_have_text("du 20/11/2026 au 23/11/2026")
    expect(page.locator("#radio-cp-a td")).to_have_text(["0", "0", "30", "75", "105"])
    expect(page.locator("#radio-table tfoot td")).to_have_text(["60", "0", "30", "75", "165"])
    check(page, "radio-range")


@pytest.mark.broker
def test_an_unknown_room_is_a_404_page_and_a_bad_week_is_said(gateway, tmp_path):
    from edge_gateway.api import ApiSettings, create_app
    from tests.test_gateway_auth import DIRECTOR_TOKEN, VIEWER_TOKEN, make_access, session_for

    app = create_app(gateway, ApiSettings(token=DIRECTOR_TOKEN, viewer_token=VIEWER_TOKEN),
                     access=make_access(str(tmp_path / "accounts.json")))
    client, _ = session_for(app, "lecture")
    r = client.get("/rooms/cm2-z")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "Classe inconnue" in r.text and "Il n&#39;y a pas de classe « cm2-z » dans cette école." in r.text
    r = client.get("/rooms/cp-a")
    assert r.status_code == 200 and "&lt;b&gt;porte&lt;/b&gt;" in r.text and "<b>porte" not in r.text
    r = client.get("/radio?week=2026-W99")
    assert r.status_code == 200 and "Semaine : donnez une semaine" in r.text  # the form again, and this week
    r = client.get("/radio.pdf?from=2026-11-20&to=2026-10-01")
    assert r.status_code == 422 and r.text.startswith("Au :")
    r = client.get("/radio.pdf?week=2026-W48&lang=en")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == 'attachment; filename="wifi-0341234a-2026-W48.pdf"'
    assert r.content.startswith(b"%PDF-") and b"%%EOF" in r.content[-32:]
