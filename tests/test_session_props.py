"""Property tests: whatever the sequence of presses, grants, denies, ends,
timeouts and time steps, the access-point relay obeys the law's fail-safes."""

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.events import Events
from firmware.session import ACTIVE, Session


class Clock:
    now = 0

    def uptime_ms(self):
        return self.now

    def time(self):
        return None


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
        if kind == "wait":
            now += act[1]
        elif kind != "policy":
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
