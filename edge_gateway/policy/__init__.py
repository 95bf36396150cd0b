"""The lesson-time policy: when may a classroom run a session, with or without
the projector and the Wi-Fi access point (loi n° 2015-136, art. 7).

Pure code, no I/O except reading the configuration's iCalendar files at load:
`config.load_policy` builds an immutable `SchoolPolicy`, `engine.decide`
answers a request, `engine.offline_policy` says what a board may do alone,
`explain` prints the week's plan for the director. docs/policies.md explains
the model."""

from .model import Override, Period, PeriodType, RoomPolicy, SchoolPolicy

__all__ = ["Override", "Period", "PeriodType", "RoomPolicy", "SchoolPolicy"]
