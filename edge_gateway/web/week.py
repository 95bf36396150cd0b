"""The week's periods, edited in a page by the director.

The periods live in the school's configuration file (`[week.*]`,
docs/policies.md). The page never writes a file the gateway would refuse:

1. the form's periods become `[week.monday]` ... `[week.sunday]` tables
   (all seven, `periods = []` for a day without: as soon as `[week]`
   exists only the days it lists have periods), put in place of the
   file's own `[week.*]` tables, the rest of the file kept as written;
2. the candidate is checked by the configuration checker (Config.load on
   a copy beside the file, so relative paths resolve the same), whose
   message is shown at the field it names;
3. the preview shows the week as `preau policy explain` prints it;
4. saving checks everything again, refuses if the file changed since the
   preview, writes the file atomically (same mode), and reloads the
   gateway; a reload that refuses puts the previous text back."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import re
import stat
import tempfile
import tomllib
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from common.files import write_atomic
from common.web.auth import Allow, Principal, actor, form_of
from common.web.login import lang_of, page, see_other

from ..config import Config, ConfigError
from ..gateway import Gateway
from ..policy.explain import plan
from ..policy.model import WEEKDAYS, Period
from .i18n import t
from .render import e, field_error, layout

DIRECTOR = Allow("director", page=True)
ROWS_MAX = 10
Actor = Annotated[Principal, Depends(actor)]
router = APIRouter(include_in_schema=False)

DAY_WORDS = {"fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
             "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")}
WORDS = {
    "fr": {"title": "Modifier la semaine", "preview": "Vérifier et voir la semaine", "save": "Enregistrer",
           "start": "début", "end": "fin", "type": "type", "overnight": "finit le lendemain",
           "none": "—", "no_file": "Cette passerelle n'a pas été démarrée avec un fichier de configuration.",
           "not_editable": "Le fichier décrit la semaine autrement que par des tables [week.*] : modifiez-le à la main.",
           "changed": "Le fichier a changé depuis la vérification : vérifiez à nouveau.",
           "ok": "Configuration valable. Voici la semaine avec ces créneaux ; enregistrez pour l'appliquer.",
           "saved": "Semaine enregistrée et appliquée.", "period": "Créneau {n}",
           "hint": "Heures de l'école (HH:MM). Laissez une ligne vide pour n'y rien mettre."},
    "en": {"title": "Edit the week", "preview": "Check and show the week", "save": "Save",
           "start": "start", "end": "end", "type": "type", "overnight": "ends the next day",
           "none": "—", "no_file": "This gateway was not started from a configuration file.",
           "not_editable": "The file describes the week otherwise than with [week.*] tables: edit it by hand.",
           "changed": "The file changed since the check: check again.",
           "ok": "Valid configuration. Here is the week with these periods; save to apply it.",
           "saved": "Week saved and applied.", "period": "Period {n}",
           "hint": "School time (HH:MM). Leave a row empty for nothing."},
}
_WEEK_HEADER = re.compile(r"^\s*\[\s*week\s*(\.[^\]]*)?\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")
_ERROR_KEY = re.compile(r"week\.([a-z]+)\.periods\[(\d+)\](?:\.([a-z]+))?")


def _w(lang: str, key: str, **values: object) -> str:
    text = WORDS.get(lang, WORDS["fr"])[key]
    return text.format(**values) if values else text


def _hm(value: dt.time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


def without_week(text: str) -> str:
    """The file's text without its `[week]`/`[week.*]` tables (each up to
    the next table header)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if _ANY_HEADER.match(line):
            skipping = bool(_WEEK_HEADER.match(line))
        if not skipping:
            out.append(line)
    return "".join(out)


def week_toml(week: dict[str, list[dict]], holidays: tuple[Period, ...]) -> str:
    def line(p: dict) -> str:
        extra = ", overnight = true" if p.get("overnight") else ""
        return f'  {{ start = "{p["start"]}", end = "{p["end"]}", type = "{p["type"]}"{extra} }},\n'

    parts = ["\n# [week]: written by the gateway's week page\n"]
    for day in WEEKDAYS:
        rows = week.get(day, [])
        parts.append(f"[week.{day}]\nperiods = [" + ("\n" + "".join(line(p) for p in rows) if rows else "") + "]\n")
    if holidays:
        rows = [{"start": _hm(p.start), "end": _hm(p.end), "type": p.type, "overnight": p.overnight} for p in holidays]
        parts.append("[week.holidays]\nperiods = [\n" + "".join(line(p) for p in rows) + "]\n")
    return "\n".join(parts)


def _from_form(form: dict[str, str]) -> tuple[dict[str, list[dict]], dict[str, list[dict]], dict[tuple[str, int], int]]:
    """(the week to write, the rows as typed, (day, written index) -> form row)."""
    week: dict[str, list[dict]] = {}
    typed: dict[str, list[dict]] = {}
    where: dict[tuple[str, int], int] = {}
    for day in WEEKDAYS:
        week[day], typed[day] = [], []
        for i in range(ROWS_MAX):
            row: dict[str, Any] = {k: form.get(f"{day}-{i}-{k}", "").strip()[:40] for k in ("start", "end", "type")}
            row["overnight"] = bool(form.get(f"{day}-{i}-overnight"))
            typed[day].append(row)
            if row["start"] or row["end"] or row["type"]:
                # nothing but the value reaches the file: no quote, backslash or line break to close its string
                row = {k: re.sub(r'["\\\n\r]', "", v) if isinstance(v, str) else v for k, v in row.items()}
                where[(day, len(week[day]))] = i
                week[day].append(row)
    return week, typed, where


def _from_config(config: Config) -> dict[str, list[dict]]:
    return {day: [{"start": _hm(p.start), "end": _hm(p.end), "type": p.type, "overnight": p.overnight}
                  for p in config.policy.week.get(day, ())] for day in WEEKDAYS}


def _candidate(path: str, text: str, week: dict[str, list[dict]], holidays: tuple[Period, ...]) -> tuple[str, Config]:
    """The new file's text and its configuration; ConfigError as the checker says."""
    rest = without_week(text)
    try:
        if "week" in tomllib.loads(rest):
            raise ConfigError("week: not_editable")
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{os.path.basename(path)}: not valid TOML ({err})") from None
    candidate = rest.rstrip("\n") + "\n" + week_toml(week, holidays)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".week-check.", suffix=".toml", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(candidate)
        config = Config.load(tmp)
    except ConfigError as err:
        raise ConfigError(str(err).replace(os.path.basename(tmp), os.path.basename(path))) from None
    finally:
        os.unlink(tmp)
    return candidate, config


def _form(lang: str, gateway: Gateway, principal: Principal, rows: dict[str, list[dict]], errors: dict[str, str],
          action: str, digest: str) -> str:
    types = gateway.config.policy.period_types
    blocks = []
    for n, day in enumerate(WEEKDAYS):
        lines = []
        count = min(ROWS_MAX, max(len([r for r in rows.get(day, []) if r.get("start") or r.get("type")]) + 2, 3))
        for i in range(count):
            r = rows.get(day, [])[i] if i < len(rows.get(day, [])) else {}
            base = f"{day}-{i}"
            options = f'<option value="">{_w(lang, "none")}</option>' + "".join(
                f'<option value="{e(k)}"{" selected" if r.get("type") == k else ""}>{e(pt.label(lang))}</option>'
                for k, pt in types.items())
            err = errors.get(base)
            described = f' aria-describedby="{base}-error"' if err else ""
            label = _w(lang, "period", n=i + 1)
            lines.append(
                f'<div class="period-row" role="group" aria-label="{e(DAY_WORDS[lang][n])} — {e(label)}">'
                f'<input type="time" name="{base}-start" value="{e(r.get("start", ""))}" '
                f'aria-label="{e(label)} : {_w(lang, "start")}"{described}>'
                f'<input type="time" name="{base}-end" value="{e(r.get("end", ""))}" '
                f'aria-label="{e(label)} : {_w(lang, "end")}"{described}>'
                f'<select name="{base}-type" aria-label="{e(label)} : {_w(lang, "type")}"{described}>{options}</select>'
                f'<label class="inline"><input type="checkbox" name="{base}-overnight" value="1"'
                f'{" checked" if r.get("overnight") else ""}> {_w(lang, "overnight")}</label>'
                f'{field_error(err, base)}</div>')
        day_error = field_error(errors.get(day), day)
        blocks.append(f'<fieldset id="day-{day}"><legend>{e(DAY_WORDS[lang][n])}</legend>{"".join(lines)}'
                      f'{day_error}</fieldset>')
    general = field_error(errors.get("form"), "week-form")
    return (f'<form class="card wide" method="post" action="{action}" id="week-form">{general}'
            f'<p class="hint">{e(_w(lang, "hint"))}</p>'
            f'<input type="hidden" name="csrf" value="{e(principal.csrf or "")}">'
            f'<input type="hidden" name="digest" value="{e(digest)}">{"".join(blocks)}'
            f'<button type="submit" name="step" value="preview">{e(_w(lang, "preview"))}</button></form>')


def _errors_at(message: str, where: dict[tuple[str, int], int]) -> dict[str, str]:
    m = _ERROR_KEY.search(message)
    if m:
        day, index = m.group(1), int(m.group(2))
        row = where.get((day, index))
        if row is not None:
            return {f"{day}-{row}": message}
    m = re.search(r"week\.([a-z]+)", message)
    if m and m.group(1) in WEEKDAYS:
        return {m.group(1): message}
    return {"form": message}


def _page(request: Request, principal: Principal, body: str) -> Response:
    lang = lang_of(request)
    return page(request, layout(lang, _w(lang, "title"), body, principal=principal, active="/week", path="/week/edit"))


def _file(request: Request) -> str | None:
    return request.app.state.settings.config_path


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@router.get("/week/edit", dependencies=[Depends(DIRECTOR)])
async def edit(request: Request, who: Actor) -> Response:
    lang = lang_of(request)
    gateway: Gateway = request.app.state.gateway
    path = _file(request)
    if not path:
        return _page(request, who, f'<p class="error">{e(_w(lang, "no_file"))}</p>')
    text = await asyncio.to_thread(_read, path)
    notice = f'<p class="notice" role="status">{e(_w(lang, "saved"))}</p>' if request.query_params.get("saved") else ""
    return _page(request, who, notice + _form(lang, gateway, who, _from_config(gateway.config), {}, "/week/edit",
                                              _digest(text)))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


@router.post("/week/edit", dependencies=[Depends(DIRECTOR)])
async def check_or_save(request: Request, who: Actor) -> Response:
    """`step=preview`: check and show the week; `step=save`: check again and apply."""
    lang = lang_of(request)
    gateway: Gateway = request.app.state.gateway
    path = _file(request)
    if not path:
        return _page(request, who, f'<p class="error">{e(_w(lang, "no_file"))}</p>')
    form = await form_of(request)
    week, typed, where = _from_form(form)
    text = await asyncio.to_thread(_read, path)
    if form.get("digest") != _digest(text):
        return _page(request, who, _form(lang, gateway, who, typed, {"form": _w(lang, "changed")}, "/week/edit",
                                         _digest(text)))
    try:
        candidate, config = await asyncio.to_thread(_candidate, path, text, week, gateway.config.policy.holiday_periods)
    except ConfigError as err:
        message = _w(lang, "not_editable") if "not_editable" in str(err) else str(err)
        return _page(request, who, _form(lang, gateway, who, typed, _errors_at(message, where), "/week/edit",
                                         _digest(text)))
    if form.get("step") == "save":
        mode = stat.S_IMODE(os.stat(path).st_mode)
        try:
            await asyncio.to_thread(write_atomic, path, candidate, mode)
        except OSError as err:  # a file (or folder) the gateway's account may not write: nothing changed
            return _page(request, who, _form(lang, gateway, who, typed, {"form": f"{path}: {err.strerror}"},
                                             "/week/edit", _digest(text)))
        try:
            await gateway.reload(path, who=who.actor)
        except ConfigError as err:  # refused after all (a change made beside ours): the old text back
            await asyncio.to_thread(write_atomic, path, text, mode)
            return _page(request, who, _form(lang, gateway, who, typed, {"form": str(err)}, "/week/edit",
                                             _digest(text)))
        return see_other("/week/edit?saved=1")
    today = dt.datetime.fromtimestamp(gateway.clock(), ZoneInfo(config.policy.timezone)).date()
    monday = today - dt.timedelta(days=today.weekday())
    shown = await asyncio.to_thread(plan, config.policy, monday, lang)
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in form.items()
                     if k not in ("step",))
    body = (f'<p class="notice" role="status">{e(_w(lang, "ok"))}</p>'
            f'<pre class="plan" tabindex="0" aria-label="{e(t(lang, "nav_week"))}">{e(shown)}</pre>'
            f'<form method="post" action="/week/edit" id="week-save">{hidden}'
            f'<button type="submit" name="step" value="save">{e(_w(lang, "save"))}</button></form>'
            + _form(lang, gateway, who, typed, {}, "/week/edit", _digest(text)))
    return _page(request, who, body)
