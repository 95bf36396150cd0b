"""The gateway's only SQLite writer, off the event loop.

The loop decides from what it holds in memory, answers the board, and hands
the journal what must become durable (records, room rows, overrides, the
audit, the city's ack). The journal's thread commits whatever has queued up
in one transaction (one fsync for a burst of 30 rooms), then tells the loop
which ticket is durable; only then does the loop acknowledge the boards'
QoS 1 messages to the broker, count them, and forward the records to the
city. So a slow SD card delays acknowledgements and forwarding, never an
answer to a teacher.

A commit that fails (disk full, I/O error) is rolled back and retried, the
same operations in the same order, with a growing pause; nothing behind it
is committed first and nothing is acknowledged meanwhile. Should the gateway
die before the commit, the broker still holds the unacknowledged messages
and gives them again to the gateway's persistent session: they are handled
again, from the state on disk (docs/gateway.md, "Durability")."""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from . import history
from .metrics import CommitTimes

log = logging.getLogger(__name__)

BATCH_MAX = 512  # operations per transaction
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0

Op = tuple[Any, ...]
_STOP = object()


# An operation's statement, taking the operation's arguments as they come.
_STATEMENTS = {
    "cancel": history.CANCEL_OVERRIDE,
    "audit": history.INSERT_AUDIT,
    "acked": history.SET_ACKED,
    "prune": history.PRUNE_RECORDS,
    "prune_telemetry": history.PRUNE_TELEMETRY,
    "evict": history.EVICT_TELEMETRY,
    "identity": history.SET_IDENTITY,
}


class Journal:
    def __init__(self, path: str, on_committed: Callable[[int, int], None]) -> None:
        """`on_committed(ticket, seq)` is called on the journal's thread after
        every commit: all operations up to `ticket` are durable, and the
        records up to `seq`. The gateway hops it onto its loop."""
        self.path = path
        self.conn = history.open_db(path)
        self._on_committed = on_committed
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.submitted = 0  # tickets handed out (loop thread)
        self.committed = 0  # tickets durable (journal thread writes, anyone reads)
        self.committed_seq = 0
        self.failures = 0  # commits that failed and were retried
        self.failing_since: float | None = None
        self.last_error: str | None = None
        # Fault injection for benches and tests: called before each commit on
        # the journal's thread (a stalled SD card: `lambda: time.sleep(1)`,
        # a full disk: raise sqlite3.OperationalError("database or disk is full")).
        self.before_commit: Callable[[], None] | None = None
        self.commit_times = CommitTimes()  # the successful tries, for /metrics

    def start(self, committed_seq: int) -> None:
        self.committed_seq = committed_seq
        self._thread = threading.Thread(target=self._run, name="gateway-journal", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        return self.submitted - self.committed

    def submit(self, ops: list[Op]) -> int:
        """Queue operations (loop thread); returns their ticket."""
        self.submitted += 1
        self._queue.put((self.submitted, ops))
        return self.submitted

    def stop(self, timeout_s: float = 10.0) -> None:
        """Commit what is queued, then stop. Whatever a failing disk keeps
        from committing within `timeout_s` is left unacknowledged: the broker
        gives those messages again to the next start."""
        if self._thread is None:
            self.conn.close()
            return
        self._stop_by = time.monotonic() + timeout_s
        self._queue.put(_STOP)
        self._thread.join(timeout_s + 1)
        self._thread = None
        self.conn.close()

    # the journal's thread -----------------------------------------------------

    _stop_by = float("inf")

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._queue.get()]
            count = 0
            while items[-1] is not _STOP and count < BATCH_MAX:
                try:
                    items.append(self._queue.get_nowait())
                    count += 1
                except queue.Empty:
                    break
            if items[-1] is _STOP:
                items.pop()
                stopping = True
            if not items:
                continue
            ticket = items[-1][0]
            ops = [op for _, batch in items for op in batch]
            seq = self._commit(ops)
            if seq is None:
                return  # stopping on a disk that keeps failing: nothing more is acknowledged
            self.committed = ticket
            self.committed_seq = max(self.committed_seq, seq)
            try:
                self._on_committed(ticket, self.committed_seq)
            except RuntimeError:  # the loop is closed: the gateway is stopping
                pass

    def _commit(self, ops: list[Op]) -> int | None:
        pause = RETRY_FIRST_S
        while True:
            try:
                began = time.perf_counter()
                if self.before_commit is not None:
                    self.before_commit()  # a stalled card's delay counts as the commit's own
                seq = self._apply(ops)
                self.commit_times.observe(time.perf_counter() - began)
            except sqlite3.Error as e:
                if self.conn.in_transaction:
                    try:
                        self.conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                self.failures += 1
                self.last_error = str(e)
                if self.failing_since is None:
                    self.failing_since = time.time()
                    log.error("database %s: commit of %d operation(s) failed (%s); retrying, nothing is "
                              "acknowledged to the boards meanwhile", self.path, len(ops), e)
                if time.monotonic() > self._stop_by:
                    log.error("database %s: stopping with %d operation(s) not committed; the broker keeps "
                              "their messages for the next start", self.path, len(ops))
                    return None
                time.sleep(pause)
                pause = min(pause * 2, RETRY_MAX_S)
                continue
            if self.failing_since is not None:
                log.warning("database %s: commits work again after %.1f s", self.path, time.time() - self.failing_since)
                self.failing_since = None
                self.last_error = None
            return seq

    def _apply(self, ops: list[Op]) -> int:
        conn = self.conn
        seq = 0
        # A burst of 30 rooms' messages is a handful of statements, not a few
        # per message: consecutive records go in one executemany, and a
        # room's row, which each of its events rewrites whole, is written
        # once per commit, its last value (docs/gateway.md, "Durability").
        records: list[tuple] = []
        rooms: dict[str, tuple] = {}
        conn.execute("BEGIN IMMEDIATE")
        for op in ops:
            kind = op[0]
            if kind == "rec":
                records.append(op[1:])
                continue
            if records:
                conn.executemany(history.INSERT_RECORD, records)
                seq = max(seq, records[-1][0])
                records = []
            if kind == "room":
                rooms[op[1][0]] = op[1]
            elif kind == "override":
                conn.execute(history.INSERT_OVERRIDE, op[1])
            elif kind in _STATEMENTS:
                conn.execute(_STATEMENTS[kind], op[1:])
            else:  # a bug: said loudly, never retried for ever
                raise AssertionError(f"journal: unknown operation {kind!r}")
        if records:
            conn.executemany(history.INSERT_RECORD, records)
            seq = max(seq, records[-1][0])
        if rooms:
            conn.executemany(history.UPSERT_ROOM, rooms.values())
        conn.execute("COMMIT")
        return seq
