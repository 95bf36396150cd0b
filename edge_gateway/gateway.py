"""The school gateway service: the board messages in, the decisions out,
the history kept, the city fed.

One asyncio loop owns all the gateway's state (docs/architecture.md): the
school and city links (paho driven from the loop, common/mqtt.py), the live
registry, the dedup windows, the policy, the overrides, the counters. A
board's request is decided from memory and answered at once; what must be
durable goes to the journal's thread (edge_gateway/journal.py), and the
board's message is acknowledged to the broker only once committed. The web
API (FastAPI, edge_gateway/api.py) runs on the same loop in production
(edge_gateway/main.py); tests, benches and the demo may run the gateway on a
loop of its own in a background thread (`start()`/`stop()`), and its
coroutine methods hop onto that loop from any other."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import json
import logging
import os
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt

from common.mqtt import LinkError
from protocol.citylink import GATEWAY_ROOM
from protocol.codec import check_cmd

from . import fleet, history
from .city_link import CityLink, Forwarder
from .clocksync import ClockStatus, SystemClock, latch_file_for, status_of
from .config import Config, ConfigError
from .intake import Intake
from .journal import Journal
from .limits import BURST, RATE_PER_S, RoomBuckets
from .metrics import GatewayCollector, make_registry
from .ota import Rollout, ota_dir
from .policy.model import Override
from .registry import Registry
from .rules import PolicyState, clock_unsynced
from .school_link import SchoolLink
from .telemetry import TelemetryAggregator

BOARD_ACTIONS = ("identify", "end", "reboot")
BOARD_RESULTS_KEPT = 1000

log = logging.getLogger(__name__)

MAX_OVERRIDE_S = 14 * 86400
OVERRIDE_TIME_MIN = 946684800.0  # 2000-01-01: an override time before it is a typo
OVERRIDE_TIME_MAX = 4102444800.0  # 2100-01-01
COMMIT_WAIT_S = 10.0
PRUNE_EVERY_S = 86400.0  # the history is pruned once a day (and once after start)
ACK_SAVE_EVERY_S = 1.0
PRUNE_CHUNK = 5000  # records per transaction: a commit of the boards' messages never waits long behind one

T = TypeVar("T")


class GatewayError(RuntimeError):
    pass


class OverrideError(ValueError):
    pass


def on_gateway_loop(method: Callable[..., Any]) -> Callable[..., Any]:
    """A coroutine method that runs on the gateway's loop whichever loop
    awaits it (the API under a test client, the demo's own loop)."""

    @functools.wraps(method)
    async def wrapper(self: Gateway, *args: Any, **kwargs: Any) -> Any:
        loop = self._loop
        if loop is None:
            raise GatewayError("the gateway is not running")
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            return await method(self, *args, **kwargs)
        future = asyncio.run_coroutine_threadsafe(method(self, *args, **kwargs), loop)
        return await asyncio.wrap_future(future)

    return wrapper


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        resend_after_s: float = 10.0,
        reconnect_max_s: float = 30.0,
        connect_attempts: int = 5,
        tick_s: float = 0.5,
        stop_timeout_s: float = COMMIT_WAIT_S,
        room_burst: float = BURST,
        room_rate_per_s: float = RATE_PER_S,
        clock_sync: Callable[[], ClockStatus | bool] | None = None,
    ) -> None:
        """`clock_sync` says whether something vouches for `clock`
        (edge_gateway/clocksync.py); it is called off the loop, every tick.
        By default: the system's (NTP through the kernel, the boot latch,
        the RTC of `[clock] rtc`) when `clock` is the system's; a clock given
        here (a simulation, a test, the demo's school clock) is its own
        reference and counts as synchronised."""
        self.config = config
        self.stop_timeout_s = stop_timeout_s
        self.clock = clock
        self.connect_attempts = connect_attempts
        self.tick_s = tick_s
        self.resend_after_s = resend_after_s
        self.reconnect_max_s = reconnect_max_s
        self.config_path: str | None = None
        self._counts: Counter = Counter()
        self._lock = threading.Lock()  # the counters: read by other threads (tests, the demo)
        self.metrics_registry = make_registry(GatewayCollector(self))
        self.registry = _TelemetryRegistry(config.rooms)
        self.policy: PolicyState  # built once in _open(), with the overrides on disk
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None  # the loop's thread, when start() made one
        self.journal: Journal | None = None
        self.school: SchoolLink | None = None
        self.city: CityLink | None = None
        self.forwarder: Forwarder | None = None
        self._tick_task: asyncio.Task | None = None
        self._pending: deque[tuple[int, mqtt.MQTTMessage | None, list, asyncio.Future | None, tuple | None]] = deque()
        self._committed_seq = 0
        self._override_count = 0
        self._acked = 0
        self._acked_unsaved: int | None = None  # the city's last ack, not yet handed to the journal
        self._acked_saved_at = float("-inf")
        self.telemetry = TelemetryAggregator(config.telemetry_interval_s)
        self._telemetry_unacked: deque[int] = deque()
        self._telemetry_warned = 0.0
        self.epoch = ""
        self.registry.on_tele = self._on_tele
        self.intake = Intake(config.school, self.registry, decide=lambda room, at: self.policy.decide(room, at),
                             send_cmd=self._send_cmd, buckets=RoomBuckets(room_burst, room_rate_per_s))
        self._policy_day = None
        self._running = False
        self._draining = False
        self._fleet_stamp: tuple | None = None
        self._fleet_looked = False
        self._board_cmds = 0
        # Over-the-air updates (edge_gateway/ota.py): the rollout `preau ota` writes.
        self.ota = Rollout(ota_dir(config.db), self._send_update, self.rooms) if config.db != ":memory:" else None
        self._board_acks: OrderedDict[tuple[str, str], dict | None] = OrderedDict()
        self.intake.on_ack = self._board_acked
        self.school_broker = config.school_broker  # with the gateway's own credentials from the fleet
        if clock_sync is None:
            if clock is time.time:
                clock_sync = SystemClock(config.clock_rtc, latch_file_for(config.db))
            else:
                clock_sync = functools.partial(ClockStatus, True, "injected", "the gateway's clock is its caller's")
        self._clock_sync = clock_sync
        self.clock_status = status_of(clock_sync())
        self.intake.clock_synced = self.clock_status.synced
        self._clock_task: asyncio.Task | None = None
        self._prune_task: asyncio.Task | None = None
        self._next_prune = 0.0  # loop time
        self._load_fleet()
        self._open(clock())
        if not self.clock_status.synced:
            log.error("clock not synchronised (%s): no lesson is granted and no board is given the time until it is",
                      self.clock_status.detail)

    # the fleet: the boards' keys and the gateway's own identity --------------------

    def _load_fleet(self) -> None:
        """Read the fleet file if it changed: the rooms' board keys, and our
        broker credentials unless the configuration gives them. A broken file
        keeps the keys in force (said once per change)."""
        path = self.config.fleet_file
        if path is None:
            return
        try:
            st = os.stat(path)
            stamp: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._fleet_stamp and self._fleet_looked:
            return
        self._fleet_looked = True
        self._fleet_stamp = stamp
        if stamp is None:
            if not self.intake.keys:
                log.error("no fleet file %s: every board message is refused until `preau provision add <room>`",
                          path)
            return
        try:
            loaded = fleet.load(path)
            if loaded.school != self.config.school:
                raise fleet.FleetError(f"{path} is school {loaded.school}'s, not {self.config.school}'s")
        except fleet.FleetError as e:
            log.error("fleet file refused, the boards' keys in force stay: %s", e)
            self._count_now("fleet_rejected")
            return
        keys = loaded.keys()
        if keys != self.intake.keys:
            log.info("fleet: %d board(s) provisioned (%s)", len(keys), ", ".join(sorted(keys)) or "none")
        self.intake.keys = keys
        if self.config.school_broker.username is None:
            broker = dataclasses.replace(self.config.school_broker, username=loaded.gateway_username,
                                         password=loaded.gateway_password)
            if broker != self.school_broker and self.school is not None:
                # `preau provision rekey-gateway`: the broker drops us at its reload;
                # the next connection uses the new password.
                self.school.client.username_pw_set(broker.username, broker.password)
                log.info("fleet: new broker credentials for the gateway, used from the next connection")
            self.school_broker = broker

    def _open(self, now: float) -> None:
        """Read the state on disk (before anything is answered)."""
        try:
            self.journal = Journal(self.config.db, self._committed_threadsafe)
            state = history.load_state(self.journal.conn, now)
        except Exception as e:  # sqlite3.Error, MigrationError, OSError
            if self.journal is not None:
                self.journal.conn.close()
                self.journal = None
            raise GatewayError(f"database {self.config.db}: {e}") from e
        self.registry.load(state.rooms)
        self.intake.load(state)
        self._committed_seq = state.last_seq
        self._acked = state.acked
        self.epoch = state.epoch
        self._city_version = state.city_version
        self._telemetry_unacked = deque(state.telemetry_unacked)
        self._override_count = state.override_count
        self.policy = PolicyState.build(self.config, self._overrides_from(state.overrides))
        self._policy_day = self._local_day(now)
        self._check_calendar_coverage(now)

    # lifecycle -----------------------------------------------------------------

    async def astart(self) -> Gateway:
        """Start on the running loop: read the state on disk, connect to the
        school broker (GatewayError if it stays unreachable), start the city link."""
        self._loop = asyncio.get_running_loop()
        if self.journal is None:
            raise GatewayError("a stopped gateway does not start again: make a new one")
        self.journal.start(self._committed_seq)
        self.school = SchoolLink(self.config, self._on_board, reconnect_max_s=self.reconnect_max_s,
                                 on_connected=lambda: self._publish_policies(self.clock()), broker=self.school_broker)
        try:
            await self.school.connect(attempts=self.connect_attempts)
            # Started means listening: a board's message sent from now on is ours.
            await asyncio.wait_for(self.school.subscribed.wait(), 10)
        except (LinkError, TimeoutError) as e:
            await self.school.close()
            await asyncio.to_thread(self.journal.stop)
            raise GatewayError(str(e) or f"{self.school.where}: no SUBACK within 10 s") from e
        if self.config.city_broker is not None:
            self.city = CityLink(self.config, self._on_city, reconnect_max_s=self.reconnect_max_s,
                                 clock_synced=lambda: self.clock_status.synced)
            self.forwarder = Forwarder(self.config.db, self.city, self.config, acked=self._acked,
                                       committed=self._committed_seq, clock=self.clock,
                                       save_acked=self._save_acked, resend_after_s=self.resend_after_s,
                                       epoch=self.epoch, version=self._city_version,
                                       save_version=self._save_city_version)
            self.city.connect_in_background()
        self._tick_task = asyncio.create_task(self._ticks(), name="gateway-ticks")
        self._clock_task = asyncio.create_task(self._watch_clock(), name="gateway-clock")
        self._running = True
        log.info("gateway %s for school %s started: %d rooms, outbox %d", self.config.gateway_id, self.config.school,
                 len(self.config.rooms), self.outbox_size())
        return self

    async def astop(self) -> None:
        if not self._running:
            return
        self._running = False
        for task in (self._tick_task, self._clock_task, self._prune_task):
            if task is not None:
                task.cancel()
        assert self.journal is not None and self.school is not None
        loop = asyncio.get_running_loop()
        # From here a board's message is neither handled nor acknowledged: the
        # broker keeps it in our persistent session (the subscriptions stay)
        # and gives it to the next start. What was handled is committed and
        # acknowledged before the link goes, so nothing is handled twice.
        self._draining = True
        self._flush_acked()
        deadline = loop.time() + self.stop_timeout_s
        while (self.journal.pending or self._pending) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await self.school.stop()
        if self.forwarder is not None:
            await self.forwarder.close()
        if self.city is not None:
            await self.city.stop()
        await asyncio.to_thread(self.journal.stop, self.stop_timeout_s)

    def start(self) -> Gateway:
        """Run on a loop of its own, in a background thread (tests, benches,
        the demo); production runs `astart()` under uvicorn's loop."""
        loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve(ready))

        self._thread = threading.Thread(target=run, name=f"gateway-{self.config.school}", daemon=True)
        self._thread.start()
        ready.result()
        return self

    async def _serve(self, ready: concurrent.futures.Future) -> None:
        self._stop_event = asyncio.Event()
        try:
            await self.astart()
        except BaseException as e:
            ready.set_exception(e)
            return
        ready.set_result(None)
        await self._stop_event.wait()
        await self.astop()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(30)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._running

    # what the API and the demo read (any thread) ---------------------------------

    def rooms(self) -> dict[str, dict]:
        config = self.config  # one configuration, even during a reload
        snapshot = self.registry.snapshot()
        return {room: row | {"wifi": config.rooms[room].wifi, "sessions": config.rooms[room].sessions}
                for room, row in snapshot.items() if room in config.rooms}

    @property
    def metrics(self) -> dict:
        with self._lock:
            c = dict(self._counts)

        def by(prefix: str) -> dict:
            return {k[1]: v for k, v in c.items() if isinstance(k, tuple) and k[0] == prefix}

        out: dict = {
            "accepted": by("accepted"), "rejected": by("rejected"), "decisions": by("decision"),
            "rate_limited": by("rate_limited"),
            **{name: c.get(name, 0) for name in ("duplicates", "conflicts", "history", "events_missing",
                                                 "internal_errors", "time_sent", "policies_published",
                                                 "config_rejected", "logs_suppressed", "fleet_rejected",
                                                 "telemetry_dropped")},
            "telemetry_outbox": len(self._telemetry_unacked),
            "city_acks_ignored": self.forwarder.acks_ignored if self.forwarder else 0,
            "outbox": self.outbox_size(),
            "city_acked": self.forwarder.acked if self.forwarder else self._acked,
            "last_seq": self._committed_seq,
            "journal_pending": self.journal.pending if self.journal else 0,
            "commit_failures": self.journal.failures if self.journal else 0,
            "clock_synced": int(self.clock_status.synced),
            "records_pruned": c.get("records_pruned", 0),
        }
        if self.forwarder is not None:
            out["batches_sent"] = self.forwarder.batches_sent
            out["records_sent"] = self.forwarder.records_sent
            out["resends"] = self.forwarder.resends
            out["live_batches"] = self.forwarder.live_batches
            out["live_records"] = self.forwarder.live_records
            out["repair_batches"] = self.forwarder.repair_batches
            out["records_dropped_listed"] = self.forwarder.dropped_listed
            out["uplink_bytes"] = self.forwarder.bytes_sent
            out["city_batch_version"] = self.forwarder.version
        return out

    @property
    def alive(self) -> bool:
        """The parts that do not come back by themselves: the journal's
        thread and the loop's ticks (systemd's watchdog restarts the
        service when one is gone; a hung loop stops the pings itself)."""
        journal = self.journal
        return (self._running and journal is not None and journal.alive
                and all(t is not None and not t.done() for t in (self._tick_task, self._clock_task)))

    def outbox_size(self) -> int:
        # seq is gap-free and nothing above the ack is ever deleted (prune), so the outbox is a difference.
        return self._committed_seq - (self.forwarder.acked if self.forwarder else self._acked)

    def health(self) -> dict:
        journal = self.journal
        db_ok = journal is not None and journal.alive and journal.failing_since is None
        school = self.school is not None and self.school.connected
        clock = self.clock_status
        return {
            # Not ok with a clock nothing vouches for: every lesson is refused meanwhile.
            "ok": self._running and school and db_ok and clock.synced,
            "school_broker": school,
            "city_broker": None if self.city is None else self.city.connected,
            "database": "ok" if db_ok else (journal.last_error if journal and journal.last_error else "stopped"),
            "outbox": self.outbox_size(),
            "calendar_covered_until": self.policy.calendar.coverage()[1].isoformat(),
            "clock_synced": clock.synced,
            "clock": clock.detail,
        }

    def _check_calendar_coverage(self, now: float) -> None:
        """Say it early when the embedded school-holiday data runs out: past
        its end the engine only knows the school's own closures."""
        last = self.policy.calendar.coverage()[1]
        days_left = (last - self._local_day(now)).days
        if days_left < 0:
            log.warning("school-holiday data ended on %s: only the configured closures apply; "
                        "update the vacances-scolaires-france package", last)
        elif days_left < 120:
            log.warning("school-holiday data ends on %s (%d days): update the vacances-scolaires-france package",
                        last, days_left)

    # counters and the journal ---------------------------------------------------

    def _count_now(self, key: Any, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _submit(self, ops: list[tuple]) -> int:
        assert self.journal is not None
        return self.journal.submit(ops)

    def _after(self, ticket: int, msg: mqtt.MQTTMessage | None, counts: list, waiter: asyncio.Future | None = None,
               receipt: tuple[str, int, int] | None = None):
        """Acknowledge `msg`, apply `counts`, wake `waiter`, tell the board its
        event `receipt` is stored, once everything up to `ticket` is
        committed: whoever reads a count finds the records behind it, and
        the broker and the board forget a message only once it is durable."""
        assert self.journal is not None
        if ticket <= self.journal.committed and not self._pending:
            self._settle(msg, counts, waiter, receipt)
        else:
            self._pending.append((ticket, msg, counts, waiter, receipt))

    def _settle(self, msg, counts, waiter, receipt=None) -> None:
        if msg is not None and self.school is not None:
            self.school.ack(msg)
        if receipt is not None and self.school is not None:
            # End to end: the board deletes the event from its flash only now (docs/outbox.md).
            room, boot, seq = receipt
            self.school.send_cmd(room, {"v": 1, "id": "c", "cmd": "committed_to", "boot": boot, "seq": seq})
        for key, n in counts:
            self._count_now(key, n)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _committed_threadsafe(self, ticket: int, seq: int) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._committed, ticket, seq)

    def _committed(self, ticket: int, seq: int) -> None:
        self._committed_seq = max(self._committed_seq, seq)
        while self._pending and self._pending[0][0] <= ticket:
            _, msg, counts, waiter, receipt = self._pending.popleft()
            self._settle(msg, counts, waiter, receipt)
        if self.forwarder is not None:
            self.forwarder.on_committed(seq)

    async def _durable(self, ticket: int) -> None:
        """Wait until `ticket` is committed (the API's writes)."""
        assert self._loop is not None
        waiter = self._loop.create_future()
        self._after(ticket, None, [], waiter)
        try:
            await asyncio.wait_for(waiter, COMMIT_WAIT_S)
        except TimeoutError:
            raise GatewayError("applied, but the gateway's database has not confirmed the write yet "
                               "(slow or failing disk): check /healthz") from None

    def _save_acked(self, seq: int) -> None:
        """The city's ack, kept at most once a second: a drain brings an ack
        per batch, and each would be a commit (an fsync) the boards' own
        messages queue behind. One lost at a crash costs a resend of what
        the city has (it stores each seq once), never a record."""
        self._acked_unsaved = seq
        assert self._loop is not None
        if self._loop.time() - self._acked_saved_at >= ACK_SAVE_EVERY_S:
            self._flush_acked()

    def _flush_acked(self) -> None:
        if self._acked_unsaved is not None and self.journal is not None:
            self._submit([("acked", self._acked_unsaved)])
            self._acked_unsaved = None
            assert self._loop is not None
            self._acked_saved_at = self._loop.time()

    def _save_city_version(self, version: int) -> None:
        self._submit([("identity", "city_version", str(version))])

    def _audit(self, now: float, who: str, action: str, detail: dict) -> list[tuple]:
        """The audit row and its record for the city (kind "audit", room
        "gateway"), so supervision sees why a school's rooms were closed
        or opened."""
        self.intake.last_seq += 1
        body = json.dumps({"v": 1, "who": who, "action": action,
                           "detail": {k: (v[:500] if isinstance(v, str) else v) for k, v in detail.items()}},
                          separators=(",", ":"), sort_keys=True)
        return [("audit", now, who, action, _audit_json(detail)),
                ("rec", self.intake.last_seq, GATEWAY_ROOM, "audit", round(now, 3), None, None, body, None)]

    # telemetry for the city (edge_gateway/telemetry.py) ---------------------------

    def _on_tele(self, room: str, obj: dict, now: float) -> None:
        self.telemetry.add(room, obj, now)

    def _telemetry_due(self, now: float) -> None:
        """The records of the intervals that ended, then the oldest
        telemetry the city has not acknowledged beyond `[city]
        telemetry_outbox_max` evicted (counted; the city hears of it as
        dropped seqs)."""
        due = self.telemetry.due(now)
        if not due:
            return
        ops: list[tuple] = []
        for room, at, body in due:
            self.intake.last_seq += 1
            ops.append(("rec", self.intake.last_seq, room, "telemetry", at, None, None, body, None))
            self._telemetry_unacked.append(self.intake.last_seq)
        over = len(self._telemetry_unacked) - self.config.telemetry_outbox_max
        if over > 0:
            gone = [self._telemetry_unacked.popleft() for _ in range(over)]
            ops.append(("evict", gone[0], gone[-1]))
            self._count_now("telemetry_dropped", over)
            if self._telemetry_warned + 3600 < now:
                self._telemetry_warned = now
                log.warning("city unreachable for long: %d telemetry record(s) waiting, the oldest evicted "
                            "(%d so far); events are kept", len(self._telemetry_unacked),
                            self._counts.get("telemetry_dropped", 0))
        self._submit(ops)

    def _telemetry_acked(self, acked: int) -> None:
        while self._telemetry_unacked and self._telemetry_unacked[0] <= acked:
            self._telemetry_unacked.popleft()

    # ticks: the city link's resends, the day's policies ---------------------------

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                now = self.clock()
                self._load_fleet()
                if self.ota is not None:
                    self.ota.tick(now)  # the hour plays no part: not held back by the clock
                self._telemetry_due(now)
                if self.forwarder is not None:
                    self.forwarder.tick()
                    if asyncio.get_running_loop().time() - self._acked_saved_at >= ACK_SAVE_EVERY_S:
                        self._flush_acked()
                if not self.clock_status.synced:
                    continue  # the day, the policies and the history's age all need the hour
                loop = asyncio.get_running_loop()
                if loop.time() >= self._next_prune and (self._prune_task is None or self._prune_task.done()):
                    self._next_prune = loop.time() + PRUNE_EVERY_S
                    self._prune_task = loop.create_task(self._prune_daily(), name="gateway-prune")
                if self._local_day(now) != self._policy_day:
                    # After midnight the 48 h of windows move on by a day.
                    self._policy_day = self._local_day(now)
                    self._reload_overrides_in_force(now)
                    self._publish_policies(now)
                    self._check_calendar_coverage(now)
            except Exception:
                log.exception("gateway tick failed")
                self._count_now("internal_errors")

    # the clock: is it to be trusted? ------------------------------------------------

    async def _watch_clock(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                # off the loop: the system's source may read an RTC over I2C
                status = status_of(await asyncio.to_thread(self._clock_sync))
            except Exception:
                log.exception("clock: the synchronisation source failed; taken as not synchronised")
                self._count_now("internal_errors")
                status = ClockStatus(False, "none", "the synchronisation source failed (see the log)")
            self._clock_changed(status)

    def _clock_changed(self, status: ClockStatus) -> None:
        was = self.clock_status
        self.clock_status = status
        if status.synced == was.synced:
            return
        self.intake.clock_synced = status.synced
        if self.city is not None:
            self.city.publish_state()
        if not status.synced:
            log.error("clock no longer synchronised (%s): lessons are refused and no board is given the time",
                      status.detail)
            return
        now = self.clock()
        log.warning("clock synchronised (%s): lessons are decided again", status.detail)
        sent = self.intake.time_boards(now)
        if sent:
            self._count_now("time_sent", sent)
        self._policy_day = self._local_day(now)
        self._reload_overrides_in_force(now)
        self._publish_policies(now)
        self._check_calendar_coverage(now)

    # the history's age: pruned once the city has it -------------------------------------

    async def _prune_daily(self) -> None:
        try:
            await self.prune()
        except Exception:  # a slow or failing disk: said, and tried again tomorrow
            log.exception("history: pruning failed; tried again in a day")

    @on_gateway_loop
    async def prune(self) -> int:
        """Delete the records the city has acknowledged that are older than
        `[history] keep_days` (telemetry: TELEMETRY_KEEP_DAYS), sparing what
        the next start reads (the dedup windows); a few thousand per
        transaction. How many went."""
        if not self.clock_status.synced:
            return 0
        self._flush_acked()  # what is deleted is below an ack on disk, before the deletion
        acked = self.forwarder.acked if self.forwarder is not None else self._acked
        total = 0
        for what, days, find, op in (
                ("record(s)", self.config.history_keep_days, history.prunable, "prune"),
                ("telemetry record(s)", min(history.TELEMETRY_KEEP_DAYS, self.config.history_keep_days),
                 history.prunable_telemetry, "prune_telemetry")):
            before = self.clock() - 86400.0 * days
            lo, hi, count = await asyncio.to_thread(find, self.config.db, acked, before)
            if not count:
                continue
            for start in range(lo - 1, hi, PRUNE_CHUNK):
                await self._durable(self._submit([(op, start, min(start + PRUNE_CHUNK, hi), before)]))
            total += count
            log.info("history: %d %s older than %d days, acknowledged by the city, deleted (seq %d..%d)",
                     count, what, days, lo, hi)
        self._count_now("records_pruned", total)
        return total

    def _on_city(self, item: tuple) -> None:
        if self.forwarder is None:
            return
        if item[0] == "city_up":
            self.forwarder.on_up()
        elif item[0] == "city_down":
            self.forwarder.on_down()
        elif item[0] == "city_ack":
            self.forwarder.on_ack(item[1])
            self._telemetry_acked(self.forwarder.acked)
        elif item[0] == "city_gaps":
            self.forwarder.on_gaps(item[1])

    # board messages (on the loop) ---------------------------------------------------

    def _on_board(self, msg: mqtt.MQTTMessage) -> None:
        if self._draining:
            return
        # To the millisecond, as a version 2 batch carries it: the same record
        # sent as version 1, then again as version 2, is the same to the city.
        ops, counts = self.intake.handle(msg, round(self.clock(), 3))
        assert self.journal is not None
        ticket = self._submit(ops) if ops else self.journal.submitted
        self._after(ticket, msg, counts, receipt=self.intake.receipt)

    def _send_cmd(self, room: str, cmd: dict) -> None:
        assert self.school is not None
        self.school.send_cmd(room, cmd)

    # policy: offline policies, overrides, configuration reload ---------------------

    def _local_day(self, now: float):
        return datetime.fromtimestamp(now, ZoneInfo(self.config.policy.timezone)).date()

    def _reload_overrides_in_force(self, now: float) -> None:
        now_dt = datetime.fromtimestamp(now, UTC)
        self.policy = self.policy.with_overrides(o for o in self.policy.overrides if o.expires > now_dt)

    @staticmethod
    def _overrides_from(rows: Iterable[dict]) -> tuple[Override, ...]:
        out = []
        for r in rows:
            try:
                out.append(_override(r))
            except ValueError as e:  # a row written by an older version: skipped, said
                log.warning("override %s ignored: %s", r.get("id"), e)
        return tuple(out)

    def _publish_policies(self, now: float, rooms: Iterable[str] | None = None) -> None:
        if self.school is None:
            return
        if not self.clock_status.synced:
            # Windows for the wrong 48 hours: the boards keep the retained policy they have.
            log.info("offline policies not published: the clock is not synchronised")
            return
        targets = list(rooms or self.config.rooms)
        for room in targets:
            try:
                payload = self.policy.offline_payload(room, now)
            except Exception:
                log.exception("room %s: could not compute the offline policy", room)
                self._count_now("internal_errors")
                continue
            self.school.publish_policy(room, payload)
        self._count_now("policies_published", len(targets))

    def check_override(self, fields: dict, now: float) -> dict:
        """The override rules, once (the API only parses types): returns the
        row to store, or OverrideError naming the field."""
        who, why = (fields.get("who") or "").strip(), (fields.get("why") or "").strip()
        if not 1 <= len(who) <= 40:
            raise OverrideError("who: a role of 1 to 40 characters (\"direction\", \"mairie\"), not a person's name")
        if not 1 <= len(why) <= 200:
            raise OverrideError("why: 1 to 200 characters, shown to whoever wonders why")
        if fields.get("scope") not in ("room", "school"):
            raise OverrideError("scope: \"room\" or \"school\"")
        if fields.get("effect") not in ("allow", "deny"):
            raise OverrideError("effect: \"allow\" or \"deny\"")
        if fields["scope"] == "room" and fields.get("room") not in self.config.rooms:
            raise OverrideError(f"room: {fields.get('room')!r} is not a room of this school")
        if fields.get("starts") is None and not self.clock_status.synced:
            raise OverrideError("starts: the gateway's clock is not synchronised, so \"now\" is unknown: "
                                "give starts and expires as dates")
        starts = now if fields.get("starts") is None else _time_field("starts", fields["starts"])
        expires = _time_field("expires", fields.get("expires"))
        if expires <= now:
            raise OverrideError("expires: must be in the future")
        if expires <= starts:
            raise OverrideError("expires: must be after starts")
        if expires - starts > MAX_OVERRIDE_S:
            raise OverrideError(f"expires: an override lasts at most {MAX_OVERRIDE_S // 86400} days; "
                                "change the configuration for longer")
        row = {"id": "o-%06d" % (self._override_count + 1), "scope": fields["scope"],
               "room": fields.get("room"), "effect": fields["effect"],
               "ap": bool(fields.get("ap")), "ap_only": bool(fields.get("ap_only")), "starts": starts,
               "expires": expires, "who": who, "why": why}
        try:
            _override(row)  # the model's own checks (scope/room, ap_only only on deny, ...)
        except ValueError as e:
            # the model names the override; this one does not exist yet
            raise OverrideError(str(e).removeprefix(f"override {row['id']}: ")) from None
        return row

    @on_gateway_loop
    async def add_override(self, **fields: Any) -> dict:
        now = self.clock()
        row = self.check_override(fields, now)
        self._override_count += 1
        self.policy = self.policy.with_overrides((*self.policy.overrides, _override(row)))
        self._publish_policies(now, [row["room"]] if row["scope"] == "room" else None)
        values = tuple(row[c] for c in history.OVERRIDE_COLUMNS[:-2]) + (now,)
        ticket = self._submit([("override", values), *self._audit(now, row["who"], "override.add", row)])
        log.info("override %s added by %s: %s %s (%s)", row["id"], row["who"], row["effect"], row["room"] or "school",
                 row["why"])
        await self._durable(ticket)
        return row | {"created": now, "cancelled": None}

    @on_gateway_loop
    async def cancel_override(self, override_id: str, who: str) -> bool:
        now = self.clock()
        kept = tuple(o for o in self.policy.overrides if o.id != override_id)
        if len(kept) == len(self.policy.overrides):
            return False
        self.policy = self.policy.with_overrides(kept)
        self._publish_policies(now)
        ticket = self._submit([("cancel", now, override_id),
                               *self._audit(now, (who or "?")[:40], "override.cancel", {"id": override_id})])
        await self._durable(ticket)
        return True

    @on_gateway_loop
    async def board_command(self, room: str, action: str, who: str, seconds: int = 10) -> dict:
        """A technician's command to one board, from the corridor: `identify`
        (blink its LED for `seconds`), `end` (its session), `reboot`. Sent
        QoS 1 and audited; a board offline gets it when it comes back (the
        broker keeps it). Its ack is kept for `board_result`."""
        if action not in BOARD_ACTIONS:
            raise ValueError(f"unknown board command {action!r} (one of {', '.join(BOARD_ACTIONS)})")
        if not self.registry.known(room):
            raise KeyError(room)
        now = self.clock()
        self._board_cmds += 1
        cmd: dict[str, Any] = {"v": 1, "id": "b-%d-%d" % (int(now) % 100_000_000, self._board_cmds), "cmd": action}
        if action == "identify":
            cmd["seconds"] = seconds
        check_cmd(cmd)  # the board's own rules, before it goes out
        self._board_acks[(room, cmd["id"])] = None
        while len(self._board_acks) > BOARD_RESULTS_KEPT:
            self._board_acks.popitem(last=False)
        self._send_cmd(room, cmd)
        await self._durable(self._submit(self._audit(now, (who or "?")[:40], f"board.{action}",
                                                     {"room": room, "id": cmd["id"]})))
        return {"room": room, "cmd": action, "id": cmd["id"], "online": bool(self.registry.row(room)["online"])}

    def _send_update(self, room: str, cmd: dict) -> None:
        check_cmd(cmd)
        self._send_cmd(room, cmd)
        assert self.ota is not None and self.ota.state is not None
        self._submit(self._audit(self.clock(), "ota", "board.update",
                                 {"room": room, "id": cmd["id"], "version": self.ota.state["version"]}))

    def board_key(self, room: str) -> bytes | None:
        """The room's board key, from the fleet file (for the OTA manifest)."""
        return self.intake.keys.get(room)

    def _board_acked(self, room: str, ack: dict) -> None:
        key = (room, ack["id"])
        if key in self._board_acks:  # one of ours, still remembered
            self._board_acks[key] = ack

    def board_result(self, room: str, command_id: str) -> dict | None:
        """What became of a technician's command: None if unknown (or long
        forgotten), else whether the board acknowledged it and its answer."""
        key = (room, command_id)
        if key not in self._board_acks:
            return None
        ack = self._board_acks[key]
        out: dict[str, Any] = {"room": room, "id": command_id, "acked": ack is not None}
        if ack is not None:
            out |= {"ok": ack["ok"], "result": ack.get("result") or ack.get("error")}
        return out

    @on_gateway_loop
    async def reload(self, path: str, who: str = "system") -> dict:
        """Load the configuration file again. A broken file is refused and the
        running configuration stays; so is a change that needs a restart."""
        try:
            new = await asyncio.to_thread(Config.load, path)
            for name, key in (("school", "school"), ("gateway_id", "gateway_id"), ("db", "db"), ("fleet_file", "fleet"),
                              ("school_broker", "school_broker"), ("city_broker", "city_broker"),
                              ("http_bind", "http.bind"), ("http_token", "http.token"),
                              ("http_viewer_token", "http.viewer_token"), ("clock_rtc", "clock.rtc"),
                              ("telemetry_interval_s", "city.telemetry_interval_s"),
                              ("uplink_kbit_s", "city.uplink_kbit_s"),
                              ("telemetry_outbox_max", "city.telemetry_outbox_max")):
                if getattr(new, name) != getattr(self.config, name):
                    # the API's tokens are read at start: a changed token must not look applied
                    raise ConfigError(f"{new.source}: {key}: changed; this needs a gateway restart, "
                                      "the running configuration stays")
            state = await asyncio.to_thread(PolicyState.build, new, ())
        except ConfigError as e:
            now = self.clock()
            await self._durable(self._submit(self._audit(now, who, "config.rejected", {"detail": str(e)})))
            self._count_now("config_rejected")
            log.error("configuration reload refused, the running one stays: %s", e)
            raise
        now = self.clock()
        self.registry.set_rooms(new.rooms)  # before the config: rooms() never sees a room it lacks
        self.config = new
        # the overrides in force now, not those when the file was read
        self.policy = state.with_overrides(self.policy.overrides)
        self._publish_policies(now)
        self._load_fleet()
        log.info("configuration reloaded from %s: %d rooms", new.source, len(new.rooms))
        await self._durable(self._submit(self._audit(now, who, "config.reload",
                                                     {"detail": f"{len(new.rooms)} rooms"})))
        return {"ok": True, "rooms": sorted(new.rooms)}

    def explain(self, room: str, at: float | None = None):
        """The decision a request in `room` would get at `at` (now by default:
        the refusal of an unsynchronised clock, if that is the case)."""
        if at is None and not self.clock_status.synced:
            return clock_unsynced()
        return self.policy.decide(room, self.clock() if at is None else at)


def _time_field(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OverrideError(f"{name}: Unix seconds expected, got {value!r}")
    value = float(value)
    if not OVERRIDE_TIME_MIN <= value <= OVERRIDE_TIME_MAX:  # NaN fails this too
        raise OverrideError(f"{name}: a time between 2000 and 2100 expected, got {value!r}")
    return value


def _override(row: dict) -> Override:
    return Override(
        id=row["id"], scope=row["scope"], room=row["room"], effect=row["effect"], ap=bool(row["ap"]),
        ap_only=bool(row["ap_only"]), starts=datetime.fromtimestamp(row["starts"], UTC),
        expires=datetime.fromtimestamp(row["expires"], UTC), who=row["who"], why=row["why"],
    )


class _TelemetryRegistry(Registry):
    """The registry, with each live reading Intake applies handed to the
    telemetry aggregator too (the board's `tele` is decoded and checked
    once, by Intake; a reading from an older boot never gets here)."""

    on_tele: Callable[[str, dict, float], None] | None = None

    def apply_tele(self, room: str, obj: dict, now: float) -> None:
        super().apply_tele(room, obj, now)
        if self.on_tele is not None:
            self.on_tele(room, obj, now)


def _audit_json(detail: dict) -> str:
    return json.dumps(detail, separators=(",", ":"), sort_keys=True)
