"""What the web API accepts for an override and for a moment in time, parsed
and bounded before anything reaches the gateway.

Only the form and the bounds of each value live here. The override rules
(`who` is a role, the length of `why`, 14 days at most, `expires` in the
future, the room exists, `ap_only` only on a deny) are the gateway's, in one
place: the API passes its sentence on.

A moment is Unix seconds, or a date and time as people write them,
"2026-12-14T08:30" or "2026-12-14 08:30": without an offset it is the
school's wall time (`policy.timezone`), read as the policy engine reads its
periods (`local_to_utc`); with one ("Z", "+01:00") it is that instant. The
school's time zone is only known per request (a reload may change it), so
validation keeps a naive local time as a `datetime` and `to_unix` places
it."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from protocol.codec import NAME_PATTERN, valid_name

from .gateway import OVERRIDE_TIME_MAX, OVERRIDE_TIME_MIN
from .policy.engine import local_to_utc

# Bounds of every moment the API takes, the gateway's for override times
# (2000-01-01 to 2100-01-01): wide enough for any school year, narrow enough
# that no date arithmetic downstream can overflow.
EARLIEST_S = OVERRIDE_TIME_MIN
LATEST_S = OVERRIDE_TIME_MAX
EARLIEST = datetime.fromtimestamp(EARLIEST_S, UTC)
LATEST = datetime.fromtimestamp(LATEST_S, UTC)

LOCAL_TIME_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
                      r"(Z|[+-][0-9]{2}:[0-9]{2})?$")
_LOCAL_TIME = re.compile(LOCAL_TIME_PATTERN)
MOMENT_TEXT_MAX = 40

# Type bounds of the free texts: the gateway's own rules for a role and a
# reason are stricter, and say so in their sentence.
TEXT_MAX = 1000
ROOM_MAX = 32  # protocol.codec.valid_name
OVERRIDE_ID_PATTERN = r"^[a-z0-9-]{1,40}$"
# A year of minutes: beyond it `minutes` is a typo; the gateway's limit
# (14 days) refuses most of what is below.
MINUTES_MAX = 366 * 24 * 60

_FORM = ('Unix seconds (2000 to 2100), or a date and time like "2026-12-14T08:30" or "2026-12-14 08:30" '
         '(the school\'s local time; add "Z" or "+01:00" for another offset)')


def _refuse(detail: str) -> PydanticCustomError:
    return PydanticCustomError("moment", "expected {form}; {detail}", {"form": _FORM, "detail": detail})


def parse_moment(value: Any) -> float | datetime:
    """Unix seconds (float) or an ISO 8601 date and time: a float or an aware
    instant's seconds, or a naive `datetime` in the school's wall time."""
    if isinstance(value, bool):
        raise _refuse("got true/false")
    if isinstance(value, (int, float)):
        return _unix(float(value))
    if not isinstance(value, str):
        raise _refuse(f"got {type(value).__name__}")
    text = value.strip()
    if len(text) > MOMENT_TEXT_MAX:
        raise _refuse(f"got {len(text)} characters")
    try:
        return _unix(float(text))  # query strings carry numbers as text
    except ValueError:
        pass
    if not _LOCAL_TIME.match(text):
        raise _refuse(f"got {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as e:  # 2026-02-30, 25:00, an offset beyond a day
        raise _refuse(f"{text!r} is not a real date and time ({e})") from None
    if moment.tzinfo is not None:
        return _unix(moment.timestamp())
    if not EARLIEST.year <= moment.year < LATEST.year:
        raise _refuse(f"{text!r} is out of range")
    return moment


def _unix(seconds: float) -> float:
    if not math.isfinite(seconds):
        raise _refuse("got a value that is not a finite number")
    if not EARLIEST_S <= seconds <= LATEST_S:
        raise _refuse(f"{seconds:g} is out of range")
    return seconds


def to_unix(moment: float | datetime, timezone: str) -> float:
    """Unix seconds of a parsed moment; a naive one is wall time in `timezone`
    (a time the clock skips is the jump; a repeated one, its first pass)."""
    if isinstance(moment, datetime):
        return local_to_utc(moment.date(), moment.time(), timezone).timestamp()
    return moment


Moment = Annotated[
    float | datetime,
    PlainValidator(parse_moment),
    WithJsonSchema({
        "anyOf": [
            {"type": "number", "minimum": EARLIEST_S, "maximum": LATEST_S},
            {"type": "string", "pattern": LOCAL_TIME_PATTERN, "maxLength": MOMENT_TEXT_MAX},
        ],
        "description": _FORM,
        "examples": ["2026-12-14T08:30", 1797233400],
    }),
]


def _text(value: str) -> str:
    # A role or a reason is one line: a control character in it is a paste
    # gone wrong, and would garble the audit log and the logs.
    if any(c < " " or c == "\x7f" for c in value):
        raise PydanticCustomError("text", "expected one line of text, without control characters")
    return value


Text = Annotated[str, Field(max_length=TEXT_MAX), AfterValidator(_text)]


def _room(value: str) -> str:
    if not valid_name(value):
        raise PydanticCustomError("room_name", "expected a room name: 1 to 32 of a-z, 0-9 and '-'")
    return value


RoomName = Annotated[str, Field(max_length=ROOM_MAX, json_schema_extra={"pattern": NAME_PATTERN}),
                     AfterValidator(_room)]


class OverrideIn(BaseModel):
    """A temporary allow or deny, as the director types it."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key must not silently mean a default

    scope: Literal["room", "school"]
    room: RoomName | None = Field(default=None, examples=["cm2-b"])
    effect: Literal["allow", "deny"]
    ap: bool = False
    ap_only: bool = False
    minutes: int | None = Field(default=None, ge=1, le=MINUTES_MAX, description="from starts (or now); or give expires")
    starts: Moment | None = Field(default=None, description="now when absent")
    expires: Moment | None = None
    who: Text = Field(description='a role ("direction", "mairie"), not a name', examples=["direction"])
    why: Text = Field(examples=["Évaluation sur papier"])

    @model_validator(mode="after")
    def _one_end(self) -> OverrideIn:
        if self.minutes is None and self.expires is None:
            raise PydanticCustomError("override_end", "minutes or expires: give either minutes or expires")
        if self.minutes is not None and self.expires is not None:
            raise PydanticCustomError("override_end", "minutes or expires: give either minutes or expires, not both")
        return self
