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


CLOCK_UNSYNCED = "clock_unsynced"


def clock_unsynced() -> Decision:
    """The answer while nothing vouches for the gateway's clock
    (edge_gateway/clocksync.py): every rule of the policy depends on the
    hour, so none is applied, and the refusal says why. A board that gets
    no answer at all (the gateway gone) keeps its own offline policy,
    bounded by its uptime."""
    return Decision(
        grant=False, until=None, duration_s=0, projector=False, ap=False, grace_s=0, reason=CLOCK_UNSYNCED,
        text_fr="Pas de séance accordée : l'horloge de la passerelle n'est pas à l'heure (pas de serveur de "
                "temps depuis le démarrage). Prévenez le technicien.",
        text_en="No session granted: the gateway's clock is not set (no time server since it started). "
                "Tell the technician.",
        period=None, warnings=())


def command(decision: Decision, cmd_id: str, req: int, now: float | None) -> dict:
    """The `cmd` payload (docs/protocol.md) that carries a decision to the
    board; `now` is None when the gateway's clock is not to be trusted: the
    board then keeps its own (a board takes its clock from any `now`)."""
    if decision.grant:
        cmd: dict = {
            "v": 1,
            "id": cmd_id,
            "cmd": "grant",
            "req": req,
            "duration_s": decision.duration_s,
            "ap": decision.ap,
            "projector": decision.projector,
            "grace_s": decision.grace_s,
        }
    else:
        cmd = {"v": 1, "id": cmd_id, "cmd": "deny", "req": req, "reason": decision.reason,
               "text": decision.text_fr[:MAX_TEXT]}
    if now is not None:
        cmd["now"] = int(now)
    return cmd
