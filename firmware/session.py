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

IDLE = "idle"
REQUESTING = "requesting"
ACTIVE = "active"

# LED modes (docs/board.md describes the patterns a teacher sees).
LED_IDLE = "idle"
LED_WAITING = "waiting"
LED_ON = "on"
LED_ENDING = "ending"
LED_DENIED = "denied"
LED_OFFLINE = "offline"
LED_GRACE = "grace"
LED_ALONE = "alone"  # a session started on the offline policy

MAX_SESSION_S = 14400
DENIED_SHOW_MS = 3000
DEFAULT_POLICY = {"start": True, "max_s": 2700, "ap": False}
# Alone, the board does not start a session that would last less than this
# (the gateway's policy.min_session_s default): five minutes before the end
# of a window, a press is refused rather than cut short.
MIN_OFFLINE_S = 300


class Session:
    def __init__(self, events, wifi_never=False, request_timeout_ms=3000, ap_cap_s=7200, warn_s=300, grace_s=120):
        self.events = events
        self.wifi_never = wifi_never
        self.request_timeout_ms = request_timeout_ms
        self.ap_cap_ms = ap_cap_s * 1000
        self.warn_ms = warn_s * 1000
        self.grace_s = grace_s  # when the grant gives none, and offline
        self.policy = DEFAULT_POLICY
        self.windows = None  # the policy's windows (set_policy)
        self.state = IDLE
        self.ap = False  # the relay output; off at boot
        self.projector = False
        self.source = None  # "gateway" or "offline"
        self.req = 0
        self._deadline = 0  # request timeout
        self._started = 0
        self._ends = 0  # planned end (uptime ms); the grace runs after it
        self._grace_ms = 0
        self.ext_req = 0  # a pending extension request, 0 if none
        self._ap_allowed = False
        self._ap_end = 0  # the access point may run until then
        self._ap_since = 0
        self._ap_capped = False
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
                flat.append(w[0] - until)
                flat.append(w[1] - until)
                flat.append(w[2])
                flat.append(w[3])
            self.windows = flat
            policy = dict(policy)
            del policy["windows"]
        self.policy = policy

    def press_short(self, now):
        if self.state == ACTIVE:
            if self.ext_req:
                return "ignored"
            self.ext_req = self.events.next_seq()
            self.events.emit("lesson.requested", {"req": self.ext_req, "extend": True,
                                                  "remaining_s": self.remaining_s(now)})
            self._deadline = now + self.request_timeout_ms
            self._denied_until = -1
            return "extending"
        if self.state != IDLE:
            return "ignored"
        self.req = self.events.next_seq()
        self.events.emit("lesson.requested", {"req": self.req})
        self.state = REQUESTING
        self._deadline = now + self.request_timeout_ms
        self._denied_until = -1
        return "requested"

    def press_long(self, now):
        if self.state == ACTIVE:
            self._end(now, "teacher")
            return "ended"
        if self.state == REQUESTING:
            self.state = IDLE
            return "cancelled"
        return "ignored"

    def grant(self, req, duration_s, ap, projector, now, grace_s=None):
        """A gateway grant; returns (ok, result_or_error) for the ack."""
        if self.state == ACTIVE and req == self.ext_req:
            self._extend(now, duration_s, ap, "gateway", grace_s)
            return True, "extended"
        if self.state != REQUESTING or req != self.req:
            return False, "stale_request"
        self._start(now, duration_s, ap, projector, "gateway", grace_s)
        return True, "started"

    def deny(self, req, reason, now):
        if self.state == ACTIVE and req == self.ext_req:
            self._deny(now, reason, "gateway")
            return True, "denied"
        if self.state != REQUESTING or req != self.req:
            return False, "stale_request"
        self._deny(now, reason, "gateway")
        return True, "denied"

    def waiting_time(self):
        """True while a request or an extension waits for the gateway: the
        only moments the wall time is needed (offline windows)."""
        return self.state == REQUESTING or self.ext_req != 0

    def end(self, now, reason="command"):
        if self.state != ACTIVE:
            return False, "no_session"
        self._end(now, reason)
        return True, "ended"

    def offline_rule(self, unix):
        """What the retained policy allows now without the gateway:
        (max_s, ap), or None. With the time known and the policy still
        valid, only its windows count; otherwise its time-free fallback."""
        p = self.policy
        w = self.windows
        if unix is not None and w is not None and unix < p.get("until", 0):
            t = unix - p["until"]  # negative: inside the policy's validity
            for i in range(0, len(w), 4):
                if w[i] <= t < w[i + 1]:
                    length = min(w[i + 2], w[i + 1] - t)
                    return (length, w[i + 3] == 1) if length >= MIN_OFFLINE_S else None
            return None
        if p.get("start") and p.get("max_s", 0) > 0:
            return p["max_s"], bool(p.get("ap"))
        return None

    def tick(self, now, unix=None):
        if self.state == REQUESTING and now >= self._deadline:
            rule = self.offline_rule(unix)
            if rule is not None and rule[0] > 0:
                self._start(now, rule[0], rule[1], True, "offline", None)
            else:
                self._deny(now, "offline_policy", "offline")
        elif self.state == ACTIVE:
            if self.ext_req and now >= self._deadline:
                # Alone: what the retained policy allows from the session's end.
                rule = self.offline_rule(None if unix is None else unix + self.remaining_s(now))
                if rule is not None and rule[0] > 0:
                    self._extend(now, rule[0], rule[1], "offline", None)
                else:
                    self._deny(now, "offline_policy", "offline")
            if now >= self._ends + self._grace_ms:
                self._end(now, "time")
        self._update_ap(now)

    # -- outputs ----------------------------------------------------------
    def led(self, now, online=True):
        if self.state == REQUESTING:
            return LED_WAITING
        if now < self._denied_until:
            return LED_DENIED  # also a refused extension, for 3 s
        if self.state == ACTIVE:
            if self.ext_req:
                return LED_WAITING
            if now >= self._ends:
                return LED_GRACE
            if self._ends - now <= self.warn_ms:
                return LED_ENDING
            return LED_ALONE if self.source == "offline" else LED_ON
        return LED_IDLE if online else LED_OFFLINE

    def remaining_s(self, now):
        if self.state != ACTIVE:
            return 0
        return max(0, (self._ends - now) // 1000)

    # -- internals --------------------------------------------------------
    def _start(self, now, duration_s, ap, projector, source, grace_s):
        duration_s = max(1, min(int(duration_s), MAX_SESSION_S))
        self.state = ACTIVE
        self.source = source
        self.projector = projector
        self.ext_req = 0
        self._started = now
        self._ends = now + duration_s * 1000
        self._grace_ms = (self.grace_s if grace_s is None else grace_s) * 1000
        self._ap_allowed = bool(ap) and not self.wifi_never
        self._ap_end = self._ends + self._grace_ms
        self._ap_capped = False
        self.events.emit(
            "session.started",
            {"req": self.req, "duration_s": duration_s, "ap": self._ap_allowed,
             "projector": projector, "source": source},
        )
        self._update_ap(now)

    def _extend(self, now, added_s, ap, source, grace_s):
        req = self.ext_req
        self.ext_req = 0
        # Never past MAX_SESSION_S from the start, whatever the slots add up to.
        limit = self._started + MAX_SESSION_S * 1000
        was_end = self._ap_end
        old = self._ends
        self._ends = min(max(self._ends, now) + max(0, int(added_s)) * 1000, limit)
        if grace_s is not None:
            self._grace_ms = grace_s * 1000
        added = (self._ends - old) // 1000
        # The access point carries on only if it ran to the old end and the
        # new slot allows it; otherwise it stops where it was due to.
        carry = bool(ap) and self._ap_allowed and was_end >= old
        if carry:
            self._ap_end = self._ends + self._grace_ms
        self.events.emit("session.extended", {"req": req, "added_s": added, "ap": carry, "source": source})
        self._update_ap(now)

    def _deny(self, now, reason, source):
        self._denied_until = now + DENIED_SHOW_MS
        if self.state == ACTIVE:  # a refused extension: the session runs on
            req = self.ext_req
            self.ext_req = 0
            self.events.emit("session.denied", {"req": req, "reason": reason, "source": source, "extend": True})
            return
        self.state = IDLE
        self.events.emit("session.denied", {"req": self.req, "reason": reason, "source": source})

    def _end(self, now, reason):
        self.state = IDLE
        self.ext_req = 0
        self.projector = False
        self._update_ap(now, reason)
        self.events.emit("session.ended", {"reason": reason, "ran_s": (now - self._started) // 1000})

    def _update_ap(self, now, reason="session_end"):
        want = self.state == ACTIVE and self._ap_allowed and not self._ap_capped and now < self._ap_end
        cap_ms = self.ap_cap_ms
        if "cap_s" in self.policy:  # the gateway may only lower the board's own cap
            cap_ms = min(cap_ms, self.policy["cap_s"] * 1000)
        if want and self.ap and now - self._ap_since >= cap_ms:
            # The hard cap holds whatever the gateway and the network say.
            self._ap_capped = True
            want = False
            reason = "cap"
        if want == self.ap:
            return
        self.ap = want
        if want:
            self._ap_since = now
            self.events.emit("ap.changed", {"on": True, "reason": "session"})
        else:
            self.events.emit("ap.changed", {"on": False, "reason": reason})
