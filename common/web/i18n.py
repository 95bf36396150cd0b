"""The pages' languages: French by default (the schools' and the city's
language), English available. Each service keeps its own words, a
{lang: {key: text}} table; these functions read any such table."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

LANGS = ("fr", "en")
LANG_COOKIE = "preau-lang"


def translate(words: dict[str, dict[str, str]], lang: str, key: str, **values: object) -> str:
    """`key` in `lang`, else in French, else the key itself; `{name}`s filled from `values`."""
    text = words.get(lang, words["fr"]).get(key) or words["fr"].get(key) or key
    return text.format(**values) if values else text


def word_of(words: dict[str, dict[str, str]], lang: str, key: str) -> str:
    """A word of a small table (roles, states): the key itself when unknown."""
    return words.get(lang, words["fr"]).get(key, key)


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def local_time(unix: float | None, timezone: str, with_date: bool = True) -> str:
    if unix is None:
        return "—"
    moment = datetime.fromtimestamp(unix, ZoneInfo(timezone))
    return moment.strftime("%d/%m/%Y %H:%M" if with_date else "%H:%M:%S")
