"""The city's estimates for its pages: when a projector's lamp needs
replacing (cloud_bridge/web/forecast.py) and the energy the boards'
automatic standby saved (cloud_bridge/web/usage.py, standby_savings), as
pure functions, with hypothesis for their invariants; and both read from a
real store (the equipment page's weekly samples, the usage's rows)."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_bridge.errors import CitySettingsError
from cloud_bridge.settings import CitySettings
from cloud_bridge.store import CityStore
from cloud_bridge.web.forecast import MIN_SPAN_S, WEEK_S, LampForecast, lamp_forecast, projector_series
from cloud_bridge.web.usage import COLUMNS, STANDBY_AFTER_S, Standby, standby_savings, to_csv, usage
from protocol.citylink import parse_batch

DAY = 86400.0
TZ = "Europe/Paris"
ZONE = ZoneInfo(TZ)
NOW = dt.datetime(2026, 11, 16, 12, 0, tzinfo=ZONE).timestamp()  # a Monday


def at(day: int, hour: int, minute: int = 0) -> float:
    """November 2026, Paris time."""
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=ZONE).timestamp()


# the lamp's forecast ---------------------------------------------------------------------------------------


def test_a_lamp_used_ten_hours_a_week_reaches_its_life_at_that_rate():
    series = [(NOW - (8 - k) * WEEK_S, 2000 + 10 * k) for k in range(9)]  # 2000 .. 2080 h
    f = lamp_forecast(series, 3000, NOW)
    assert f is not None and f.lamp_h == 2080 and f.life_h == 3000
    assert f.per_week_h == pytest.approx(10)
    assert f.due_at == pytest.approx(NOW + 92 * WEEK_S)
    assert not f.worn and not f.due_within(NOW, 8) and f.due_within(NOW, 93)


def test_not_enough_data_short_flat_or_empty():
    assert lamp_forecast([], 3000, NOW) is None
    one = lamp_forecast([(NOW, 1200)], 3000, NOW)
    assert one == LampForecast(1200, 3000, None, None)
    short = [(NOW - MIN_SPAN_S + 60, 1200), (NOW, 1210)]
    assert lamp_forecast(short, 3000, NOW).due_at is None  # type: ignore[union-attr]
    flat = [(NOW - 4 * WEEK_S, 1200), (NOW, 1200)]  # a projector nobody uses
    f = lamp_forecast(flat, 3000, NOW)
    assert f is not None and f.due_at is None and f.per_week_h is None and not f.due_within(NOW, 1000)


def test_a_worn_lamp_is_due_now_whatever_its_series():
    f = lamp_forecast([(NOW - DAY, 3100)], 3000, NOW)
    assert f is not None and f.worn and f.due_at == NOW and f.due_within(NOW, 1)


def test_a_replaced_lamp_counts_from_its_replacement():
    # 2900 h, replaced three weeks ago (the counter back near 0), then 15 h a week
    series = [(NOW - 6 * WEEK_S, 2870), (NOW - 5 * WEEK_S, 2890), (NOW - 3 * WEEK_S, 5),
              (NOW - 2 * WEEK_S, 20), (NOW - WEEK_S, 35), (NOW, 50)]
    f = lamp_forecast(series, 3000, NOW)
    assert f is not None and f.lamp_h == 50 and f.per_week_h == pytest.approx(15)
    assert f.due_at == pytest.approx(NOW + 2950 / 15 * WEEK_S)


def test_an_old_last_reading_never_puts_the_date_in_the_past():
    # readings stopped long ago (a board offline since): at their rate the lamp would be past its life by now
    series = [(NOW - 60 * WEEK_S, 2900), (NOW - 50 * WEEK_S, 2990)]
    f = lamp_forecast(series, 3000, NOW)
    assert f is not None and f.due_at == NOW


readings = st.lists(st.tuples(st.floats(0, 30 * DAY), st.floats(0, 200)), min_size=1, max_size=12)


def monotone(steps: list[tuple[float, float]], start_h: float) -> list[tuple[float, float]]:
    """A lamp counter: times and hours both growing by the steps."""
    out, t, h = [], NOW - 40 * WEEK_S, start_h
    for dt_s, dh in steps:
        t += dt_s
        h += dh
        out.append((t, h))
    return out


@settings(max_examples=300, deadline=None)
@given(readings, st.floats(0, 5000), st.floats(100, 20000), st.floats(0, 80 * WEEK_S))
def test_the_forecast_never_lies_in_the_past_for_a_lamp_below_its_life(steps, start_h, life_h, later):
    series = monotone(steps, start_h)
    now = series[-1][0] + later
    f = lamp_forecast(series, life_h, now)
    assert f is not None
    if f.due_at is not None:
        assert f.due_at >= now
        assert f.worn == (f.due_at == now and series[-1][1] >= life_h)


@settings(max_examples=300, deadline=None)
@given(readings, st.lists(st.floats(1, 4), min_size=12, max_size=12), st.floats(0, 2500), st.floats(100, 20000))
def test_more_usage_never_gives_a_later_date(steps, factors, start_h, life_h):
    less = monotone(steps, start_h)
    more = monotone([(dt_s, dh * k) for (dt_s, dh), k in zip(steps, factors, strict=False)], start_h)
    now = less[-1][0]
    a, b = lamp_forecast(less, life_h, now), lamp_forecast(more, life_h, now)
    assert a is not None and b is not None
    if a.due_at is not None:
        assert b.due_at is not None and b.due_at <= a.due_at * (1 + 1e-12)


# the energy saved by the automatic standby --------------------------------------------------------------------


W = Standby(on_w=250, standby_w=2, day_end=dt.time(16, 30))
KW = (250 - 2) / 1000


def started(t: float, projector: bool = True) -> tuple[float, str, dict]:
    return (t, "session.started", {"req": 1, "duration_s": 2700, "ap": True, "projector": projector})


def ended(t: float) -> tuple[float, str, dict]:
    return (t, "session.ended", {"reason": "teacher", "ran_s": 2700})


def projector(t: float, state: str) -> tuple[float, str, dict]:
    return (t, "projector.changed", {"state": state})


def saved(events, until: float = NOW + 30 * DAY) -> float:
    return sum(kwh for _, kwh in standby_savings(events, W, TZ, until))


def test_a_session_ended_at_ten_saves_until_half_past_four():
    events = [started(at(10, 9)), projector(at(10, 9, 1), "warming"), projector(at(10, 9, 2), "on"),
              ended(at(10, 10)), projector(at(10, 10, 1), "cooling"), projector(at(10, 10, 3), "off")]
    [(when, kwh)] = standby_savings(events, W, TZ, NOW)
    assert when == at(10, 10) and kwh == pytest.approx(6.5 * KW)  # the cooling that follows is the same standby


def test_the_next_session_stops_the_count_nothing_twice():
    events = [started(at(10, 9)), ended(at(10, 10)), started(at(10, 14)), ended(at(10, 15))]
    assert saved(events) == pytest.approx((4 + 1.5) * KW)


def test_nothing_after_the_school_day_nor_after_the_data():
    assert saved([started(at(10, 17)), ended(at(10, 17, 30))]) == 0
    assert saved([started(at(10, 15)), ended(at(10, 16))], until=at(10, 16, 15)) == pytest.approx(0.25 * KW)


def test_a_session_without_the_projector_or_with_it_switched_off_saves_nothing():
    assert saved([started(at(10, 9), projector=False), ended(at(10, 10))]) == 0
    assert saved([started(at(10, 9)), projector(at(10, 9, 1), "on"), projector(at(10, 9, 30), "off"),
                  ended(at(10, 10))]) == 0


def test_outside_a_session_the_boards_standby_counts_a_quick_switch_off_does_not():
    late = at(10, 13) + STANDBY_AFTER_S
    board = [projector(at(10, 13), "on"), projector(late, "cooling"), projector(late + 90, "off")]
    assert saved(board) == pytest.approx((at(10, 16, 30) - late) / 3600 * KW)
    person = [projector(at(10, 13), "on"), projector(at(10, 13, 2), "cooling")]
    assert saved(person) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 6 * 3600), st.sampled_from(["start", "start_np", "end", "on", "off"])),
                max_size=30))
def test_the_saving_is_never_negative_and_never_more_than_the_days_left(steps):
    events, t = [], at(9, 7)
    for gap, what in steps:
        t += gap
        events.append({"start": started(t), "start_np": started(t, False), "end": ended(t),
                       "on": projector(t, "on"), "off": projector(t, "off")}[what])
    found = standby_savings(events, W, TZ, NOW)
    for when, kwh in found:
        day_end = dt.datetime.combine(dt.datetime.fromtimestamp(when, ZONE).date(), dt.time(16, 30),
                                      tzinfo=ZONE).timestamp()
        assert 0 < kwh <= (day_end - when) / 3600 * KW + 1e-9
    # the saved spans never overlap: one projector is saved once at a time
    assert len({when for when, _ in found}) == len(found)


# through a real store -------------------------------------------------------------------------------------------

SCHOOL = "0341234a"


def stored(tmp_path, records: list[dict]) -> CityStore:
    store = CityStore(str(tmp_path / "city.db"))
    for i, r in enumerate(records, 1):
        r["seq"] = i
    store.store_batch(parse_batch(SCHOOL, json.dumps({"v": 1, "school": SCHOOL, "gateway": "gw-0341234a",
                                                      "records": records}).encode()), received_at=NOW)
    return store


def evt(seq: int, t: float, kind: str, data: dict) -> dict:
    return {"room": "cm2-b", "kind": "evt", "at": t,
            "body": {"v": 1, "boot": 7, "seq": seq, "time": t, "type": kind, "data": data}}


def test_the_usage_rows_carry_the_saving_in_a_last_column(tmp_path):
    store = stored(tmp_path, [
        {"room": "cm2-b", "kind": "state", "at": at(10, 8),
         "body": {"v": 1, "online": True, "boot": 7, "fw": "0.1.0", "board": "olimex-esp32-poe"}},
        evt(1, at(10, 9), "session.started", {"req": 1, "duration_s": 3600, "ap": True, "projector": True,
                                              "source": "gateway"}),
        evt(2, at(10, 9, 1), "projector.changed", {"state": "on", "lamp_h": 812}),
        evt(3, at(10, 10), "session.ended", {"reason": "teacher", "ran_s": 3600}),
        evt(4, at(10, 10, 1), "projector.changed", {"state": "cooling"}),
    ])
    try:
        [row] = usage(store, "2026-Q4", TZ, standby=W, now=NOW)
        assert (row.month, row.sessions, row.standby_kwh_saved) == ("2026-11", 1, pytest.approx(6.5 * KW))
        header, line = to_csv([row]).splitlines()
        assert header.split(",") == list(COLUMNS) and COLUMNS[-1] == "standby_kwh_saved"
        assert line.split(",")[3:] == ["1", "60.0", "0.0", "0.0", "1.61"]
    finally:
        store.close()


def test_the_equipment_page_samples_one_reading_a_week(tmp_path):
    records = [{"room": "cm2-b", "kind": "telemetry", "at": NOW - d * DAY,
                "body": {"v": 1, "interval_s": 300, "n": 5, "projector": "on", "lamp_h": 1500 - d}}
               for d in range(0, 70, 2)]  # every other day for ten weeks, 1 h a day
    store = stored(tmp_path, records)
    try:
        series = projector_series(store, SCHOOL, "cm2-b", NOW + 1)
        assert len(series) == 8 and series[-1] == (NOW, 1500)
        assert [h for _, h in series] == sorted(h for _, h in series)
        f = lamp_forecast(series, 3000, NOW)
        assert f is not None and f.per_week_h == pytest.approx(7)
        assert projector_series(store, SCHOOL, "cp-a", NOW) == []
    finally:
        store.close()


# the settings ---------------------------------------------------------------------------------------------------


def test_the_estimates_settings_are_checked_at_start(monkeypatch):
    good = CitySettings(token="x" * 20)
    assert good.check().school_day_end_time == dt.time(16, 30)
    for wrong in ({"projector_standby_w": 300.0}, {"projector_on_w": -1.0}, {"school_day_end": "16h30"},
                  {"school_day_end": "25:00"}, {"lamp_due_weeks": 0}):
        with pytest.raises(CitySettingsError):
            CitySettings(token="x" * 20, **wrong).check()  # type: ignore[arg-type]
    monkeypatch.setenv("PREAU_CITY_PROJECTOR_ON_W", "310")
    monkeypatch.setenv("PREAU_CITY_SCHOOL_DAY_END", "17:00")
    from_env = CitySettings.from_env(token="x" * 20).check()
    assert (from_env.projector_on_w, from_env.school_day_end) == (310.0, "17:00")
    assert Standby.of(from_env) == Standby(310.0, 2.0, dt.time(17, 0))
    monkeypatch.setenv("PREAU_CITY_LAMP_DUE_WEEKS", "eight")
    with pytest.raises(CitySettingsError, match="PREAU_CITY_LAMP_DUE_WEEKS"):
        CitySettings.from_env(token="x" * 20)
