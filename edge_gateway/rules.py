"""The gateway's side of a lesson decision: the policy engine
(`edge_gateway.policy.engine`, pure) turned into protocol commands.

`PolicyState` is what the worker thread decides with: the configuration's
policy, its calendar (built once, cached lookups) and the overrides in
force. It is immutable and swapped whole, so a configuration reload or an
override change never leaves a half-updated rule set."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .config import Config
from .policy.engine import Decision, calendar_for, encode_offline
from .policy.engine import decide as engine_decide
from .policy.engine import offline_policy as engine_offline_policy
from .policy.model import Override

if TYPE_CHECKING:  # the calendar module (holiday data) is imported lazily, by calendar_for
    from .policy.calendar import SchoolCalendar

MAX_TEXT = 200  # keeps a deny well under the board's 1 KB payload limit


@dataclass(frozen=True)
class PolicyState:
    config: Config
    calendar: SchoolCalendar
    overrides: tuple[Override, ...] = field(default=())

    @classmethod
    def build(cls, config: Config, overrides: tuple[Override, ...] = ()) -> PolicyState:
        return cls(config, calendar_for(config.policy), tuple(overrides))

    def with_overrides(self, overrides) -> PolicyState:
        return PolicyState(self.config, self.calendar, tuple(overrides))

    def decide(self, room: str, now: float) -> Decision:
        return engine_decide(self.config.policy, self.calendar, self.overrides, room, _utc(now))

    def offline_policy(self, room: str, now: float) -> dict:
        return engine_offline_policy(self.config.policy, self.calendar, self.overrides, room, _utc(now))

    def offline_payload(self, room: str, now: float) -> bytes:
        return encode_offline(self.offline_policy(room, now))


def _utc(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def command(decision: Decision, cmd_id: str, req: int, now: float) -> dict:
    """The `cmd` payload (docs/protocol.md) that carries a decision to the board."""
    if decision.grant:
        return {
            "v": 1,
            "id": cmd_id,
            "cmd": "grant",
            "req": req,
            "duration_s": decision.duration_s,
            "ap": decision.ap,
            "projector": decision.projector,
            "grace_s": decision.grace_s,
            "now": int(now),
        }
    return {"v": 1, "id": cmd_id, "cmd": "deny", "req": req, "reason": decision.reason,
            "text": decision.text_fr[:MAX_TEXT], "now": int(now)}
