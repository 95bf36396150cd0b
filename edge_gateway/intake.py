"""Board messages in, on the gateway's loop: the topic and payload checked
and bounded (protocol/codec.py), a room's flood refused, repeats told from
conflicts, the live registry moved, lesson requests decided and answered at
once. `handle()` returns what must become durable (the journal's operations)
and what to count once it is; it never touches the disk.

The dedup windows (the last DEDUP_WINDOW events and decisions, read from
disk at start) answer "seen before?" from memory: a request is never
answered twice, even across restarts, and a redelivered event is stored once."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from protocol import mac
from protocol.codec import MAX_DURATION_S, ProtocolError, parse, parse_topic

from . import history
from .limits import LogLimiter, RoomBuckets
from .registry import Registry
from .rules import clock_unsynced, command
from .school_link import BOARD_LEAVES

log = logging.getLogger("edge_gateway.gateway")

PAYLOAD_LOG_CHARS = 120

_REJECTION = {"not_json": "bad_json", "not_object": "bad_json", "version": "bad_version",
              "too_large": "too_large", "topic": "bad_topic"}


def rejection_reason(error: ProtocolError) -> str:
    """The gateway's metric label for the codec's own classification."""
    return _REJECTION.get(error.kind, "bad_field")


class Intake:
    def __init__(self, school: str, registry: Registry, *, decide: Callable[[str, float], Any],
                 send_cmd: Callable[[str, dict], None], buckets: RoomBuckets | None = None) -> None:
        self.school = school
        self.registry = registry
        self.receipt: tuple[str, int, int] | None = None
        self.decide = decide  # the policy in force: (room, unix time) -> Decision
        self.send_cmd = send_cmd
        self.buckets = buckets or RoomBuckets()
        self.logs = LogLimiter()
        self.last_seq = 0  # handed out, in arrival order; the journal commits them in that order
        self._events: OrderedDict[tuple[str, int, int], list[bytes]] = OrderedDict()
        self._decisions: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._timed: set[tuple[str, int]] = set()  # (room, boot) given the time
        self._time_ids = 0
        # room -> its board's message key (edge_gateway/fleet.py): a message
        # for a room is taken only when signed with that key (protocol/mac.py).
        self.keys: dict[str, bytes] = {}
        # Called with (room, ack) for every board ack: the gateway follows its technician commands.
        self.on_ack: Callable[[str, dict], None] | None = None
        # Set by the gateway (edge_gateway/clocksync.py): False, nothing that
        # depends on the hour is granted and no board is given our time.
        self.clock_synced = True

    def load(self, state: history.StartState) -> None:
        self._events = OrderedDict(state.events)
        self._decisions = OrderedDict(state.decisions)
        self.last_seq = state.last_seq

    def handle(self, msg: mqtt.MQTTMessage, now: float) -> tuple[list[tuple], list[tuple]]:
        """(operations for the journal, counts to apply once they are durable).
        After an authentic board event, `receipt` is its (room, boot, seq):
        the gateway tells the board once it is durable (`committed_to`), and
        only then does the board delete it (docs/outbox.md)."""
        ops: list[tuple] = []
        counts: list[tuple] = []
        self.receipt = None
        try:
            self._board_message(msg, now, ops, counts)
        except Exception:  # a bug must cost one message, never the gateway
            log.exception("gateway: unexpected error on %s %.200r", _topic_of(msg), msg.payload)
            return [], [("internal_errors", 1)]
        return ops, counts

    def _record(self, room: str, kind: str, now: float, body: str, boot: int | None = None,
                number: int | None = None, mark: bytes | None = None) -> tuple:
        self.last_seq += 1
        return ("rec", self.last_seq, room, kind, now, boot, number, body, mark)

    def _reject(self, reason: str, msg: mqtt.MQTTMessage, detail: str, counts: list, room: str = "?") -> None:
        if self.logs.allow(room):
            log.warning("rejected (%s) on %s: %s; payload %.*r", reason, _topic_of(msg), detail, PAYLOAD_LOG_CHARS,
                        msg.payload)
        else:
            counts.append(("logs_suppressed", 1))
        counts.append((("rejected", reason), 1))

    def _board_message(self, msg: mqtt.MQTTMessage, now: float, ops: list, counts: list) -> None:
        try:
            school, room, leaf = parse_topic(_topic_of(msg))
        except ProtocolError as e:
            return self._reject("bad_topic", msg, str(e), counts)
        if school != self.school:
            return self._reject("wrong_school", msg, "school %s is not %s" % (school, self.school), counts)
        if room == "gateway" or leaf not in BOARD_LEAVES:
            # Our own state coming back through `+/state`, or our retained policies.
            log.debug("ignored gateway-side message on %s", _topic_of(msg))
            return
        if not self.registry.known(room):
            return self._reject("unknown_room", msg, "room %s is not in the configuration" % room, counts)
        key = self.keys.get(room)
        if key is None:
            return self._reject("unprovisioned", msg, "room %s has no board provisioned (preau provision add)" % room,
                                counts, room)
        try:
            # The room is bound to its board's identity, whatever the broker let through.
            payload = mac.verify(key, _topic_of(msg), bytes(msg.payload))
        except ProtocolError as e:
            return self._reject("bad_mac", msg, str(e), counts, room)
        try:
            obj = parse(leaf, payload)
            body = payload.decode()
        except (ProtocolError, UnicodeDecodeError) as e:
            reason = rejection_reason(e) if isinstance(e, ProtocolError) else "bad_json"
            if leaf == "evt":
                # The board's own event, refused for good: it must not block
                # the ones behind it in the board's flash. Confirmed, counted.
                self.receipt = _numbers(room, payload)
            return self._reject(reason, msg, str(e), counts, room)
        if leaf == "tele":
            # Periodic readings update the live view only; the history keeps events.
            if not self.registry.is_history(room, obj["boot"]):
                self.registry.apply_tele(room, obj, now)
            counts.append((("accepted", leaf), 1))
            return
        if not self.buckets.take(room, now):
            # A flood from one client: what it would store is refused, counted, logged
            # once in a while; the other rooms keep their latency.
            if self.logs.allow(room):
                log.warning("room %s: more messages than a board sends (%s); refused, counted", room, leaf)
            counts.append((("rate_limited", leaf), 1))
            return
        if leaf == "state":
            self._state(room, obj, body, now, ops, counts)
        elif leaf == "evt":
            self._event(room, obj, body, now, ops, counts)
        elif leaf == "ack":
            ops.append(self._record(room, "ack", now, body, obj["boot"]))
            if self.on_ack is not None:
                self.on_ack(room, obj)
            if self.registry.is_history(room, obj["boot"]):
                counts.append(("history", 1))
            else:
                self.registry.touch(room, now)
        counts.append((("accepted", leaf), 1))

    def _state(self, room: str, obj: dict, body: str, now: float, ops: list, counts: list) -> None:
        if not obj["online"] and self.registry.is_history(room, obj["boot"]):
            # The Last Will of a boot already replaced by a newer birth.
            counts.append(("history", 1))
            ops.append(self._record(room, "state", now, body, obj["boot"]))
            return
        # A birth is the present, whatever came before it: a board replaced,
        # or its flash wiped, counts its boots from 1 again.
        fresh = self.registry.apply_state(room, obj, body, now)
        if obj["online"] and self.clock_synced and (room, obj["boot"]) not in self._timed:
            # The board has no trusted clock: give it ours at every boot (and
            # once after our own restart), so its offline policy windows and
            # event times work without waiting for the next grant. Ours only
            # when something vouches for it: a wrong hour handed to a board
            # would open its offline windows at the wrong time.
            self._send_time(room, obj["boot"], now)
            counts.append(("time_sent", 1))
        if not fresh:
            counts.append(("duplicates", 1))
            return
        ops.append(self._record(room, "state", now, body, obj["boot"]))
        ops.append(("room", tuple(self.registry.row(room).get(c) for c in history.ROOM_COLUMNS)))

    def _send_time(self, room: str, boot: int, now: float) -> None:
        self._timed.add((room, boot))
        self._time_ids += 1
        self.send_cmd(room, {"v": 1, "id": "t-%d-%d" % (int(now), self._time_ids), "cmd": "time", "now": int(now)})

    def time_boards(self, now: float) -> int:
        """Once the clock is synchronised: our time to every board online
        whose current boot has not had it (born while we could not vouch
        for it). How many were sent."""
        sent = 0
        for room, row in self.registry.snapshot().items():
            if row.get("online") and row.get("boot") is not None and (room, row["boot"]) not in self._timed:
                self._send_time(room, row["boot"], now)
                sent += 1
        return sent

    def _seen_event(self, key: tuple[str, int, int], mark: bytes) -> str:
        """"new", "duplicate" (same numbers, same content) or "conflict" (same
        numbers, other content: kept too, so a forged or stray message sent
        ahead never makes the board's own look like a repeat)."""
        known = self._events.get(key)
        if known is None:
            self._events[key] = [mark]
            if len(self._events) > history.DEDUP_WINDOW:
                self._events.popitem(last=False)
            return "new"
        if mark in known or b"" in known:  # b"": a stored body too damaged to compare
            return "duplicate"
        known.append(mark)
        return "conflict"

    def _event(self, room: str, obj: dict, body: str, now: float, ops: list, counts: list) -> None:
        boot, seq = obj["boot"], obj["seq"]
        self.receipt = (room, boot, seq)  # new, repeated or conflicting: it is stored
        mark = history.digest(obj)
        seen = self._seen_event((room, boot, seq), mark)
        if seen == "duplicate":
            counts.append(("duplicates", 1))  # QoS 1 redelivery
            return
        if seen == "conflict":
            counts.append(("conflicts", 1))
            if self.logs.allow(room):
                log.warning("room %s: event %s/%s arrived again with another content; both kept", room, boot, seq)
        ops.append(self._record(room, "evt", now, body, boot, seq, mark))
        if self.registry.is_history(room, boot):
            counts.append(("history", 1))
            log.info("room %s: event %s/%s from an old boot kept as history", room, boot, seq)
            return
        missing, fresh = self.registry.apply_evt(room, obj, now)
        ops.append(("room", tuple(self.registry.row(room).get(c) for c in history.ROOM_COLUMNS)))
        if missing:
            counts.append(("events_missing", missing))
            if self.logs.allow(room):
                log.warning("room %s: %d event(s) missing before boot %s seq %s", room, missing, boot, seq)
        if obj["type"] != "lesson.requested":
            return
        if not fresh:
            # Older than the board's birth: kept in its flash outbox while the
            # link was down; the board applied its offline policy long ago.
            counts.append(("history", 1))
            return
        req = obj["data"]["req"]
        if seen == "new" and (room, boot, req) in self._decisions:
            # A request is answered at most once, even across restarts.
            counts.append(("duplicates", 1))
            return
        data = obj["data"]
        if not self.clock_synced:
            # Every rule depends on the hour, and so would the `now` we hand the board.
            decision = clock_unsynced()
        elif data.get("extend"):
            # One more slot: what the policy allows from the session's current
            # end, which the board added to its own clock (uptime) on grant.
            decision = self.decide(room, now + min(data.get("remaining_s", 0), MAX_DURATION_S))
        else:
            decision = self.decide(room, now)
        if "calendar_not_covered" in decision.warnings:
            log.warning("room %s: decided without school-holiday data for this date; configured closures only", room)
        # The decision's own record seq (the next one) makes the command id
        # unique for ever, across restarts.
        cmd = command(decision, "g-%06d" % (self.last_seq + 1), req, now if self.clock_synced else None)
        body_cmd = json.dumps(cmd, separators=(",", ":"))
        # Answer first, from memory: a teacher is waiting; the disk is not.
        self.send_cmd(room, cmd)
        ops.append(self._record(room, "decision", now, body_cmd, boot, req))
        self._decisions[(room, boot, req)] = body_cmd
        if len(self._decisions) > history.DEDUP_WINDOW:
            self._decisions.popitem(last=False)
        counts.append((("decision", cmd["cmd"]), 1))
        log.info("room %s: %s request %s/%s (%s)", room, cmd["cmd"], boot, req, decision.reason)


def _topic_of(msg: mqtt.MQTTMessage) -> str:
    try:
        return msg.topic
    except UnicodeDecodeError:  # paho decodes lazily; a broken topic must still be logged
        return msg._topic.decode("utf-8", "replace")


def _numbers(room: str, payload: bytes) -> tuple[str, int, int] | None:
    """(room, boot, seq) of an event the contract refuses, when readable."""
    try:
        obj = json.loads(payload)
        boot, seq = obj["boot"], obj["seq"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    if all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 0xFFFFFFFF for n in (boot, seq)):
        return room, boot, seq
    return None
