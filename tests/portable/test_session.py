# Session state machine, button and LED logic: run under CPython (pytest) and
# in the real MicroPython VM (tests/test_fw_vm.py). Plain asserts only.
from firmware.button import LONG, SHORT, ButtonLogic
from firmware.events import Events
from firmware.led import PATTERNS, level
from firmware.session import ACTIVE, IDLE, MAX_SESSION_S, REQUESTING, Session

from ._util import FakeClock


def make(**kw):
    kw.setdefault("grace_s", 0)  # the grace has tests of its own below
    clock = FakeClock()
    ev = Events(3, clock)
    return Session(ev, **kw), ev, clock


def types(ev):
    return [e["type"] for e in ev.queue]


def test_ap_off_at_boot_and_idle():
    s, ev, _ = make()
    assert s.ap is False
    s.tick(0)
    assert s.ap is False and s.state == IDLE


def test_press_grant_end_by_time():
    s, ev, c = make()
    assert s.press_short(0) == "requested"
    assert s.state == REQUESTING
    req = ev.queue[-1]["data"]["req"]
    assert req == ev.queue[-1]["seq"]
    ok, text = s.grant(req, 60, True, True, 100)
    assert ok and text == "started"
    assert s.state == ACTIVE and s.ap is True
    s.tick(30000)
    assert s.ap is True
    s.tick(60100)
    assert s.state == IDLE and s.ap is False
    assert types(ev) == ["lesson.requested", "session.started", "ap.changed", "ap.changed", "session.ended"]
    assert ev.queue[-1]["data"] == {"reason": "time", "ran_s": 60}


def test_stale_grant_is_refused():
    s, ev, _ = make()
    s.press_short(0)
    ok, err = s.grant(s.req + 1, 60, True, True, 10)
    assert not ok and err == "stale_request" and s.state == REQUESTING
    s.press_long(20)  # teacher gives up
    ok, err = s.grant(s.req, 60, True, True, 30)
    assert not ok and s.state == IDLE and s.ap is False


def test_deny_shows_denied_then_idle():
    s, ev, _ = make()
    s.press_short(0)
    ok, _ = s.deny(s.req, "room_disabled", 50)
    assert ok and s.state == IDLE and s.ap is False
    assert s.led(100) == "denied"
    assert s.led(5000) == "idle"
    assert ev.queue[-1]["data"]["reason"] == "room_disabled"


def test_timeout_applies_offline_policy_without_ap_by_default():
    s, ev, _ = make(request_timeout_ms=3000)
    s.press_short(0)
    s.tick(2999)
    assert s.state == REQUESTING
    s.tick(3000)
    assert s.state == ACTIVE and s.source == "offline" and s.ap is False


def test_offline_policy_refusal():
    s, ev, _ = make()
    s.set_policy({"v": 1, "start": False, "max_s": 0, "ap": False})
    s.press_short(0)
    s.tick(5000)
    assert s.state == IDLE
    assert ev.queue[-1]["type"] == "session.denied"
    assert ev.queue[-1]["data"]["reason"] == "offline_policy"


def test_wifi_never_room_never_energises_relay():
    s, ev, _ = make(wifi_never=True)
    s.press_short(0)
    s.grant(s.req, 600, True, True, 10)
    assert s.state == ACTIVE and s.ap is False


def test_hard_cap_turns_ap_off_but_session_goes_on():
    s, ev, _ = make(ap_cap_s=60)
    s.press_short(0)
    s.grant(s.req, 3600, True, True, 0)
    assert s.ap is True
    s.tick(59999)
    assert s.ap is True
    s.tick(60000)
    assert s.ap is False and s.state == ACTIVE
    assert ev.queue[-1]["data"] == {"on": False, "reason": "cap"}
    s.tick(70000)
    assert s.ap is False


def test_the_policys_cap_lowers_the_boards_hard_cap():
    # A board set to the longest cap (4 h) in a school whose retained policy
    # says one hour: a 4-hour grant keeps the access point one hour only.
    s, ev, _ = make(ap_cap_s=MAX_SESSION_S)
    s.set_policy({"v": 1, "start": True, "max_s": 2700, "ap": False, "cap_s": 3600})
    s.press_short(0)
    s.grant(s.req, MAX_SESSION_S, True, True, 0)
    s.tick(3_599_999)
    assert s.ap is True
    s.tick(3_600_000)
    assert s.ap is False and s.state == ACTIVE
    assert ev.queue[-1]["data"] == {"on": False, "reason": "cap"}
    s.tick(MAX_SESSION_S * 1000)
    assert s.state == IDLE and ev.queue[-1]["data"]["reason"] == "time"


def test_the_policys_cap_lowers_the_cap_of_a_session_started_alone():
    # No answer from the gateway: the retained policy's fallback starts the
    # session (the access point on, 40 min) and its cap_s stops the access point.
    s, ev, _ = make(ap_cap_s=MAX_SESSION_S, request_timeout_ms=1000)
    s.set_policy({"v": 1, "start": True, "max_s": 2400, "ap": True, "cap_s": 600})
    s.press_short(0)
    s.tick(1000)
    assert s.state == ACTIVE and s.source == "offline" and s.ap is True
    s.tick(1000 + 599_999)
    assert s.ap is True
    s.tick(1000 + 600_000)
    assert s.ap is False and s.state == ACTIVE
    assert ev.queue[-1]["data"] == {"on": False, "reason": "cap"}
    s.tick(1000 + 2_400_000)  # the policy's max_s, not the board's 4 hours
    assert s.state == IDLE and ev.queue[-1]["data"] == {"reason": "time", "ran_s": 2400}


def test_the_policys_cap_never_raises_the_boards():
    s, ev, _ = make(ap_cap_s=600)
    s.set_policy({"v": 1, "start": True, "max_s": 2700, "ap": False, "cap_s": 7200})
    s.press_short(0)
    s.grant(s.req, 3600, True, True, 0)
    s.tick(599_999)
    assert s.ap is True
    s.tick(600_000)
    assert s.ap is False and ev.queue[-1]["data"] == {"on": False, "reason": "cap"}


def test_long_press_ends_session():
    s, ev, _ = make()
    s.press_short(0)
    s.grant(s.req, 600, True, True, 0)
    assert s.press_long(1000) == "ended"
    assert s.state == IDLE and s.ap is False
    assert ev.queue[-1]["data"]["reason"] == "teacher"


def test_led_ending_within_five_minutes():
    s, ev, _ = make()
    s.press_short(0)
    assert s.led(1) == "waiting"
    s.grant(s.req, 600, False, True, 0)
    assert s.led(1000) == "on"
    assert s.led(300001) == "ending"


def test_events_bounded_drop_oldest_counted():
    c = FakeClock()
    ev = Events(0, c, capacity=4)
    for i in range(10):
        ev.emit("button", {"press": "short"})
    assert len(ev.queue) == 4 and ev.dropped == 6
    assert [e["seq"] for e in ev.queue] == [7, 8, 9, 10]


def test_button_short_long_and_bounce():
    b = ButtonLogic(debounce_ms=30, long_ms=2000)
    got = []
    # bounce: 10 ms pulses never make a press
    for t in range(0, 100, 10):
        r = b.update(t % 20 == 0, t)
        if r:
            got.append(r)
    assert got == []
    b = ButtonLogic(debounce_ms=30, long_ms=2000)
    got = [r for r in (b.update(t < 200, t) for t in range(0, 400, 10)) if r]
    assert got == [SHORT]
    b = ButtonLogic(debounce_ms=30, long_ms=2000)
    got = [(t, r) for t, r in ((t, b.update(t < 3000, t)) for t in range(0, 3200, 10)) if r]
    assert got == [(2000, LONG)]  # reported while still held, once


def test_led_patterns_distinct():
    seen = []
    for mode in PATTERNS:
        trace = tuple(level(mode, t) for t in range(0, 6000, 50))
        assert trace not in seen, mode
        seen.append(trace)
    assert level("on", 12345) == 1


def test_offline_windows_apply_when_time_known():
    s, ev, _ = make(request_timeout_ms=1000)
    t0 = 1763900000
    s.set_policy({"v": 1, "start": True, "max_s": 2700, "ap": False, "cap_s": 1800, "until": t0 + 172800,
                  "windows": [[t0, t0 + 3000, 5400, 1], [t0 + 7000, t0 + 9000, 1800, 0]]})
    assert s.offline_rule(t0 + 100) == (2900, True, 0)  # clipped to the window's end
    assert s.offline_rule(t0 + 7100) == (1800, False, 0)
    assert s.offline_rule(t0 + 5000) is None  # between windows: no session alone
    assert s.offline_rule(None) == (2700, False, None)  # time unknown: the fallback
    assert s.offline_rule(t0 + 200000) == (2700, False, None)  # policy expired: the fallback
    s.press_short(0)
    s.tick(1000, t0 + 100)
    assert s.state == ACTIVE and s.ap is True and s.source == "offline"
    s.tick(1000 + 1800 * 1000 - 1)
    assert s.ap is True
    s.tick(1000 + 1800 * 1000)  # the policy's cap_s lowers the board's cap, mid-session
    assert s.ap is False and s.state == ACTIVE


def test_offline_window_refusal_between_windows():
    s, ev, _ = make(request_timeout_ms=1000)
    t0 = 1763900000
    s.set_policy({"v": 1, "start": True, "max_s": 2700, "ap": False, "until": t0 + 1000,
                  "windows": [[t0 + 500, t0 + 900, 600, 0]]})
    s.press_short(0)
    s.tick(1000, t0 + 100)
    assert s.state == IDLE
    assert ev.queue[-1]["data"]["reason"] == "offline_policy"


def test_offline_window_too_close_to_its_end_is_refused():
    s, ev, _ = make()
    t0 = 1763900000
    s.set_policy({"v": 1, "start": True, "max_s": 2700, "ap": False, "until": t0 + 10000,
                  "windows": [[t0, t0 + 1000, 5400, 1]]})
    assert s.offline_rule(t0 + 600) == (400, True, 0)
    assert s.offline_rule(t0 + 800) is None  # 200 s left: refused, not cut short


def test_short_press_in_a_session_asks_for_one_more_slot():
    s, ev, _ = make()
    s.press_short(0)
    s.grant(s.req, 600, True, True, 100)
    assert s.press_short(1000) == "extending"
    assert s.led(1000) == "waiting"  # feedback before the gateway answers
    req = ev.queue[-1]["data"]
    assert req["extend"] is True and req["remaining_s"] == 599
    assert s.press_short(1100) == "ignored"  # one pending extension at a time
    assert s.grant(s.ext_req, 2700, True, True, 1200) == (True, "extended")
    assert ev.queue[-1]["type"] == "session.extended"
    assert ev.queue[-1]["data"] == {"req": req["req"], "added_s": 2700, "ap": True, "source": "gateway"}
    assert s.remaining_s(1200) == (100 + 3300 * 1000 - 1200) // 1000
    s.tick(100 + 3300 * 1000 - 1)
    assert s.state == ACTIVE and s.ap is True
    s.tick(100 + 3300 * 1000)
    assert s.state == IDLE and s.ap is False


def test_a_slot_without_the_access_point_stops_it_at_the_old_end():
    s, ev, _ = make()
    s.press_short(0)
    s.grant(s.req, 600, True, True, 0)
    s.press_short(1000)
    s.grant(s.ext_req, 600, False, True, 1000)
    assert ev.queue[-1]["data"]["ap"] is False
    s.tick(599_999)
    assert s.ap is True
    s.tick(600_000)
    assert s.ap is False and s.state == ACTIVE  # the lesson goes on, the Wi-Fi stops
    s.tick(1_200_000)
    assert s.state == IDLE


def test_a_refused_extension_keeps_the_session_and_says_denied():
    s, ev, _ = make()
    s.press_short(0)
    s.grant(s.req, 600, True, True, 0)
    s.press_short(1000)
    assert s.deny(s.ext_req, "period_ended", 1500) == (True, "denied")
    assert s.state == ACTIVE and s.ap is True
    assert ev.queue[-1]["data"]["extend"] is True
    assert s.led(2000) == "denied" and s.led(1500 + 3000) == "on"


def test_extension_alone_follows_the_offline_policy_at_the_sessions_end():
    s, ev, _ = make()
    s.press_short(0)
    s.grant(s.req, 600, False, True, 0)
    unix = 1_790_000_000
    # a window from 5 minutes after the session's end, then nothing
    s.set_policy({"v": 1, "start": False, "max_s": 0, "ap": False, "until": unix + 86400,
                  "windows": [[unix + 600, unix + 3600, 1800, 0]]})
    s.press_short(10_000)
    s.tick(10_000 + 3000, unix + 13)  # timeout: the board decides alone
    added = ev.queue[-1]["data"]
    assert ev.queue[-1]["type"] == "session.extended" and added["source"] == "offline"
    # the window ends 3000 s after the session's planned end (unix + 600)
    assert added["added_s"] == 1800
    s.press_short(20_000)
    s.tick(23_000, unix + 23)  # at the new end (unix + 2400) only 1200 s of window: still >= 5 min
    assert ev.queue[-1]["data"]["added_s"] == 1200
    s.press_short(30_000)
    s.tick(33_000, unix + 33)  # the window is over at the new end: refused
    assert ev.queue[-1]["type"] == "session.denied" and ev.queue[-1]["data"]["source"] == "offline"


def test_grace_keeps_the_access_point_then_ends():
    s, ev, _ = make(grace_s=120)
    s.press_short(0)
    s.grant(s.req, 600, True, True, 0, 60)  # the grant's grace wins over the board's
    s.tick(600_000)
    assert s.state == ACTIVE and s.ap is True and s.led(600_000) == "grace"
    assert s.remaining_s(600_000) == 0
    s.tick(659_999)
    assert s.ap is True
    s.tick(660_000)
    assert s.state == IDLE and s.ap is False
    assert ev.queue[-2]["type"] == "ap.changed" and ev.queue[-1]["data"]["reason"] == "time"


def test_a_press_in_the_grace_extends_from_now():
    s, ev, _ = make(grace_s=120)
    s.press_short(0)
    s.grant(s.req, 600, True, True, 0)
    s.tick(650_000)
    s.press_short(650_000)
    s.grant(s.ext_req, 600, True, True, 651_000)
    assert s.remaining_s(651_000) == 600
    s.tick(651_000 + 600_000 + 119_999)
    assert s.ap is True
    s.tick(651_000 + 600_000 + 120_000)
    assert s.state == IDLE and s.ap is False


def test_extensions_never_pass_four_hours():
    s, ev, _ = make()
    s.press_short(0)
    s.grant(s.req, 14000, False, True, 0)
    s.press_short(1000)
    s.grant(s.ext_req, 7200, False, True, 1000)
    assert ev.queue[-1]["data"]["added_s"] == 400
    assert s.remaining_s(0) == 14400


def test_an_access_point_that_went_off_never_comes_back_in_the_session():
    s, ev, _ = make(grace_s=600)
    s.press_short(0)
    s.grant(s.req, 3000, True, True, 0)
    s.press_short(1000)
    s.grant(s.ext_req, 300, False, True, 1000)  # a slot without the access point
    s.tick(3_600_000)  # the old end plus its grace: the access point goes off, the lesson goes on
    assert s.state == ACTIVE and s.ap is False
    s.press_short(3_700_000)
    assert s.grant(s.ext_req, 600, True, True, 3_700_000) == (True, "extended")
    assert ev.queue[-1]["data"]["ap"] is False
    s.tick(3_700_001)
    assert s.ap is False


def test_a_command_for_req_0_is_stale_when_no_extension_waits():
    s, ev, _ = make()
    s.press_short(0)
    s.grant(s.req, 600, True, True, 0)
    assert s.grant(0, 3600, True, True, 1000) == (False, "stale_request")
    assert s.deny(0, "x", 1000) == (False, "stale_request")
    assert s.remaining_s(1000) == 599


def test_offline_grace_never_reaches_past_the_window():
    s, ev, _ = make(grace_s=120)
    t0 = 1763900000
    s.set_policy({"v": 1, "start": False, "max_s": 0, "ap": False, "until": t0 + 10000,
                  "windows": [[t0, t0 + 3000, 1800, 1], [t0 + 4000, t0 + 5000, 900, 1]]})
    assert s.offline_rule(t0 + 100) == (1800, True, 120)  # 1100 s of window left after it
    assert s.offline_rule(t0 + 4050) == (900, True, 50)  # 50 s left: the grace is cut there
    s.press_short(0)
    s.tick(3000, t0 + 4050)
    s.tick(3000 + 950 * 1000 - 1)
    assert s.ap is True
    s.tick(3000 + 950 * 1000)
    assert s.ap is False and s.state == IDLE
