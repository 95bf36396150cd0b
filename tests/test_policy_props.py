"""Property tests of the policy engine (loi 2015-136 art. 7): over random
schools, calendars, overrides and request times across years and DST days,
the access point is never granted where the rules forbid it, a grant never
outlives its period nor its maximum, every deny says why, and the offline
policy agrees with `decide`."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edge_gateway.policy.config import PolicyConfigError, load_policy
from edge_gateway.policy.engine import OFFLINE_MAX_BYTES, REASONS, calendar_for, decide, encode_offline, offline_policy
from edge_gateway.policy.model import WEEKDAYS, Override

PARIS = ZoneInfo("Europe/Paris")
UTC = UTC
ROOMS = ("r1", "r2", "r3")
TYPES = ("t0", "t1", "t2", "t3")
DST_DAYS = (date(2026, 3, 29), date(2026, 10, 25), date(2027, 3, 28), date(2025, 10, 26))


def _hm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


# Boundaries stay out of 02:00-03:00: inside the skipped or repeated hour a
# boundary means "the first time the clock shows it", which a wall-clock
# oracle cannot check; test_policy_engine covers those days by hand.
minutes = st.integers(0, 95).map(lambda q: q * 15).filter(lambda m: not 120 <= m < 180)


@st.composite
def days(draw):
    cuts = sorted(set(draw(st.lists(minutes, min_size=2, max_size=8))))
    if len(cuts) % 2:
        cuts = cuts[:-1]
    periods = [
        {"start": _hm(a), "end": _hm(b), "type": draw(st.sampled_from(TYPES))} for a, b in zip(cuts[::2], cuts[1::2], strict=True)
    ]
    last = cuts[-1] if cuts else 0
    if last <= 94 * 15 and draw(st.integers(0, 4)) == 0:
        # A night event crossing midnight, after everything else that day.
        start = draw(st.integers(max(last // 15, 80), 94)) * 15
        periods.append({"start": _hm(start), "end": _hm(draw(st.sampled_from((0, 60, 90)))), "type": "t1", "overnight": True})
    return periods


@st.composite
def configs(draw):
    types = {
        name: {
            "sessions": (s := draw(st.booleans())),
            "projector": s and draw(st.booleans()),
            "ap": s and draw(st.integers(0, 2)) > 0,
            "max_s": draw(st.sampled_from((60, 900, 2700, 5400, 14400))),
        }
        for name in TYPES
    }
    types["t0"].update(sessions=True, ap=True)  # class time, as in every school
    types["t1"].update(sessions=True)  # night events allow sessions
    week = {day: {"periods": draw(days())} for day in WEEKDAYS if draw(st.integers(0, 3)) > 0}
    rooms = {
        r: {
            "wifi": draw(st.sampled_from(("allowed", "allowed", "never"))),
            "sessions": r != "r3" or draw(st.booleans()),
            "equipment": draw(st.sampled_from((["projector", "ap"], ["projector", "ap"], ["projector"], ["ap"], []))),
        }
        for r in ROOMS
    }
    closures = []
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.dates(date(2024, 1, 1), date(2031, 12, 31)))
        closures.append(
            {
                "start": start,
                "end": start + timedelta(days=draw(st.integers(0, 10))),
                "label": "fermeture",
                **({"rooms": [draw(st.sampled_from(ROOMS))]} if draw(st.booleans()) else {}),
            }
        )
    policy = {
        "zone": draw(st.sampled_from("ABC")),
        "alsace_moselle": draw(st.booleans()),
        "wifi_never": draw(st.integers(0, 9)) == 9,
        "ap_cap_s": draw(st.sampled_from((600, 3600, 7200))),
        "min_session_s": draw(st.sampled_from((0, 300, 900))),
    }
    data = {"policy": policy, "period_types": types, "week": week, "rooms": rooms, "closures": closures}
    if draw(st.booleans()):
        data["week"]["holidays"] = {"periods": [{"start": "08:00", "end": "18:00", "type": draw(st.sampled_from(TYPES))}]}
    return data


@st.composite
def instants(draw):
    if draw(st.booleans()):
        day = draw(st.sampled_from(DST_DAYS)) + timedelta(days=draw(st.integers(-1, 1)))
        local = datetime.combine(day, time(0)) + timedelta(minutes=draw(st.integers(0, 1439)))
        return local.replace(tzinfo=PARIS, fold=draw(st.integers(0, 1))).astimezone(UTC)
    # Mostly school hours on any day of eight years (not hypothesis's
    # favourite, 1 January, a public holiday).
    day = date(2024, 1, 1) + timedelta(days=draw(st.integers(0, 2920).map(lambda n: (n * 7919 + 100) % 2921)))
    minute = draw(st.one_of(st.integers(7 * 60, 19 * 60), st.integers(0, 1439)))
    second = draw(st.integers(0, 59))
    local = datetime.combine(day, time(0)) + timedelta(minutes=minute, seconds=second)
    return local.replace(tzinfo=PARIS).astimezone(UTC)


@st.composite
def overrides(draw, around):
    out = []
    for i in range(draw(st.integers(0, 3))):
        starts = around + timedelta(minutes=draw(st.integers(-600, 600)))
        effect = draw(st.sampled_from(("allow", "deny")))
        school = draw(st.booleans())
        out.append(
            Override(
                id=f"o{i}",
                scope="school" if school else "room",
                room=None if school else draw(st.sampled_from(ROOMS)),
                effect=effect,
                ap=effect == "allow" and draw(st.booleans()),
                ap_only=effect == "deny" and draw(st.booleans()),
                starts=starts,
                expires=starts + timedelta(minutes=draw(st.integers(1, 900))),
                who="test",
                why="raison",
            )
        )
    return out


def load(data):
    try:
        return load_policy(data, source="random.toml")
    except PolicyConfigError:
        assume(False)


def oracle(policy, cal, room, t):
    """(period type at t or None, day open) from the configuration, by wall time."""
    local = t.astimezone(PARIS)
    day, wall = local.date(), local.time()
    info = cal.day(day, room)
    if not info.open:
        if info.reason == "school_holiday" and day.weekday() < 5:
            for p in policy.holiday_periods:
                if p.start <= wall < p.end:
                    return policy.period_types[p.type], False
        return None, False
    for p in policy.periods(room, info.plan):
        if p.start <= wall and (p.overnight or wall < p.end):
            return policy.period_types[p.type], True
    before = cal.day(day - timedelta(days=1), room)
    if before.open:
        for p in policy.periods(room, before.plan):
            if p.overnight and wall < p.end:
                return policy.period_types[p.type], True
    return None, True


def active(ovs, room, t):
    return [o for o in ovs if o.applies(room) and o.starts <= t < o.expires]


def check_allowed_at(policy, cal, ovs, room, t, ap):
    period, open_day = oracle(policy, cal, room, t)
    act = active(ovs, room, t)
    assert not any(o.effect == "deny" and not o.ap_only for o in act), t
    allow = [o for o in act if o.effect == "allow"]
    assert (period is not None and period.sessions) or allow, t
    if ap:
        spec = policy.rooms[room]
        assert not policy.wifi_never and spec.wifi == "allowed" and "ap" in spec.equipment
        assert open_day, "access point on a closed day"
        assert (period is not None and period.ap) or any(o.ap for o in allow), t
        assert not any(o.effect == "deny" and o.ap_only for o in act)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data())
def test_decisions_obey_the_law_and_the_periods(data):
    policy = load(data.draw(configs()))
    cal = calendar_for(policy)
    now = data.draw(instants())
    ovs = data.draw(overrides(now))
    room = data.draw(st.sampled_from(ROOMS + ("nowhere",)))
    d = decide(policy, cal, ovs, room, now)
    assert d.reason in REASONS and d.text_fr and d.text_en
    if not d.grant:
        assert not d.ap and d.until is None and d.duration_s == 0
        if room in policy.rooms and policy.rooms[room].sessions and not active(ovs, room, now):
            period, _ = oracle(policy, cal, room, now)
            assert period is None or not period.sessions or d.reason == "too_close_to_end", d
        return
    assert d.reason == "granted"
    # timestamps: PEP 495 makes an ambiguous local time (the repeated hour in
    # October) unequal to every other zone's datetime, whatever its instant
    assert d.until.timestamp() == (now + timedelta(seconds=d.duration_s)).timestamp()
    assert max(1, policy.min_session_s) <= d.duration_s
    period, _ = oracle(policy, cal, room, now)
    allow_now = [o for o in active(ovs, room, now) if o.effect == "allow"]
    limit = period.max_s if period is not None and period.sessions else policy.override_max_s
    if allow_now and not (period is not None and period.sessions):
        limit = policy.override_max_s
    assert d.duration_s <= limit
    if d.ap:
        assert d.duration_s <= policy.ap_cap_s
    # Every instant of the grant is inside what allows it: the period (or a
    # permission) and, for the access point, a period or permission with it.
    for k in range(9):
        # in UTC: aware arithmetic in Europe/Paris is wall-clock arithmetic and
        # can land in the hour that does not exist in March
        t = now + timedelta(seconds=d.duration_s * k / 8) if k < 8 else d.until.astimezone(UTC) - timedelta(seconds=1)
        check_allowed_at(policy, cal, ovs, room, t, d.ap)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data())
def test_offline_policy_is_small_and_agrees_with_decide(data):
    policy = load(data.draw(configs()))
    cal = calendar_for(policy)
    now = data.draw(instants()).replace(microsecond=0)
    ovs = data.draw(overrides(now))
    room = data.draw(st.sampled_from(ROOMS))
    doc = offline_policy(policy, cal, ovs, room, now)
    assert len(encode_offline(doc)) <= OFFLINE_MAX_BYTES
    assert doc["ap"] is False and doc["until"] <= int(now.timestamp()) + 48 * 3600
    previous_end = int(now.timestamp())
    for s, e, max_s, ap in doc["windows"]:
        assert previous_end <= s < e <= doc["until"] and ap in (0, 1) and 1 <= max_s <= 14400
        previous_end = e
        for t in (s, (s + e) // 2, e - 1):
            d = decide(policy, cal, ovs, room, datetime.fromtimestamp(t, UTC))
            assert d.grant or d.reason == "too_close_to_end", (t, d)
            if d.grant:
                assert d.ap == bool(ap) and d.duration_s <= max_s
    # Between windows, inside the horizon, decide refuses.
    edges = [int(now.timestamp())] + [x for w in doc["windows"] for x in w[:2]] + [doc["until"]]
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a > 2:
            assert not decide(policy, cal, ovs, room, datetime.fromtimestamp((a + b) // 2, UTC)).grant
