"""A board's outbox drain, end to end: N events waiting in a simulated
board's flash outbox (the real firmware, devkit/sim/classroom.py) leave for
a real gateway through the locked school broker (a real Mosquitto), one in
flight at a time. Measured twice in one run:

- `committed_to`: each event leaves the flash once the gateway says it
  committed it (docs/outbox.md, "Until the gateway has it");
- `PUBACK only`: the gateway's word ignored, as a board does before the
  first `committed_to` of its boot (and as all boards did before): each
  event leaves on the broker's PUBACK.

    .venv/bin/python bench/board_drain.py [--n 500]

Prints the events per second of each and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from devkit.school import LockedSchool  # noqa: E402
from devkit.sim.classroom import SimClassroom  # noqa: E402
from devkit.testing import school_clock  # noqa: E402
from edge_gateway.config import Config  # noqa: E402
from edge_gateway.gateway import Gateway  # noqa: E402


async def drain(school: LockedSchool, gateway: Gateway, workdir: str, n: int, end_to_end: bool) -> float:
    sim = SimClassroom(school.board_config("cm2-b"), storage=os.path.join(workdir, "board"))  # one board: its boot counter goes on
    sim.start()
    deadline = time.monotonic() + 30
    while not (gateway.rooms()["cm2-b"]["online"] and sim.app.clock.time() is not None):
        if time.monotonic() > deadline:
            raise SystemExit("the board never came online")
        await asyncio.sleep(0.05)
    if not end_to_end:
        app = sim.app
        on_message = app._on_message

        def without_commits(t, payload, retain):
            if b'"committed_to"' not in bytes(payload):  # as a board whose gateway never says it
                on_message(t, payload, retain)

        app.mqtt.on_message = without_commits
        app.acked = None
    else:
        while sim.app.acked is None:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    for i in range(n):
        sim.app.events.emit("button", {"press": "short", "n": i})
    t0 = time.perf_counter()
    while len(sim.app.outbox):
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - t0
    await sim.stop()
    return n / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="preau-drain-") as workdir:
        school = LockedSchool(directory=os.path.join(workdir, "school"), rooms=("cm2-b",)).start()
        config = Config.from_dict(school.config(workdir) | {
            "rooms": {"cm2-b": {"wifi": "allowed"}}, "policy": {"zone": "C"}})
        gateway = Gateway(config, clock=school_clock()).start()
        try:
            e2e = asyncio.run(drain(school, gateway, workdir, args.n, True))
            puback = asyncio.run(drain(school, gateway, workdir, args.n, False))
        finally:
            gateway.stop()
            school.stop()
    print(f"{args.n} events from a board's flash outbox to the gateway's database, one in flight:")
    print(f"  committed_to (end to end): {e2e:8.1f} events/s")
    print(f"  PUBACK only              : {puback:8.1f} events/s")
    print(f"  ratio end to end / PUBACK: {e2e / puback:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
