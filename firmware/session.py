# The lesson session state machine. Pure: time comes in as `now`, the board's
# uptime in milliseconds (firmware/clock.py), never the wall clock, so a clock
# step from the gateway cannot stretch a session or the access point's time.
#
# Loi 2015-136 art. 7: in primary-school classrooms the Wi-Fi access point is
# off outside digital teaching. The relay output `ap` is therefore derived,
# at every step, from the state alone: on only inside an active session that
# allows it, before the session's end, before the hard cap counted from the
# moment the relay came on, and never for a "Wi-Fi never" room.
#
# A short press during a session asks for one more slot (the gateway's
# `grant` for that `req` adds its duration; alone, the offline policy at the
# session's end decides). When the time is up the session enters its grace
# (`grace_s`, from the grant or the board's config): the LED says so, the
# access point stays on so pupils can save their work, a short press still
# extends; then it ends.
#
# RAM (the board's heap budget): every method, attribute name and string
# costs heap for ever once loaded, so the machine is a few public methods
# that call each other (the timeouts go through grant/deny with source
# "offline") and private constants are `_X = const(...)`, which cost nothing.
# LED modes are the literal strings of docs/board.md. Event types are built
# as "session." + the result: a literal longer than 10 characters is a heap
# object of its own on the board, a short one an interned name shared with
# the other modules.
from protocol.wire import MAX_DURATION_S as MAX_SESSION_S  # the session's name for it

from .compat import const

IDLE = "idle"
REQUESTING = "requesting"
ACTIVE = "active"

# Alone, the board does not start a session that would last less than this
# (the gateway's policy.min_session_s default): five minutes before the end
# of a window, a press is refused rather than cut short.
MIN_OFFLINE_S = const(300)
_DENIED_SHOW_MS = const(3000)
_WARN_MS = const(300_000)  # the LED says "ending" from 5 minutes before the end


class Session:
    def __init__(self, events, wifi_never=False, request_timeout_ms=3000, ap_cap_s=7200, grace_s=120):
        self.events = events
        self.wifi_never = wifi_never
        self.request_timeout_ms = request_timeout_ms
        self.ap_cap_s = ap_cap_s
        self.grace_s = grace_s  # when the grant gives none, and offline
        self.policy = {"start": True, "max_s": 2700, "ap": False}
        self.windows = None  # the policy's windows (set_policy)
        self.state = IDLE
        self.ap = False  # the relay output; off at boot
        self.projector = False
        self.source = None  # "gateway" or "offline"
        self.req = 0
        self.ext_req = 0  # a pending extension request, 0 if none
        self._deadline = 0  # request timeout
        self._started = 0
        self._ends = 0  # planned end (uptime ms); the grace runs after it
        self._grace_ms = 0
        # The access point may run until then; 0 when the session does not
        # allow it (its grant, or a "Wi-Fi never" room).
        self._ap_end = 0
        self._ap_since = 0  # when the relay came on; -1: capped for this session
        self._denied_until = -1

    # -- inputs -----------------------------------------------------------
    def set_policy(self, policy):
        windows = policy.get("windows")
        self.windows = None
        if windows is not None:
            # Unix times are heap-allocated big ints on the board (past 2**30):
            # 25 windows held as lists cost about 2 KB. Kept instead as one
            # flat list of small ints, times as offsets from `until`.
            until = policy.get("until", 0)
            flat = []
            for w in windows:
                flat += (w[0] - until, w[1] - until, w[2], w[3])
            self.windows = flat
            policy = dict(policy)
            del policy["windows"]
        self.policy = policy

    def press_short(self, now):
        if self.waiting_time():
            return "ignored"  # one request (or extension) at a time
        req = self.events.next_seq()
        self._deadline = now + self.request_timeout_ms
        self._denied_until = -1
        data = {"req": req}
        if self.state == ACTIVE:  # one more slot
            self.ext_req = req
            data["extend"] = True
            data["remaining_s"] = self.remaining_s(now)
            result = "extending"
        else:
            self.req = req
            self.state = REQUESTING
            result = "requested"
        self.events.emit("lesson." + "requested", data)  # "lesson.requested"
        return result

    def press_long(self, now):
        if self.state == REQUESTING:
            self.state = IDLE
            return "cancelled"
        return "ended" if self.end(now, "teacher")[0] else "ignored"

    def grant(self, req, duration_s, ap, projector, now, grace_s=None, source="gateway"):
        """A gateway grant (tick passes source "offline" for the board's own
        decision); returns (ok, result_or_error) for the ack."""
        if self.state == ACTIVE and self.ext_req and req == self.ext_req:
            old = self._ends
            # Never past MAX_SESSION_S from the start, whatever the slots add up to.
            ends = self._ends = min(max(old, now) + max(0, int(duration_s)) * 1000, self._started + MAX_SESSION_S * 1000)
            if grace_s is not None:
                self._grace_ms = grace_s * 1000
            # The access point carries on only if it is on now and the new
            # slot allows it: one that went off (its slot ended, or the hard
            # cap) never comes back within the session, nor restarts its cap.
            ap = bool(ap) and self.ap
            if ap:
                self._ap_end = ends + self._grace_ms
            data = {"req": req, "added_s": (ends - old) // 1000, "ap": ap, "source": source}
            result = "extended"
        elif self.state != REQUESTING or req != self.req:
            return False, "stale_request"
        else:
            duration_s = max(1, min(int(duration_s), MAX_SESSION_S))
            self.state = ACTIVE
            self.source = source
            self.projector = projector
            self._started = now
            ends = self._ends = now + duration_s * 1000
            grace_ms = self._grace_ms = (self.grace_s if grace_s is None else grace_s) * 1000
            ap = bool(ap) and not self.wifi_never
            self._ap_end = ends + grace_ms if ap else 0
            self._ap_since = 0  # not capped
            data = {"req": req, "duration_s": duration_s, "ap": ap, "projector": projector, "source": source}
            result = "started"
        self.ext_req = 0
        self.events.emit("session." + result, data)  # "session.started" or "session.extended"
        self._update_ap(now)
        return True, result

    def deny(self, req, reason, now, source="gateway"):
        data = {"req": req, "reason": reason, "source": source}
        if self.state == ACTIVE and self.ext_req and req == self.ext_req:
            self.ext_req = 0  # a refused extension: the session runs on
            data["extend"] = True
        elif self.state != REQUESTING or req != self.req:
            return False, "stale_request"
        else:
            self.state = IDLE
        self._denied_until = now + _DENIED_SHOW_MS
        result = "denied"
        self.events.emit("session." + result, data)  # "session.denied"
        return True, result

    def waiting_time(self):
        """True while a request or an extension waits for the gateway: the
        only moments the wall time is needed (offline windows)."""
        return self.state == REQUESTING or self.ext_req != 0

    def end(self, now, reason="command"):
        if self.state != ACTIVE:
            return False, "no_session"
        self.state = IDLE
        self.ext_req = 0
        self.projector = False
        self._update_ap(now, reason)
        result = "ended"
        self.events.emit("session." + result, {"reason": reason, "ran_s": (now - self._started) // 1000})
        return True, result

    def offline_rule(self, unix):
        """What the retained policy allows now without the gateway:
        (max_s, ap, grace_s or None for the board's own), or None. With the time known and the policy still
        valid, only its windows count; otherwise its time-free fallback."""
        p = self.policy
        w = self.windows
        until = p.get("until", 0)
        if unix is not None and w is not None and unix < until:
            t = unix - until  # negative: inside the policy's validity
            for i in range(0, len(w), 4):
                if w[i] <= t < w[i + 1]:
                    t = w[i + 1] - t  # what is left of the window
                    n = min(w[i + 2], t)  # the session's length
                    # the grace never reaches past the window, as the gateway's
                    return (n, w[i + 3] == 1, min(self.grace_s, t - n)) if n >= MIN_OFFLINE_S else None
            return None
        if p.get("start") and p.get("max_s", 0) > 0:
            return p["max_s"], bool(p.get("ap")), None
        return None

    def tick(self, now, unix=None):
        if self.waiting_time() and now >= self._deadline:
            # No answer from the gateway: the board decides alone, on the
            # retained policy; for an extension, from the session's end.
            req = self.ext_req
            if not req:
                req = self.req
            elif unix is not None:
                unix += self.remaining_s(now)
            rule = self.offline_rule(unix)
            if rule:
                self.grant(req, rule[0], rule[1], True, now, rule[2], "offline")
            else:
                self.deny(req, "offline_policy", now, "offline")
        if self.state == ACTIVE and now >= self._ends + self._grace_ms:
            self.end(now, "time")
        self._update_ap(now)

    # -- outputs ----------------------------------------------------------
    def led(self, now, online=True):
        if self.waiting_time():
            return "waiting"
        if now < self._denied_until:
            return "denied"  # also a refused extension, for 3 s
        if self.state == ACTIVE:
            if now >= self._ends:
                return "grace"
            if self._ends - now <= _WARN_MS:
                return "ending"
            return "alone" if self.source == "offline" else "on"
        return "idle" if online else "offline"

    def remaining_s(self, now):
        return max(0, (self._ends - now) // 1000) if self.state == ACTIVE else 0

    # -- internals --------------------------------------------------------
    def _update_ap(self, now, reason="session_end"):
        want = self.state == ACTIVE and self._ap_since >= 0 and now < self._ap_end
        cap_s = self.ap_cap_s
        # The gateway's policy may only lower the board's own cap.
        if want and self.ap and now - self._ap_since >= min(cap_s, self.policy.get("cap_s", cap_s)) * 1000:
            # The hard cap holds whatever the gateway and the network say.
            self._ap_since = -1
            want = False
            reason = "cap"
        if want != self.ap:
            self.ap = want
            if want:
                self._ap_since = now
                reason = "session"
            self.events.emit("ap.changed", {"on": want, "reason": reason})
