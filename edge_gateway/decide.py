"""Answer a lesson request. A fixed rule for now; the policy engine
(timetable, periods, holidays, overrides) replaces `decide` later, keeping
its signature: pure, time injected, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config


@dataclass(frozen=True)
class Decision:
    grant: bool
    duration_s: int = 0
    projector: bool = False
    ap: bool = False
    reason: str | None = None
    text: str | None = None


def decide(config: Config, room: str, now: float) -> Decision:
    spec = config.rooms.get(room)
    if spec is None:
        return Decision(grant=False, reason="unknown_room", text="This room is not configured on the gateway.")
    if not spec.sessions:
        return Decision(grant=False, reason="room_disabled", text="Sessions are disabled in this room.")
    # Loi n° 2015-136: the access point only for a teaching session, never in a "Wi-Fi never" room.
    return Decision(grant=True, duration_s=config.duration_s, projector=True, ap=spec.wifi == "allowed")


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
            "now": int(now),
        }
    cmd = {"v": 1, "id": cmd_id, "cmd": "deny", "req": req, "reason": decision.reason, "now": int(now)}
    if decision.text:
        cmd["text"] = decision.text
    return cmd


def offline_policy(config: Config, room: str) -> dict:
    """The retained `policy`: what the board may do alone when the gateway is gone.
    AP off: without the gateway nobody checks the period, so the safe default."""
    spec = config.rooms[room]
    return {"v": 1, "start": spec.sessions, "max_s": config.duration_s, "ap": False}
