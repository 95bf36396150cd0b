"""`preau policy explain`: the week's plan, room by room, for the director.

A dry run before the week starts: when each room may run sessions, with or
without the Wi-Fi access point, and why not. Reads only the configuration
file; no broker, no database, no overrides (those are set on the gateway)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from typing import TextIO
from zoneinfo import ZoneInfo

from .config import PolicyConfigError, load_policy_file
from .engine import Window, calendar_for, local_to_utc, windows
from .model import SchoolPolicy

_DAYS = {
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"),
}
_WORDS = {
    "fr": {
        "title": "Plan de la semaine du {first} au {last}",
        "school": "Commune : {commune} — zone {zone}{am} — fichier {source}",
        "am": ", Alsace-Moselle",
        "legend": "« séance » : projecteur, sans Wi-Fi ; « séance + Wi-Fi » : le point d'accès de la classe peut s'allumer pendant la séance.",
        "wifi_never_school": "Toute l'école est « jamais de Wi-Fi » : aucun point d'accès ne s'allume.",
        "session": "séance",
        "session_ap": "séance + Wi-Fi",
        "max": "{minutes} min max",
        "closed": "fermé ({label})",
        "override": "autorisation temporaire",
        "closed_all": "fermé : {text}",
        "none": "aucune séance",
        "weekend": "week-end, aucune séance",
        "disabled": "séances désactivées dans cette salle",
        "next_day": " (+1 j)",
        "warnings": "Avertissements :",
        "not_covered": "le calendrier des vacances intégré ne couvre pas le {day} : seuls les jours fériés et les fermetures de l'école s'appliquent (ajoutez les vacances dans [[closures]]).",
        "special": "journée spéciale : {label}",
        "no_ap": {
            "ap_not_in_period": "pas de Wi-Fi dans ce créneau",
            "wifi_never_room": "salle « jamais de Wi-Fi »",
            "wifi_never_school": "école « jamais de Wi-Fi »",
            "ap_closed_day": "jamais de Wi-Fi en vacances ni un jour de fermeture",
            "override_deny_ap": "Wi-Fi suspendu",
        },
    },
    "en": {
        "title": "Plan for the week from {first} to {last}",
        "school": "Commune: {commune} — zone {zone}{am} — file {source}",
        "am": ", Alsace-Moselle",
        "legend": "\"session\": projector, no Wi-Fi; \"session + Wi-Fi\": the classroom access point may come on during the session.",
        "wifi_never_school": "The whole school is \"Wi-Fi never\": no access point ever comes on.",
        "session": "session",
        "session_ap": "session + Wi-Fi",
        "max": "{minutes} min max",
        "closed": "closed ({label})",
        "override": "temporary permission",
        "closed_all": "closed: {text}",
        "none": "no session",
        "weekend": "weekend, no session",
        "disabled": "sessions disabled in this room",
        "next_day": " (+1 d)",
        "warnings": "Warnings:",
        "not_covered": "the built-in holiday calendar does not cover {day}: only public holidays and the school's closures apply (add the holidays as [[closures]]).",
        "special": "special day: {label}",
        "no_ap": {
            "ap_not_in_period": "no Wi-Fi in this period",
            "wifi_never_room": "\"Wi-Fi never\" room",
            "wifi_never_school": "\"Wi-Fi never\" school",
            "ap_closed_day": "never Wi-Fi on holidays or closed days",
            "override_deny_ap": "Wi-Fi suspended",
        },
    },
}


def _long_date(day: dt.date, lang: str) -> str:
    return f"{_DAYS[lang][day.weekday()]} {day.day} {_MONTHS[lang][day.month - 1]} {day.year}"


_KINDS = {
    "fr": {"school_holiday": "vacances scolaires", "public_holiday": "jour férié", "closure": "fermeture de l'école", "special_day_closed": "journée spéciale"},
    "en": {"school_holiday": "school holidays", "public_holiday": "public holiday", "closure": "school closure", "special_day_closed": "special day"},
}


def _closed(info, lang: str) -> str:
    kind = _KINDS[lang].get(info.reason or "closure", "")
    return f"{info.label} — {kind}" if info.label else kind


def _window_line(policy: SchoolPolicy, w: Window, day: dt.date, tz: ZoneInfo, lang: str) -> str:
    words = _WORDS[lang]
    start, end = w.start.astimezone(tz), w.end.astimezone(tz)
    span = f"{start:%H:%M}–{end:%H:%M}" + (words["next_day"] if end.date() > day else "")
    what = words["session_ap"] if w.ap else words["session"]
    period = policy.period_types[w.period].label(lang) if w.period else _WORDS[lang]["override"]
    details = [period, words["max"].format(minutes=w.max_s // 60)]
    details += [words["no_ap"][n] for n in w.notes if n in words["no_ap"]]
    if "override_allow" in w.notes and w.label:
        details.append(w.label)
    return f"{span:<13} {what:<16} {', '.join(details)}"


def plan(policy: SchoolPolicy, monday: dt.date, lang: str = "fr", rooms: Sequence[str] | None = None) -> str:
    """The text of the week starting `monday`."""
    words = _WORDS[lang]
    tz = ZoneInfo(policy.timezone)
    calendar = calendar_for(policy)
    rooms = list(rooms or policy.rooms)
    width = max(len(r) for r in rooms)
    sunday = monday + dt.timedelta(days=6)
    out = [
        words["title"].format(first=_long_date(monday, lang), last=_long_date(sunday, lang)),
        words["school"].format(
            commune=policy.commune or "?", zone=policy.zone, am=words["am"] if policy.alsace_moselle else "", source=policy.source
        ),
        words["legend"],
    ]
    if policy.wifi_never:
        out.append(words["wifi_never_school"])
    warnings: list[str] = list(policy.warnings)
    for offset in range(7):
        day = monday + dt.timedelta(days=offset)
        infos = {room: calendar.day(day, room) for room in rooms}
        if not all(i.covered for i in infos.values()):
            warnings.append(words["not_covered"].format(day=_long_date(day, lang)))
        out.append("")
        first = next(iter(infos.values()))
        start = local_to_utc(day, dt.time(0), policy.timezone)
        end = local_to_utc(day + dt.timedelta(days=1), dt.time(0), policy.timezone)
        per_room = {room: [w for w in windows(policy, calendar, (), room, start, end) if w.sessions] for room in rooms}
        if (
            not any(per_room.values())
            and all(not i.open for i in infos.values())
            and len({(i.reason, i.label) for i in infos.values()}) == 1
        ):
            out.append(f"{_long_date(day, lang)} — " + words["closed_all"].format(text=_closed(first, lang)))
            continue
        header = _long_date(day, lang)
        if not first.open and all(not i.open for i in infos.values()):
            header += " — " + _closed(first, lang)
        if first.kind == "special_day" and first.open and first.label:
            header += " — " + words["special"].format(label=first.label)
        if not any(per_room.values()) and all(i.open for i in infos.values()):
            out.append(f"{header} — " + (words["weekend"] if first.kind == "weekend" else words["none"]))
            continue
        out.append(header)
        for room in rooms:
            info, ws = infos[room], per_room[room]
            if not policy.rooms[room].sessions:
                lines = [words["disabled"]]
            elif not info.open and not ws:
                lines = [words["closed"].format(label=_closed(info, lang))]
            elif not ws:
                lines = [words["none"]]
            else:
                lines = [_window_line(policy, w, day, tz, lang) for w in ws]
            for n, line in enumerate(lines):
                out.append(f"  {room if n == 0 else '':<{width}}  {line}")
    if warnings:
        out += ["", words["warnings"]] + [f"  - {w}" for w in dict.fromkeys(warnings)]
    return "\n".join(out) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="preau policy explain",
        description="Print the week's plan: when each room may run sessions, with or without Wi-Fi, and why.",
    )
    p.add_argument("--config", required=True, help="the school's configuration file (school.toml)")
    p.add_argument("--week", help="any date in the week, YYYY-MM-DD (default: next Monday)")
    p.add_argument("--lang", choices=("fr", "en"), default="fr")
    p.add_argument("--room", action="append", help="only this room (repeatable)")
    return p


def main(argv: Sequence[str] | None = None, *, today: dt.date | None = None, out: TextIO | None = None) -> int:
    """Exit codes: 0 printed, 2 bad arguments or bad configuration."""
    # Annotated: typeshed's sys.stdout is partly Any, which would keep `out` Optional.
    stream: TextIO = out or sys.stdout
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed its message
        return int(e.code or 0)
    try:
        policy = load_policy_file(args.config)
    except PolicyConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.week:
        try:
            any_day = dt.date.fromisoformat(args.week)
        except ValueError:
            print(f"error: --week: expected a date YYYY-MM-DD, got {args.week!r}", file=sys.stderr)
            return 2
        monday = any_day - dt.timedelta(days=any_day.weekday())
    else:
        # The one place that reads the clock: the coming Monday, in the school's zone.
        today = today or dt.datetime.now(ZoneInfo(policy.timezone)).date()
        monday = today + dt.timedelta(days=7 - today.weekday())
    for room in args.room or ():
        if room not in policy.rooms:
            print(f"error: --room: unknown room {room!r} (expected one of: {', '.join(policy.rooms)})", file=sys.stderr)
            return 2
    stream.write(plan(policy, monday, args.lang, args.room))
    return 0


if __name__ == "__main__":
    sys.exit(main())
