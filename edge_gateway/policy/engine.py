"""The lesson-time policy engine: pure functions of (policy, calendar,
overrides, room, time). No clock, no I/O: the caller passes `now`.

One core, `windows`, cuts time into windows with one rule each (may a session
start, for how long at most, with the projector, with the access point, and
why). `decide` reads the window holding `now`; `offline_policy` lists the
windows of the next 48 hours for the board; `explain` prints a week of them.

Loi n° 2015-136 art. 7: classroom Wi-Fi access points are off outside digital
teaching. Here the access point is granted only in a period whose type allows
it (or under an explicit allow override with `ap`), never on a closed day,
never in a Wi-Fi-never room or school, never for longer than the period's
maximum nor the hard cap."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from .model import MAX_MAX_S, WEEKDAYS, Override, PeriodType, RoomPolicy, SchoolPolicy

OFFLINE_MAX_BYTES = 1024

# Reason and note codes -> (French, English). Deny reasons and grant notes
# share one table so the API, the board's `deny.text` and `explain` say the
# same thing. Placeholders: {until} {period} {label} {minutes}.
REASONS: dict[str, tuple[str, str]] = {
    "granted": ("Séance accordée jusqu'à {until} ({period}).", "Session granted until {until} ({period})."),
    "unknown_room": ("Cette salle n'est pas configurée sur la passerelle.", "This room is not configured on the gateway."),
    "room_disabled": ("Les séances sont désactivées dans cette salle.", "Sessions are disabled in this room."),
    "no_period": (
        "Pas de séance maintenant : aucun créneau n'est prévu à cette heure.",
        "No session now: no period is planned at this time.",
    ),
    "period_no_sessions": ("Pas de séance pendant ce créneau ({period}).", "No session during this period ({period})."),
    "school_holiday": ("École fermée : {label} (vacances scolaires).", "School closed: {label} (school holidays)."),
    "public_holiday": ("École fermée : {label} (jour férié).", "School closed: {label} (public holiday)."),
    "closure": ("École fermée : {label}.", "School closed: {label}."),
    "special_day_closed": ("Pas de classe ce jour : {label}.", "No school on this day: {label}."),
    "override_deny": (
        "Séances suspendues par la direction : {label}.",
        "Sessions suspended by the school: {label}.",
    ),
    "too_close_to_end": (
        "Moins de {minutes} min avant la fin du créneau ({period}) : pas de nouvelle séance.",
        "Less than {minutes} min before the end of the period ({period}): no new session.",
    ),
    # Notes on a grant (Decision.warnings, Window.notes).
    "ap_on": ("Wi-Fi de la classe allumé pendant la séance.", "Classroom Wi-Fi on during the session."),
    "ap_not_in_period": (
        "Sans Wi-Fi : le Wi-Fi n'est pas prévu pendant ce créneau ({period}).",
        "Without Wi-Fi: Wi-Fi is not planned in this period ({period}).",
    ),
    "wifi_never_room": (
        "Sans Wi-Fi : cette salle est « jamais de Wi-Fi ».",
        "Without Wi-Fi: this room is \"Wi-Fi never\".",
    ),
    "wifi_never_school": (
        "Sans Wi-Fi : l'école est « jamais de Wi-Fi ».",
        "Without Wi-Fi: the school is \"Wi-Fi never\".",
    ),
    "override_deny_ap": ("Sans Wi-Fi : Wi-Fi suspendu par la direction.", "Without Wi-Fi: Wi-Fi suspended by the school."),
    "ap_closed_day": (
        "Sans Wi-Fi : jamais de Wi-Fi un jour de fermeture.",
        "Without Wi-Fi: never any Wi-Fi on a closed day.",
    ),
    "override_allow": (
        "Séance permise par une autorisation temporaire ({label}).",
        "Session allowed by a temporary permission ({label}).",
    ),
    "calendar_not_covered": (
        "Attention : le calendrier des vacances intégré ne couvre pas cette date ; "
        "seuls les jours fériés et les fermetures configurées par l'école s'appliquent.",
        "Warning: the built-in holiday calendar does not cover this date; "
        "only public holidays and the school's configured closures apply.",
    ),
}

_DEFAULT_LABEL = {
    "school_holiday": ("vacances", "holidays"),
    "public_holiday": ("jour férié", "public holiday"),
    "closure": ("fermeture", "closure"),
    "special_day_closed": ("journée spéciale", "special day"),
    "override_deny": ("décision temporaire", "temporary decision"),
    "override_allow": ("décision temporaire", "temporary decision"),
}


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC with one rule. `sessions` says whether a session
    may start; a session started here ends at `end` at the latest (the rule
    changes there: period end, closure, override) and lasts `max_s` at most.
    `reason` is "granted" or a deny code; `notes` are note codes."""

    start: datetime
    end: datetime
    sessions: bool
    max_s: int
    projector: bool
    ap: bool
    reason: str
    period: str | None = None
    label: str | None = None
    notes: tuple[str, ...] = ()

    def same_rule(self, other: Window) -> bool:
        return replace(self, start=other.start, end=other.end) == other


@dataclass(frozen=True)
class Decision:
    grant: bool
    until: datetime | None
    duration_s: int
    projector: bool
    ap: bool
    grace_s: int
    reason: str
    text_fr: str
    text_en: str
    period: str | None
    warnings: tuple[str, ...]


def calendar_for(policy: SchoolPolicy):
    """The school's calendar: zone holidays, public holidays (Alsace-Moselle
    included), the configured and imported closures and special days."""
    from .calendar import SchoolCalendar

    return SchoolCalendar(
        zone=policy.zone,
        alsace_moselle=policy.alsace_moselle,
        closures=policy.closures,
        special_days=policy.special_days,
    )


# --- local wall time ---------------------------------------------------------


@lru_cache(maxsize=4096)
def local_to_utc(day: date, wall: time, tz_name: str) -> datetime:
    """The first instant the wall clock reads `wall` on `day`. Periods are in
    wall time: on the 25-hour day a boundary in the repeated hour is its first
    pass (a period 01:00-04:00 lasts four real hours); on the 23-hour day a
    wall time that never shows is the jump itself (03:00 summer time)."""
    tz = ZoneInfo(tz_name)
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return _offset_change(min(first, second), max(first, second), tz)


def _offset_change(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    a, b = int(lo.timestamp()), int(hi.timestamp())
    off_a = datetime.fromtimestamp(a, tz).utcoffset()
    while b - a > 1:
        mid = (a + b) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == off_a:
            a = mid
        else:
            b = mid
    return datetime.fromtimestamp(b, UTC)


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")


# --- the core ------------------------------------------------------------------

_NO_PERIOD = ("none",)


def _paint(segments: list, start: datetime, end: datetime, value) -> list:
    """Paint `value` over [start, end). Segments are contiguous
    (start, end, value) tuples."""
    if start >= end:
        return segments
    out = []
    for a, b, v in segments:
        if b <= start or a >= end:
            out.append((a, b, v))
            continue
        if a < start:
            out.append((a, start, v))
        out.append((max(a, start), min(b, end), value))
        if b > end:
            out.append((end, b, v))
    return out


def _day_segments(policy: SchoolPolicy, calendar, room: str, day: date):
    """The day [00:00, next 00:00) local, cut by its periods, with its DayInfo."""
    tz = policy.timezone
    day_start = local_to_utc(day, time(0), tz)
    day_end = local_to_utc(day + timedelta(days=1), time(0), tz)
    info = calendar.day(day, room)
    if not info.open:
        segments = [(day_start, day_end, ("closed",))]
        if info.reason == "school_holiday" and day.weekday() < 5:
            for p in policy.holiday_periods:
                start = local_to_utc(day, p.start, tz)
                end = local_to_utc(day, p.end, tz)
                segments = _paint(segments, start, end, ("holiday", p.type))
        return segments, info
    segments = [(day_start, day_end, _NO_PERIOD)]
    before = day - timedelta(days=1)
    before_info = calendar.day(before, room)
    if before_info.open:
        # The tail of yesterday's overnight periods (a night event); today's
        # own periods are painted after and win.
        for p in policy.periods(room, before_info.plan or WEEKDAYS[before.weekday()], before):
            if p.overnight:
                segments = _paint(segments, day_start, local_to_utc(day, p.end, tz), ("period", p.type))
    for p in policy.periods(room, info.plan or WEEKDAYS[day.weekday()], day):
        start = local_to_utc(day, p.start, tz)
        end = day_end if p.overnight else local_to_utc(day, p.end, tz)
        # An overnight period is cut at midnight here; tomorrow continues it
        # only if tomorrow is open (a closure the next day ends the session).
        segments = _paint(segments, start, min(end, day_end), ("period", p.type))
    return segments, info


def _rule(
    policy: SchoolPolicy, room: RoomPolicy, base: tuple, info, active: list[Override], start, end
) -> Window:
    notes: list[str] = []
    if not info.covered:
        notes.append("calendar_not_covered")
    closed_day = base[0] in ("closed", "holiday")
    period: PeriodType | None = policy.period_types[base[1]] if base[0] in ("period", "holiday") else None
    sessions, max_s, projector, ap, label = False, 0, False, False, None
    if base[0] == "closed":
        reason, label = info.reason or "closure", info.label
    elif period is None:
        reason = "no_period"
    elif not period.sessions:
        reason = "period_no_sessions"
        if closed_day:
            label = info.label
    else:
        reason, sessions, max_s = "granted", True, period.max_s
        projector, ap = period.projector, period.ap
    period_name = period.name if period else None

    denies = [o for o in active if o.effect == "deny" and not o.ap_only]
    deny_ap = any(o.effect == "deny" and o.ap_only for o in active)
    allows = [o for o in active if o.effect == "allow"]
    if denies:
        sessions, reason, label = False, "override_deny", denies[0].why
    elif allows:
        if not sessions:
            # An allow opens sessions where the plan has none: outside any
            # period, or on a closed day (never the access point there).
            sessions, reason, max_s, projector = True, "granted", policy.override_max_s, True
            period_name, label, ap = None, allows[0].why, False
            notes.append("override_allow")
        if any(o.ap for o in allows):
            ap = True

    if not sessions:
        return Window(start, end, False, 0, False, False, reason, period_name, label, tuple(notes))
    projector = projector and room.projector
    if ap:
        if policy.wifi_never:
            ap, why = False, "wifi_never_school"
        elif not room.wifi_allowed:
            ap, why = False, "wifi_never_room"
        elif deny_ap:
            ap, why = False, "override_deny_ap"
        elif closed_day:
            ap, why = False, "ap_closed_day"
        else:
            why = "ap_on"
    elif policy.wifi_never:
        why = "wifi_never_school"
    elif not room.wifi_allowed:
        why = "wifi_never_room"
    elif closed_day:
        why = "ap_closed_day"
    else:
        why = "ap_not_in_period"
    notes.append(why)
    if ap:
        max_s = min(max_s, policy.ap_cap_s)
    return Window(start, end, True, max_s, projector, ap, "granted", period_name, label, tuple(notes))


def windows(
    policy: SchoolPolicy,
    calendar,
    overrides: Sequence[Override],
    room: str,
    start: datetime,
    end: datetime,
) -> list[Window]:
    """Cut [start, end) into windows, each with one rule; adjacent windows
    with the same rule are merged. Covers the whole interval: windows where
    no session may start carry the reason why."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return []
    spec = policy.rooms.get(room)
    if spec is None or not spec.sessions:
        reason = "unknown_room" if spec is None else "room_disabled"
        return [Window(start, end, False, 0, False, False, reason)]
    tz = ZoneInfo(policy.timezone)
    mine = sorted((o for o in overrides if o.applies(room)), key=lambda o: (o.starts, o.id))
    cuts = sorted({o.starts.astimezone(UTC) for o in mine} | {o.expires.astimezone(UTC) for o in mine})
    result: list[Window] = []
    day = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    while day <= last:
        segments, info = _day_segments(policy, calendar, room, day)
        day += timedelta(days=1)
        for a, b, base in segments:
            a, b = max(a, start), min(b, end)
            if a >= b:
                continue
            edges = [a] + [c for c in cuts if a < c < b] + [b]
            for s, e in pairwise(edges):
                active = [o for o in mine if o.starts <= s < o.expires]
                w = _rule(policy, spec, base, info, active, s, e)
                if result and result[-1].end == s and result[-1].same_rule(w):
                    result[-1] = replace(result[-1], end=e)
                else:
                    result.append(w)
    return result


# --- decisions ---------------------------------------------------------------


def _fmt_time(moment: datetime, ref: datetime | None, lang: str) -> str:
    hm = moment.strftime("%Hh%M" if lang == "fr" else "%H:%M")
    # The date only when it is not the day of `ref` (the moment of asking).
    if ref is not None and moment.date() != ref.date():
        return f"{hm} le {moment:%d/%m}" if lang == "fr" else f"{hm} on {moment:%d/%m}"
    return hm


def _period_text(policy: SchoolPolicy, period: str | None, lang: str) -> str:
    if period is None:
        return "autorisation temporaire" if lang == "fr" else "temporary permission"
    return policy.period_types[period].label(lang)


def sentence(code: str, lang: str, policy: SchoolPolicy, *, period: str | None = None, label: str | None = None,
             until: datetime | None = None, now: datetime | None = None, minutes: int = 0) -> str:
    """One reason or note as a sentence in `lang` ("fr" or "en")."""
    i = 0 if lang == "fr" else 1
    default = _DEFAULT_LABEL.get(code, ("", ""))[i]
    return REASONS[code][i].format(
        period=_period_text(policy, period, lang),
        label=label or default,
        until=_fmt_time(until, now, lang) if until is not None else "",
        minutes=minutes,
    )


def _decision(policy: SchoolPolicy, grant: bool, until: datetime | None, duration: int, projector: bool, ap: bool,
              reason: str, period: str | None, label: str | None, notes: tuple[str, ...], now: datetime,
              grace_s: int = 0) -> Decision:
    texts = []
    minutes = max(1, policy.min_session_s // 60)
    for lang in ("fr", "en"):
        parts = [sentence(code, lang, policy, period=period, label=label, until=until, now=now, minutes=minutes)
                 for code in (reason, *notes)]
        texts.append(" ".join(parts))
    return Decision(
        grant=grant,
        until=until,
        duration_s=duration,
        projector=projector,
        ap=ap,
        grace_s=grace_s if grant else 0,
        reason=reason,
        text_fr=texts[0],
        text_en=texts[1],
        period=period,
        warnings=tuple(notes),
    )


def decide(policy: SchoolPolicy, calendar, overrides: Sequence[Override], room: str, now: datetime) -> Decision:
    """Grant or deny a session asked in `room` at `now` (aware). A grant ends
    at the earliest of the window's end (period end, closure, override) and
    now + the period's maximum (the access point's hard cap when it is on)."""
    _require_aware(now, "now")
    tz = ZoneInfo(policy.timezone)
    # Arithmetic in UTC: aware datetimes sharing a zone add in wall time.
    now_utc = now.astimezone(UTC)
    now = now.astimezone(tz)
    # The horizon covers the longest session and its longest grace (900 s).
    w = windows(policy, calendar, overrides, room, now_utc, now_utc + timedelta(seconds=MAX_MAX_S + 901))[0]
    notes = tuple(n for n in w.notes if n == "calendar_not_covered")
    if not w.sessions:
        return _decision(policy, False, None, 0, False, False, w.reason, w.period, w.label, notes, now)
    duration = math.floor(min((w.end - now_utc).total_seconds(), w.max_s))
    if duration < max(1, policy.min_session_s):
        return _decision(policy, False, None, 0, False, False, "too_close_to_end", w.period, w.label, notes, now)
    until = (now_utc + timedelta(seconds=duration)).astimezone(tz)
    # The grace (the access point on past the session's end, to save work)
    # never reaches past the window: not into a break, a closure or the
    # start of a "deny" override.
    grace = max(0, min(policy.grace_s, math.floor((w.end - now_utc).total_seconds()) - duration))
    return _decision(policy, True, until, duration, w.projector, w.ap, "granted", w.period, w.label, w.notes, now,
                     grace)


# --- what the board may do alone ---------------------------------------------


def encode_offline(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def offline_policy(
    policy: SchoolPolicy, calendar, overrides: Sequence[Override], room: str, now: datetime, horizon_h: int = 48
) -> dict:
    """The retained `policy` payload: the windows of the next `horizon_h`
    hours when a session may start, `[start, end, max_s, ap01]` in Unix
    seconds; `start`/`max_s`/`ap` for a board that does not know the time
    (never the access point); `cap_s` the access point's hard cap. At most
    1024 bytes encoded: when too long, the horizon shrinks (`until` is then
    the end of the last window kept)."""
    _require_aware(now, "now")
    t0 = int(now.timestamp())
    until = t0 + horizon_h * 3600
    spec = policy.rooms.get(room)
    items: list[list[int]] = []
    for w in windows(policy, calendar, overrides, room, now, datetime.fromtimestamp(until, UTC)):
        if not w.sessions:
            continue
        s, e, ap = max(t0, int(w.start.timestamp())), int(w.end.timestamp()), int(w.ap)
        if e <= s:
            continue
        if items and items[-1][1] == s and items[-1][2] == w.max_s and items[-1][3] == ap:
            items[-1][1] = e
        else:
            items.append([s, e, w.max_s, ap])
    sessions_somewhere = any(
        policy.period_types[p.type].sessions for plan in WEEKDAYS for p in policy.periods(room, plan)
    )
    doc = {
        "v": 1,
        "start": bool(spec is not None and spec.sessions and sessions_somewhere),
        "max_s": policy.offline_max_s,
        "ap": False,  # without the time nobody knows the period: radio off
        "cap_s": policy.ap_cap_s,
        "until": until,
        "windows": items,
    }
    while len(encode_offline(doc)) > OFFLINE_MAX_BYTES and items:
        items.pop()
        doc["until"] = items[-1][1] if items else t0
    return doc
