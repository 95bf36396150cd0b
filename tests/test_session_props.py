"""Property tests: whatever the sequence of presses, grants, denies, ends,
timeouts and time steps, the access-point relay obeys the law's fail-safes."""

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.events import Events
from firmware.session import ACTIVE, Session
from tests.portable._util import FakeClock as Clock


actions = st.lists(
    st.one_of(
        st.tuples(st.just("short"), st.integers(0, 5000)),
        st.tuples(st.just("long"), st.integers(0, 5000)),
        st.tuples(st.just("grant"), st.integers(0, 5000), st.integers(1, 14400), st.booleans(), st.integers(-1, 1)),
        st.tuples(st.just("deny"), st.integers(0, 5000)),
        st.tuples(st.just("end"), st.integers(0, 5000)),
        st.tuples(st.just("policy"), st.booleans(), st.integers(0, 14400), st.booleans()),
        st.tuples(st.just("wait"), st.integers(0, 20_000_000)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(actions, st.booleans(), st.integers(60, 14400))
def test_ap_never_on_outside_an_allowed_session(seq, wifi_never, cap_s):
    clock = Clock()
    s = Session(Events(0, clock), wifi_never=wifi_never, ap_cap_s=cap_s)
    now = 0
    ap_on_since = None
    assert s.ap is False  # off at boot
    for act in seq:
        kind = act[0]
        if kind != "policy":
            now += act[1]
        if kind == "short":
            s.press_short(now)
        elif kind == "long":
            s.press_long(now)
        elif kind == "grant":
            s.grant(s.req + act[4], act[2], act[3], True, now)
        elif kind == "deny":
            s.deny(s.req, "x", now)
        elif kind == "end":
            s.end(now)
        elif kind == "policy":
            s.set_policy({"v": 1, "start": act[1], "max_s": act[2], "ap": act[3]})
        s.tick(now)
        if s.ap:
            assert s.state == ACTIVE
            assert not wifi_never
            assert now < s._ends
            if ap_on_since is None:
                ap_on_since = now
            assert now - ap_on_since < cap_s * 1000  # the hard cap, by uptime
        else:
            ap_on_since = None
        if s.state != ACTIVE:
            assert s.ap is False


@st.composite
def policies(draw):
    t = draw(st.integers(1_700_000_000, 1_900_000_000))
    windows = []
    for _ in range(draw(st.integers(0, 10))):
        t += draw(st.integers(0, 20000))
        end = t + draw(st.integers(1, 20000))
        windows.append([t, end, draw(st.integers(0, 14400)), draw(st.integers(0, 1))])
        t = end
    until = draw(st.integers(1_700_000_000, 1_900_100_000))
    return {"v": 1, "start": draw(st.booleans()), "max_s": draw(st.integers(0, 14400)), "ap": False,
            "until": until, "windows": windows}


@settings(max_examples=400, deadline=None)
@given(policies(), st.one_of(st.none(), st.integers(1_690_000_000, 1_910_000_000)))
def test_offline_rule_stays_inside_the_windows(policy, unix):
    from firmware.codec import check_policy
    from firmware.session import MIN_OFFLINE_S

    check_policy(policy)  # the generator only makes valid policies
    s = Session(Events(0, Clock()))
    s.set_policy(policy)
    rule = s.offline_rule(unix)
    if unix is None or unix >= policy["until"]:
        # the time-free fallback: never the access point (the gateway sends ap false)
        assert rule is None or (rule == (policy["max_s"], False) and policy["start"])
        return
    inside = [w for w in policy["windows"] if w[0] <= unix < w[1]]
    if rule is None:
        assert not inside or min(inside[0][2], inside[0][1] - unix) < MIN_OFFLINE_S
        return
    [(start, end, max_s, ap)] = inside
    length, with_ap = rule
    assert MIN_OFFLINE_S <= length <= max_s and unix + length <= end
    assert with_ap == (ap == 1)
