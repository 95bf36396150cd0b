"""End to end from the board (docs/outbox.md, "Until the gateway has it"):
the board deletes an event from its flash outbox only once the gateway says
it committed it (`committed_to`), not once the school broker acknowledged
it. A broker killed with kill -9 before its autosave then loses nothing.

The real firmware on a simulated board, the locked school broker (a real
Mosquitto), the real gateway and its SQLite database."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from devkit.sim.classroom import SimClassroom
from devkit.testing import school_clock
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from tests.helpers import await_for

pytestmark = pytest.mark.broker
N = 150


def stored_markers(db: str) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT body FROM records WHERE kind = 'evt' ORDER BY seq").fetchall()
    finally:
        conn.close()
    import json

    out = []
    for (body,) in rows:
        evt = json.loads(body)
        if evt["type"] == "button" and evt["data"].get("press") == "short" and "n" in evt["data"]:
            out.append(evt["data"]["n"])
    return out


def test_a_school_broker_killed_before_its_autosave_loses_no_event(mosquitto, tmp_path):
    config = Config.from_dict(mosquitto.config(str(tmp_path)) | {
        "rooms": {"cm2-b": {"wifi": "allowed"}}, "policy": {"zone": "C"}})
    gateway = Gateway(config, clock=school_clock(), reconnect_max_s=1).start()
    sim = SimClassroom(mosquitto.board_config("cm2-b"), storage=str(tmp_path / "board"))

    async def scenario():
        nonlocal gateway
        sim.start()
        await await_for(lambda: sim.app.acked is not None, timeout=20,
                        what="the gateway's first committed_to: the board keeps events until it has them")
        # The gateway goes away (its persistent session stays on the broker,
        # which queues the board's messages for it); the board's events go on.
        await asyncio.to_thread(gateway.stop)
        for n in range(N):
            sim.app.events.emit("button", {"press": "short", "n": n})
        await asyncio.sleep(1.0)  # the broker takes and acknowledges what the board sends it
        assert len(sim.app.outbox) >= N - 1, "events left the flash with no gateway to store them"
        # The broker dies before its autosave: what it held in memory is gone.
        await asyncio.to_thread(mosquitto.kill)
        await asyncio.to_thread(mosquitto.restart)
        gateway = await asyncio.to_thread(lambda: Gateway(config, clock=school_clock(), reconnect_max_s=1).start())
        await await_for(lambda: len(set(stored_markers(config.db))) == N, timeout=120,
                        what=f"all {N} events stored by the new gateway")
        await await_for(lambda: len(sim.app.outbox) == 0, timeout=30, what="the board's outbox empty")
        await sim.stop()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 240))
        markers = stored_markers(config.db)
        assert sorted(set(markers)) == list(range(N))
        assert markers == sorted(markers), "stored in the order the board made them"
    finally:
        gateway.stop()
