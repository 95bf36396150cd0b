"""The gateway answers from memory and acknowledges a board's message to the
broker only once its record is committed (edge_gateway/journal.py). Against
a real Mosquitto and real SQLite files, with the journal's commits made to
fail or stall the way an SD card does."""

import sqlite3
import threading

import pytest
from helpers import school_config

from devkit.testing import Board, school_clock, wait_for
from edge_gateway.gateway import Gateway
from edge_gateway.history import records_of

SCHOOL = "0341234a"


def config(broker, tmp_path):
    return school_config(broker, tmp_path, "gw-durable")


class DiskFault:
    """`journal.before_commit`: fails every commit while `failing`, counting them."""

    def __init__(self) -> None:
        self.failing = True
        self.tries = 0

    def __call__(self) -> None:
        self.tries += 1
        if self.failing:
            raise sqlite3.OperationalError("disk I/O error")


def stored(path):
    return [(r.room, r.kind, r.body) for r in records_of(path)]


@pytest.fixture
def board(mosquitto):
    b = Board(mosquitto.host, mosquitto.port, SCHOOL, "cm2-b", boot=3).connect()
    yield b
    b.close()


def test_a_failed_commit_is_retried_and_nothing_is_acknowledged_before_it(mosquitto, board, tmp_path):
    gw = Gateway(config(mosquitto, tmp_path), clock=school_clock()).start()
    try:
        wait_for(lambda: gw.metrics["last_seq"] == 1, what="birth committed")
        fault = DiskFault()
        gw.journal.before_commit = fault
        req = board.request()
        # The teacher has the answer although the disk refuses every write.
        assert board.cmd_for(req)["cmd"] == "grant"
        wait_for(lambda: fault.tries >= 3, what="commits retried")
        assert gw.metrics["commit_failures"] >= 3
        assert gw.health()["database"] == "disk I/O error" and not gw.health()["ok"]
        # Counted only once durable: nothing is, yet.
        assert gw.metrics["accepted"].get("evt", 0) == 0 and gw.metrics["decisions"] == {}
        assert gw.metrics["journal_pending"] >= 1
        fault.failing = False
        wait_for(lambda: gw.metrics["accepted"].get("evt") == 1, what="the retried commit")
        assert gw.metrics["decisions"] == {"grant": 1} and gw.health()["database"] == "ok"
        kinds = [kind for _, kind, _ in stored(gw.config.db)]
        assert kinds == ["state", "evt", "decision"]  # once each, in order
    finally:
        gw.stop()
    # Acknowledged after the commit: a new session receives nothing again.
    gw2 = Gateway(config(mosquitto, tmp_path), clock=school_clock()).start()
    try:
        board.event("button", {"press": "short"})
        wait_for(lambda: gw2.metrics["accepted"].get("evt") == 1, what="the marker event")
        # Only the retained birth again (seen, identical): no event came back.
        assert gw2.metrics["accepted"] == {"state": 1, "evt": 1}
        assert [kind for _, kind, _ in stored(gw2.config.db)] == ["state", "evt", "decision", "evt"]
    finally:
        gw2.stop()


def test_messages_not_committed_come_back_from_the_broker_after_a_restart(mosquitto, board, tmp_path):
    """A gateway that stops (or dies) with writes the disk never took: the
    broker gives their messages again to the next start, which stores them."""
    gw = Gateway(config(mosquitto, tmp_path), clock=school_clock(), stop_timeout_s=0.5).start()
    wait_for(lambda: gw.metrics["last_seq"] == 1, what="birth committed")
    gw.journal.before_commit = DiskFault()
    req = board.request()
    board.cmd_for(req)
    board.event("button", {"press": "long"})
    wait_for(lambda: gw.metrics["journal_pending"] >= 2, what="both events handled, not committed")
    gw.stop()
    assert [kind for _, kind, _ in stored(gw.config.db)] == ["state"]

    gw2 = Gateway(config(mosquitto, tmp_path), clock=school_clock()).start()
    try:
        wait_for(lambda: gw2.metrics["accepted"].get("evt") == 2, what="both events redelivered and stored")
        records = stored(gw2.config.db)
        assert [kind for _, kind, _ in records] == ["state", "evt", "decision", "evt"]
        # The request was answered again by the same rules: a second grant for the
        # same req, which the board acknowledges as stale (docs/protocol.md).
        wait_for(lambda: len([c for c in board.cmds if c.get("req") == req]) == 2, what="the same answer again")
        first, second = [c for c in board.cmds if c.get("req") == req]
        assert (first["cmd"], first["duration_s"], first["ap"]) == (second["cmd"], second["duration_s"], second["ap"])
    finally:
        gw2.stop()


def test_a_stalled_disk_delays_no_answer(mosquitto, tmp_path):
    """While one commit takes a second (an SD card's stall), requests from
    other rooms are answered at once; what they store waits for the disk."""
    gw = Gateway(config(mosquitto, tmp_path), clock=school_clock()).start()
    boards = [Board(mosquitto.host, mosquitto.port, SCHOOL, room, boot=1).connect() for room in ("cm2-b", "cp-a")]
    release = threading.Event()
    stalled = threading.Event()
    try:
        wait_for(lambda: gw.metrics["last_seq"] == 2, what="births committed")

        def stall() -> None:
            stalled.set()
            release.wait(30)

        gw.journal.before_commit = stall
        boards[0].event("button", {"press": "short"})
        assert stalled.wait(10)
        # The journal is stuck inside a commit: the other room's request is still answered.
        req = boards[1].request()
        assert boards[1].cmd_for(req)["cmd"] == "grant"
        assert gw.metrics["last_seq"] == 2 and gw.metrics["decisions"] == {}
        gw.journal.before_commit = None
        release.set()
        wait_for(lambda: gw.metrics["decisions"] == {"grant": 1} and gw.metrics["last_seq"] == 5,
                 what="the stalled commit and the next one")
    finally:
        release.set()
        for b in boards:
            b.close()
        gw.stop()
