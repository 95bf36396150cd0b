"""The live classroom grid's data: each room as the director sees it, and
the latest events, pushed to the pages as server-sent events.

Two sources, both already kept by the gateway: the registry's snapshot in
memory (online, boot, firmware, session, access point, and the latest
telemetry's projector, lamp hours and kit readings) and the events the
journal has committed to the history (a session's length, a projector that
changed state between two telemetry messages, a kit plugged in). The
registry offers no subscription, so one task per web loop reads both every
POLL_S while somebody watches: the snapshot is a copy of a few dicts, and
the database is read only when the gateway's last seq has moved. A board's
change reaches the page in well under a second."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections import deque
from collections.abc import Callable
from contextlib import closing
from typing import Any

from ..gateway import Gateway
from ..history import read_records, reader

POLL_S = 0.2
EVENTS_KEPT = 30
SEED_EVENTS = 500  # read at the first look: enough to know each room's session and kit


def _read_events(path: str, after: int, newest: int, first: bool) -> list[tuple[int, str, float, str]]:
    """(seq, room, at, body) of the events stored after seq `after`, oldest
    first; at the first look, the newest `newest` only (history.read_records)."""
    if first:
        return [(r.seq, r.room, r.at, r.body) for r in reversed(read_records(path, None, ("evt",), newest))]
    with closing(reader(path)) as conn:
        return conn.execute("SELECT seq, room, at, body FROM records WHERE kind = 'evt' AND seq > ? ORDER BY seq",
                            (after,)).fetchall()


class LiveFeed:
    """What the grid shows, kept up to date while a page listens."""

    def __init__(self, gateway: Gateway, poll_s: float = POLL_S) -> None:
        self.gateway = gateway
        self.poll_s = poll_s
        self.rooms: dict[str, dict] = {}
        self.events: deque[dict] = deque(maxlen=EVENTS_KEPT)
        self._overlay: dict[str, dict] = {}  # from the events: ends_at, projector, lamp_h, kit, boot
        self._tele_projector: dict[str, Any] = {}
        self._seq = 0
        self._seeded = False
        self._listeners: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None
        self._starting = asyncio.Lock()
        self._reading = asyncio.Lock()  # one look at a time: a page's first load and the task may overlap

    # listening -------------------------------------------------------------------

    async def subscribe(self) -> asyncio.Queue:
        """A queue that receives ("room", row) and ("event", event) as they
        change; the current rooms are what `self.rooms` holds after this."""
        async with self._starting:
            if self._task is None or self._task.done():
                await self.refresh()
                self._task = asyncio.get_running_loop().create_task(self._run(), name="pages-live")
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self._listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._listeners.discard(queue)

    async def _run(self) -> None:
        while self._listeners:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
            except (sqlite3.Error, OSError):
                pass  # the database busy or moved: the next look tries again; /healthz says why
        self._task = None

    def _send(self, item: tuple[str, dict]) -> None:
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):  # a page that stopped reading misses updates
                queue.put_nowait(item)

    # looking ---------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the registry, and the history if it grew; tell the listeners what changed."""
        async with self._reading:
            await self._look()

    async def _look(self) -> None:
        snapshot = self.gateway.rooms()
        last = self.gateway.metrics["last_seq"]
        if last > self._seq or not self._seeded:
            seeding = not self._seeded
            rows = await asyncio.to_thread(_read_events, self.gateway.config.db, self._seq, SEED_EVENTS, seeding)
            for seq, room, at, body in rows:
                self._seq = max(self._seq, seq)
                self._apply_event(room, at, body, snapshot, announce=not seeding)
            self._seq = max(self._seq, last)
            self._seeded = True
        for room, row in snapshot.items():
            view = self._view(room, row)
            if self.rooms.get(room) != view:
                self.rooms[room] = view
                self._send(("room", view))
        for room in [r for r in self.rooms if r not in snapshot]:  # removed by a configuration reload
            del self.rooms[room]

    def _apply_event(self, room: str, at: float, body: str, snapshot: dict, announce: bool) -> None:
        try:
            obj = json.loads(body)
            kind, data, boot = obj["type"], obj.get("data") or {}, obj["boot"]
        except (ValueError, KeyError, TypeError):
            return
        event = {"room": room, "at": at, "type": kind, "data": data}
        self.events.appendleft(event)
        if announce:
            self._send(("event", event))
        live = snapshot.get(room)
        if obj.get("replay") or live is None or (live.get("boot") is not None and boot < live["boot"]):
            return  # kept in a board's outbox, or an older boot's: history, not the present
        o = self._overlay.setdefault(room, {})
        if o.get("boot") != boot:
            o.clear()
            o["boot"] = boot
        if kind == "session.started":
            o["ends_at"] = at + int(data.get("duration_s", 0))
        elif kind == "session.extended":
            o["ends_at"] = (o.get("ends_at") or at) + int(data.get("added_s", 0))
        elif kind in ("session.ended", "boot"):
            o["ends_at"] = None
        elif kind == "projector.changed":
            o["projector"] = data.get("state")
            if "lamp_h" in data:
                o["lamp_h"] = data["lamp_h"]
        elif kind == "kit.attached":
            o["kit"] = data.get("kit")
        elif kind == "kit.detached":
            o["kit"] = None

    def _view(self, room: str, row: dict) -> dict:
        o = self._overlay.get(room, {})
        if row.get("online") is False or (row.get("boot") is not None and o.get("boot") not in (None, row["boot"])):
            o = self._overlay[room] = {"boot": row.get("boot")}  # a death, or a new boot: what we knew is past
        tele = row.get("projector")
        if tele != self._tele_projector.get(room):
            # new telemetry says otherwise: it is newer than the event we had
            self._tele_projector[room] = tele
            if tele is not None:
                o["projector"] = tele
        projector = o.get("projector") or tele
        lamp_h = row.get("lamp_h") if row.get("lamp_h") is not None else o.get("lamp_h")
        active = row.get("session") == "active"
        return {
            "room": room, "online": row.get("online"), "boot": row.get("boot"), "fw": row.get("fw"),
            "board": row.get("board"), "session": row.get("session"), "ap": row.get("ap"),
            "last_seen": row.get("last_seen"), "wifi": row.get("wifi"), "sessions": row.get("sessions"),
            "projector": projector if row.get("online") else None, "lamp_h": lamp_h,
            "air": row.get("air"), "kit": o.get("kit") if row.get("online") else None,
            "ends_at": o.get("ends_at") if active else None,
        }


def feed_of(app_state: Any, gateway: Gateway, factory: Callable[[Gateway], LiveFeed] = LiveFeed) -> LiveFeed:
    feed = getattr(app_state, "live_feed", None)
    if feed is None:
        feed = app_state.live_feed = factory(gateway)
    return feed
