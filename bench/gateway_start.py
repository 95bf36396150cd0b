"""What a gateway's start reads from its history: the dedup windows (the
newest DEDUP_WINDOW events and decisions) and the rest of its state, from a
history of N records (9 events for 1 decision, 30 rooms), timed.

    .venv/bin/python bench/gateway_start.py [--records 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from edge_gateway import history
from edge_gateway.journal import Journal


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        journal = Journal(os.path.join(d, "gw.sqlite"), lambda ticket, seq: None)
        rows = []
        for i in range(1, args.records + 1):
            kind = "decision" if i % 10 == 0 else "evt"
            obj = {"v": 1, "boot": 3, "seq": i, "uptime_ms": 1000 * i, "time": 1763900000 + i, "type": "button",
                   "data": {"press": "short"}}
            rows.append((i, "room-%02d" % (i % 30), kind, float(i), 3, i, json.dumps(obj),
                         history.digest(obj) if kind == "evt" else None))
        journal.conn.execute("BEGIN")
        journal.conn.executemany(history.INSERT_RECORD, rows)
        journal.conn.execute("COMMIT")
        runs = []
        state = history.StartState()
        for _ in range(3):
            t = time.perf_counter()
            state = history.load_state(journal.conn, 0)
            runs.append(time.perf_counter() - t)
        journal.stop()
    print(f"history of {args.records} records: start-up read {min(runs):.2f} s (best of 3), "
          f"{len(state.events)} events and {len(state.decisions)} decisions in the dedup windows "
          f"(window {history.DEDUP_WINDOW})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
