"""What the gateway knows about each room now, from births, Last Wills,
events and telemetry. Live values only ever come from the newest boot seen:
a message from an older boot is history (stored, forwarded, never applied).

Written by the gateway's worker thread only; `snapshot()` may be called from
any thread (the web API, the demo)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterable

from protocol.codec import session_after

from .history import ROOM_COLUMNS


def _empty(room: str) -> dict:
    return {c: None for c in ROOM_COLUMNS} | {"room": room}


class Registry:
    def __init__(self, rooms: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._rooms = {room: _empty(room) for room in rooms}
        # (boot, uptime_ms) of the newest board message applied to the live
        # view: a board back from an outage sends its birth first, then the
        # events and telemetry its flash outbox kept, older than that birth.
        self._marks: dict[str, tuple[int, int]] = {}
        self._devices: dict[str, dict] = {}  # the latest telemetry's projector and kit readings

    def _fresh(self, room: str, obj: dict) -> bool:
        mark = (obj["boot"], obj.get("uptime_ms", 0))
        if mark < self._marks.get(room, (-1, -1)):
            return False
        self._marks[room] = mark
        return True

    def load(self, rows: Iterable[dict]) -> None:
        with self._lock:
            for row in rows:
                if row["room"] in self._rooms:  # a room removed from the config is forgotten
                    self._rooms[row["room"]] = dict(row)
                    self._seed_mark(row)

    def _seed_mark(self, row: dict) -> None:
        # After a gateway restart: the last birth stored says where the board was.
        try:
            state = json.loads(row["state"] or "null")
            if state and state.get("online"):
                self._marks[row["room"]] = (state["boot"], state.get("uptime_ms", 0))
        except (ValueError, TypeError, KeyError, AttributeError):
            pass

    def set_rooms(self, rooms: Iterable[str]) -> None:
        """After a configuration reload: new rooms start empty, removed ones are forgotten."""
        with self._lock:
            wanted = list(rooms)
            self._rooms = {room: self._rooms.get(room) or _empty(room) for room in wanted}

    def known(self, room: str) -> bool:
        return room in self._rooms

    def row(self, room: str) -> dict:
        return self._rooms[room]

    def is_history(self, room: str, boot: int) -> bool:
        current = self._rooms[room]["boot"]
        return current is not None and boot < current

    def _new_boot(self, r: dict, boot: int) -> None:
        if r["boot"] != boot:
            r["boot"] = boot
            r["evt_seq"] = 0

    def apply_state(self, room: str, obj: dict, body: str, now: float) -> bool:
        """Apply a live state; False when it is identical to the last one (a retained
        birth seen again after a reconnect), so the caller need not store it twice."""
        with self._lock:
            r = self._rooms[room]
            if obj["online"]:
                # A birth is the present, whatever came before it (a boot
                # counter that failed to save may repeat a boot number).
                self._marks[room] = (obj["boot"], obj["uptime_ms"])
            if r["state"] == body:
                r["last_seen"] = now
                return False
            self._devices.pop(room, None)  # a birth or a death: the devices' readings are past
            self._new_boot(r, obj["boot"])
            r["online"] = obj["online"]
            if obj["online"]:
                for k in ("fw", "board", "session", "ap"):
                    r[k] = obj[k]
            else:
                # A board that is gone drives nothing: its relay falls back to off at boot.
                r["session"] = None
                r["ap"] = None
            r["state"] = body
            r["last_seen"] = now
            return True

    def apply_evt(self, room: str, obj: dict, now: float) -> tuple[int, bool]:
        """Apply a live event; returns how many events were skipped (a gap)
        before it, and whether it is the present (not older than what the
        live view already shows)."""
        with self._lock:
            r = self._rooms[room]
            self._new_boot(r, obj["boot"])
            seq = obj["seq"]
            missing = max(0, seq - (r["evt_seq"] or 0) - 1)
            r["evt_seq"] = max(seq, r["evt_seq"] or 0)
            r["last_seen"] = now
            if obj.get("replay") or not self._fresh(room, obj):
                return missing, False  # an old event kept in the board's outbox: not the present
            kind = obj["type"]
            after = session_after(obj)
            if after is not None:
                r["session"] = after
            if kind == "ap.changed":
                r["ap"] = obj["data"]["on"]
            elif kind == "boot":
                r["ap"] = False  # the firmware keeps the access point off at boot
            r["online"] = True
            return missing, True

    def apply_tele(self, room: str, obj: dict, now: float) -> None:
        with self._lock:
            r = self._rooms[room]
            self._new_boot(r, obj["boot"])
            r["online"] = True
            r["last_seen"] = now
            if not self._fresh(room, obj):
                return  # readings kept in the board's outbox during an outage: history
            r["session"] = obj["session"]
            r["ap"] = obj["ap"]
            # What the room's devices say, for the technician (live only, not stored in rooms)
            self._devices[room] = {k: obj[k] for k in ("projector", "lamp_h", "air") if k in obj}

    def touch(self, room: str, now: float) -> None:
        with self._lock:
            self._rooms[room]["last_seen"] = now

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            out = {}
            for room, r in self._rooms.items():
                out[room] = {k: copy.copy(r[k]) for k in ("room", "online", "boot", "fw", "board", "session", "ap", "last_seen")}
                out[room].update(copy.deepcopy(self._devices.get(room, {})))
                if out[room]["online"] is not None:
                    out[room]["online"] = bool(out[room]["online"])
                if out[room]["ap"] is not None:
                    out[room]["ap"] = bool(out[room]["ap"])
            return out

