"""The school gateway service: wires the school link, the registry, the
decisions, the history/outbox and the city link around one worker thread.

Threads: paho runs one network thread per link and only hands messages over a
queue; the worker thread does everything else (validate, store, decide,
forward), in arrival order, so SQLite has a single writer and no state is
shared without a lock. `start()`/`stop()` return quickly, so the gateway can be
embedded in an asyncio program (the demo) or run by `main()`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import sqlite3
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future
from datetime import UTC, datetime
from zoneinfo import ZoneInfo
from typing import Callable

import paho.mqtt.client as mqtt

from protocol.codec import MAX_DURATION_S, ProtocolError, parse, parse_topic

from .city_link import CityLink, Forwarder
from .config import Config, ConfigError
from .decide import PolicyState, command
from .policy.model import Override
from common.mqtt import LinkError
from .registry import Registry
from .school_link import BOARD_LEAVES, SchoolLink
from .store import Store

log = logging.getLogger(__name__)

_STOP = ("stop",)
PAYLOAD_LOG_CHARS = 120
# Bounded: if SQLite ever stalls, paho's thread blocks on put() and TCP pushes back
# on the broker, instead of the Pi's RAM filling up.
QUEUE_MAX = 10000
BATCH_MAX = 256  # messages per transaction


class GatewayError(RuntimeError):
    pass


_REJECTION = {"not_json": "bad_json", "not_object": "bad_json", "version": "bad_version",
              "too_large": "too_large", "topic": "bad_topic"}


def rejection_reason(error: ProtocolError) -> str:
    """The gateway's metric label for the codec's own classification."""
    return _REJECTION.get(error.kind, "bad_field")


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
    ) -> None:
        self.config = config
        self.clock = clock
        self.connect_attempts = connect_attempts
        self.tick_s = tick_s
        self._queue: queue.Queue = queue.Queue(QUEUE_MAX)
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        try:
            self.store = Store(config.db)
        except sqlite3.Error as e:
            raise GatewayError(f"database {config.db}: {e}") from e
        self.registry = Registry(config.rooms)
        self.registry.load(self.store.load_rooms())
        self.policy = PolicyState.build(config, self._overrides_from(self.store.active_overrides(clock())))
        self._policy_day = self._local_day(clock())
        self._check_calendar_coverage(clock())
        self.school = SchoolLink(config, lambda msg: self._queue.put(("board", msg)), reconnect_max_s=reconnect_max_s,
                                 on_connected=lambda: self._queue.put(("school_up",)))
        self.city: CityLink | None = None
        self.forwarder: Forwarder | None = None
        if config.city_broker is not None:
            self.city = CityLink(config, self._queue.put, reconnect_max_s=reconnect_max_s)
            self.forwarder = Forwarder(self.store, self.city, config, resend_after_s=resend_after_s)
        self._last_seq = self.store.last_seq()
        self._acked = self.store.acked()
        self._worker: threading.Thread | None = None
        self._after_commit: list[tuple] = []  # counts applied once the batch is committed
        self._answers: list[tuple] = []  # (future, result) of API calls, answered after the commit
        self._retry: list[tuple] = []  # board messages whose commit failed: first in the next batch
        self._timed: set[tuple[str, int]] = set()  # (room, boot) given the time
        self._time_ids = 0
        self._stopped = False

    # lifecycle -----------------------------------------------------------------

    def start(self) -> "Gateway":
        self._worker = threading.Thread(target=self._run, name=f"gateway-{self.config.school}", daemon=True)
        self._worker.start()
        try:
            self.school.connect(attempts=self.connect_attempts)
        except LinkError as e:
            self._stop_worker()
            self.store.close()
            raise GatewayError(str(e)) from e
        if self.city is not None:
            self.city.connect_in_background()
        log.info("gateway %s for school %s started: %d rooms, outbox %d", self.config.gateway_id, self.config.school, len(self.config.rooms), self.outbox_size())
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.school.stop()
        if self.city is not None:
            self.city.stop()
        self._stop_worker()
        self.store.close()

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._queue.put(_STOP)
            self._worker.join(10)
            self._worker = None

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
        out: dict = {
            "accepted": {k[1]: v for k, v in c.items() if isinstance(k, tuple) and k[0] == "accepted"},
            "rejected": {k[1]: v for k, v in c.items() if isinstance(k, tuple) and k[0] == "rejected"},
            "decisions": {k[1]: v for k, v in c.items() if isinstance(k, tuple) and k[0] == "decision"},
            "duplicates": c.get("duplicates", 0),
            "history": c.get("history", 0),
            "events_missing": c.get("events_missing", 0),
            "internal_errors": c.get("internal_errors", 0),
            "time_sent": c.get("time_sent", 0),
            "policies_published": c.get("policies_published", 0),
            "config_rejected": c.get("config_rejected", 0),
            "outbox": self.outbox_size(),
            "city_acked": self._acked,
            "last_seq": self._last_seq,
        }
        if self.forwarder is not None:
            out["batches_sent"] = self.forwarder.batches_sent
            out["records_sent"] = self.forwarder.records_sent
            out["resends"] = self.forwarder.resends
        return out

    def outbox_size(self) -> int:
        # seq is gap-free and nothing is deleted, so the outbox is a difference.
        return self._last_seq - self._acked

    def health(self) -> dict:
        worker_alive = self._worker is not None and self._worker.is_alive()
        return {
            "ok": worker_alive and self.school.connected,
            "worker": worker_alive,
            "school_broker": self.school.connected,
            "city_broker": None if self.city is None else self.city.connected,
            "outbox": self.outbox_size(),
            "calendar_covered_until": self.policy.calendar.coverage()[1].isoformat(),
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

    # worker thread -----------------------------------------------------------------

    def _count(self, key, n: int = 1) -> None:
        if self.store._depth and threading.current_thread() is self._worker:
            # Inside the worker's batch transaction: count once committed, so
            # whoever reads a count also finds the records behind it.
            self._after_commit.append((key, n))
            return
        self._count_now(key, n)

    def _count_now(self, key, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _run(self) -> None:
        while True:
            batch, self._retry = self._retry, []
            if not batch:
                try:
                    batch = [self._queue.get(timeout=self.tick_s)]
                except queue.Empty:
                    pass
            # Group commit: whatever queued up meanwhile (a board replaying its
            # outbox, telemetry from 30 rooms) shares one transaction and one
            # fsync instead of one each.
            while batch and len(batch) < BATCH_MAX and batch[-1] is not _STOP:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = bool(batch) and batch[-1] is _STOP
            if stop:
                batch.pop()
            now = self.clock()
            self._after_commit = []
            self._answers = []
            committed = True
            try:
                if batch:
                    with self.store.transaction():
                        for item in batch:
                            self._handle_one(item, now)
            except Exception:  # the batch's commit itself failed (disk full, I/O error)
                committed = False
                self._commit_failed(batch, now)
            if committed:
                for key, n in self._after_commit:
                    self._count_now(key, n)
                for future, result in self._answers:
                    future.set_result(result)
                for item in batch:
                    if item[0] == "board":
                        self.school.ack(item[1])
                if any(item[0] == "board" for item in batch):
                    self._last_seq = self.store.last_seq()
            try:  # after the commit: the city link and the day's policies
                if self.forwarder is not None:
                    self.forwarder.pump(now)
                    self._acked = self.forwarder.acked
                if self._local_day(now) != self._policy_day:
                    # After midnight the 48 h of windows move on by a day.
                    self._policy_day = self._local_day(now)
                    self._publish_policies(now)
                    self._check_calendar_coverage(now)
            except Exception:
                log.exception("gateway worker: city link or daily policy refresh failed")
                self._count_now("internal_errors")
            if stop:
                return

    def _commit_failed(self, batch: list, now: float) -> None:
        log.exception("gateway worker: could not commit %d message(s); retrying", len(batch))
        self._count_now("internal_errors")
        for future, _ in self._answers:
            future.set_exception(GatewayError("the gateway could not write to its database"))
        # What was applied in memory before the failed commit goes back to
        # what the database holds, and the boards hear it again.
        with contextlib.suppress(Exception):
            self._reload_overrides(now)
            self._publish_policies(now)
        # The board messages are not acknowledged to the broker; a healthy
        # link would not redeliver them, so they go first into the next batch
        # (deduplication makes a repeat harmless), after a short pause.
        self._retry = [item for item in batch if item[0] == "board"]
        time.sleep(min(1.0, self.tick_s))

    def _handle_one(self, item: tuple, now: float) -> None:
        try:
            with self.store.transaction():  # a SAVEPOINT: one bad message rolls back alone
                self._handle(item, now)
        except Exception:  # a bug must cost one message, never the gateway
            log.exception("gateway worker: unexpected error on %.200r", item)
            self._count("internal_errors")

    def _handle(self, item: tuple, now: float) -> None:
        kind = item[0]
        if kind == "board":
            self._board_message(item[1], now)
        elif kind == "school_up":
            self._publish_policies(now)
        elif kind == "call":
            _, fn, args, future = item
            try:
                result = fn(now, *args)
            except Exception as e:  # reported to the caller (the API), who says what was wrong
                future.set_exception(e)
            else:
                # answered once the batch is committed: the caller's next read sees it
                self._answers.append((future, result))
        elif kind == "city_up":
            self.forwarder.on_up(now)
        elif kind == "city_ack":
            self.forwarder.on_ack(item[1], now)
        elif kind == "city_down":
            self.forwarder.on_down()  # the next city_up resends from the last ack

    def _reject(self, reason: str, msg: mqtt.MQTTMessage, detail: str) -> None:
        log.warning("rejected (%s) on %s: %s; payload %.*r", reason, _topic_of(msg), detail, PAYLOAD_LOG_CHARS, msg.payload)
        self._count(("rejected", reason))  # after the log: a reader of the count finds the reason logged

    def _board_message(self, msg: mqtt.MQTTMessage, now: float) -> None:
        try:
            school, room, leaf = parse_topic(_topic_of(msg))
        except ProtocolError as e:
            return self._reject("bad_topic", msg, str(e))
        if school != self.config.school:
            return self._reject("wrong_school", msg, "school %s is not %s" % (school, self.config.school))
        if room == "gateway" or leaf not in BOARD_LEAVES:
            # Our own state coming back through `+/state`, or our retained policies: amqtt
            # 0.11/0.12 sends a connecting client the retained messages matching *any*
            # session's subscriptions (broker.py, "pre-existing session's subscriptions").
            log.debug("ignored gateway-side message on %s", _topic_of(msg))
            return
        if not self.registry.known(room):
            return self._reject("unknown_room", msg, "room %s is not in the configuration" % room)
        try:
            obj = parse(leaf, msg.payload)
            body = msg.payload.decode()
        except ProtocolError as e:
            return self._reject(rejection_reason(e), msg, str(e))
        if leaf == "tele":
            # Periodic readings update the live view only; the history keeps events.
            if not self.registry.is_history(room, obj["boot"]):
                self.registry.apply_tele(room, obj, now)
            self._count(("accepted", leaf))
            return
        send = None
        if leaf == "state":
            self._state(room, obj, body, now)
        elif leaf == "evt":
            send = self._event(room, obj, body, now)
            if send is not None:
                # Answer before the commit's fsync: a teacher waits on this.
                # Should the commit then fail, the board's own events
                # (session.started) still tell the story, and the request,
                # not yet acknowledged to the broker, comes back and is
                # answered again (the board acks a second grant as stale).
                self.school.send_cmd(room, send)
        elif leaf == "ack":
            self.store.add(room, "ack", now, body, obj["boot"])
            if self.registry.is_history(room, obj["boot"]):
                self._count("history")
            else:
                self.registry.touch(room, now)
        self._count(("accepted", leaf))

    def _state(self, room: str, obj: dict, body: str, now: float) -> None:
        if self.registry.is_history(room, obj["boot"]):
            self._count("history")
            log.info("room %s: state from old boot %s kept as history", room, obj["boot"])
            self.store.add(room, "state", now, body, obj["boot"])
            return
        fresh = self.registry.apply_state(room, obj, body, now)
        if obj["online"] and (room, obj["boot"]) not in self._timed:
            # The board has no trusted clock: give it ours at every boot (and
            # once after our own restart), so its offline policy windows and
            # event times work without waiting for the next grant.
            self._timed.add((room, obj["boot"]))
            self._time_ids += 1
            self.school.send_cmd(room, {"v": 1, "id": "t-%d-%d" % (int(now), self._time_ids),
                                        "cmd": "time", "now": int(now)})
            self._count("time_sent")
        if not fresh:
            self._count("duplicates")
            return
        self.store.add(room, "state", now, body, obj["boot"])
        self.store.save_room(self.registry.row(room))

    def _event(self, room: str, obj: dict, body: str, now: float) -> dict | None:
        boot, seq = obj["boot"], obj["seq"]
        if self.store.has_record("evt", room, boot, seq):
            self._count("duplicates")  # QoS 1 redelivery
            return None
        self.store.add(room, "evt", now, body, boot, seq)
        if self.registry.is_history(room, boot):
            self._count("history")
            log.info("room %s: event %s/%s from an old boot kept as history", room, boot, seq)
            return None
        missing, fresh = self.registry.apply_evt(room, obj, now)
        self.store.save_room(self.registry.row(room))
        if missing:
            self._count("events_missing", missing)
            log.warning("room %s: %d event(s) missing before boot %s seq %s", room, missing, boot, seq)
        if obj["type"] != "lesson.requested":
            return None
        if not fresh:
            # Older than the board's birth: kept in its flash outbox while the
            # link was down; the board applied its offline policy long ago.
            self._count("history")
            return None
        req = obj["data"]["req"]
        if self.store.has_record("decision", room, boot, req):
            self._count("duplicates")
            return None
        data = obj["data"]
        if data.get("extend"):
            # One more slot: what the policy allows from the session's current
            # end, which the board added to its own clock (uptime) on grant.
            at = now + min(data.get("remaining_s", 0), MAX_DURATION_S)
            decision = self.policy.decide(room, at)
        else:
            decision = self.policy.decide(room, now)
        if "calendar_not_covered" in decision.warnings:
            log.warning("room %s: decided without school-holiday data for this date; configured closures only", room)
        # The decision's own record seq makes the command id unique for ever, across restarts.
        cmd_id = "g-%06d" % (self.store.last_seq() + 1)
        cmd = command(decision, cmd_id, req, now)
        self.store.add(room, "decision", now, _json(cmd), boot, req)
        self._count(("decision", cmd["cmd"]))
        log.info("room %s: %s request %s/%s (%s)", room, cmd["cmd"], boot, req, decision.reason)
        return cmd

    # policy: offline policies, overrides, configuration reload ---------------------

    def _local_day(self, now: float):
        return datetime.fromtimestamp(now, ZoneInfo(self.config.policy.timezone)).date()

    def _reload_overrides(self, now: float) -> None:
        self.policy = self.policy.with_overrides(self._overrides_from(self.store.active_overrides(now)))

    @staticmethod
    def _overrides_from(rows: list[dict]) -> tuple[Override, ...]:
        out = []
        for r in rows:
            try:
                out.append(_override(r))
            except ValueError as e:  # a row written by an older version: skipped, said
                log.warning("override %s ignored: %s", r.get("id"), e)
        return tuple(out)

    def _publish_policies(self, now: float, rooms=None) -> None:
        for room in rooms or self.config.rooms:
            try:
                payload = self.policy.offline_payload(room, now)
            except Exception:
                log.exception("room %s: could not compute the offline policy", room)
                self._count("internal_errors")
                continue
            self.school.publish_policy(room, payload)
        self._count("policies_published", len(rooms or self.config.rooms))

    def call(self, fn, *args, timeout: float = 10.0):
        """Run `fn(now, *args)` on the worker thread (the single writer) and
        return its result or raise its exception. For the API's threads."""
        future: Future = Future()
        self._queue.put(("call", fn, args, future), timeout=timeout)
        return future.result(timeout)

    def add_override(self, *, scope: str, room: str | None, effect: str, who: str, why: str,
                     expires: float, starts: float | None = None, ap: bool = False, ap_only: bool = False) -> dict:
        return self.call(self._add_override, dict(scope=scope, room=room, effect=effect, who=who, why=why,
                                                  expires=expires, starts=starts, ap=ap, ap_only=ap_only))

    def _add_override(self, now: float, fields: dict) -> dict:
        who, why = (fields["who"] or "").strip(), (fields["why"] or "").strip()
        if not 1 <= len(who) <= 40:
            raise OverrideError("who: a role of 1 to 40 characters (\"direction\", \"mairie\"), not a person's name")
        if not 1 <= len(why) <= 200:
            raise OverrideError("why: 1 to 200 characters, shown to whoever wonders why")
        if fields["scope"] == "room" and fields["room"] not in self.config.rooms:
            raise OverrideError(f"room: {fields['room']!r} is not a room of this school")
        starts = now if fields["starts"] is None else float(fields["starts"])
        expires = float(fields["expires"])
        if expires <= now:
            raise OverrideError("expires: must be in the future")
        if expires - starts > MAX_OVERRIDE_S:
            raise OverrideError(f"expires: an override lasts at most {MAX_OVERRIDE_S // 86400} days; change the configuration for longer")
        row = dict(fields, who=who, why=why, starts=starts, expires=expires, id=self.store.next_override_id())
        try:
            _override(row)  # the model's own checks (scope/room, ap_only only on deny, ...)
        except ValueError as e:
            raise OverrideError(str(e)) from None
        self.store.add_override(row, now)
        self.store.audit(now, who, "override.add", row)
        self._reload_overrides(now)
        self._publish_policies(now, [row["room"]] if row["scope"] == "room" else None)
        log.info("override %s added by %s: %s %s (%s)", row["id"], who, row["effect"], row["room"] or "school", why)
        return row | {"created": now, "cancelled": None}

    def cancel_override(self, override_id: str, who: str) -> bool:
        return self.call(self._cancel_override, override_id, who)

    def _cancel_override(self, now: float, override_id: str, who: str) -> bool:
        done = self.store.cancel_override(override_id, now)
        if done:
            self.store.audit(now, who or "?", "override.cancel", {"id": override_id})
            self._reload_overrides(now)
            self._publish_policies(now)
        return done

    def reload(self, path: str, who: str = "system") -> dict:
        """Load the configuration file again. A broken file is refused and the
        running configuration stays; so is a change that needs a restart."""
        try:
            new = Config.load(path)
            for name, key in (("school", "school"), ("gateway_id", "gateway_id"), ("db", "db"),
                              ("school_broker", "school_broker"), ("city_broker", "city_broker"),
                              ("http_bind", "http.bind"), ("http_token", "http.token"),
                              ("http_viewer_token", "http.viewer_token")):
                if getattr(new, name) != getattr(self.config, name):
                    # the API's tokens are read at start: a changed token must not look applied
                    raise ConfigError(f"{new.source}: {key}: changed; this needs a gateway restart, "
                                      "the running configuration stays")
            state = PolicyState.build(new, self.policy.overrides)
        except ConfigError as e:
            self.call(self._audit_reload, who, False, str(e))
            self._count_now("config_rejected")
            log.error("configuration reload refused, the running one stays: %s", e)
            raise
        return self.call(self._swap_config, new, state, who)

    def _audit_reload(self, now: float, who: str, ok: bool, detail: str) -> None:
        self.store.audit(now, who, "config.reload" if ok else "config.rejected", {"detail": detail})

    def _swap_config(self, now: float, new: Config, state: PolicyState, who: str) -> dict:
        self.registry.set_rooms(new.rooms)  # before the config: rooms() never sees a room it lacks
        self.config = new
        # the overrides in force now, not those when the file was read: an
        # override added meanwhile must not be undone by the reload
        self.policy = state.with_overrides(self.policy.overrides)
        self._audit_reload(now, who, True, f"{len(new.rooms)} rooms")
        self._publish_policies(now)
        log.info("configuration reloaded from %s: %d rooms", new.source, len(new.rooms))
        return {"ok": True, "rooms": sorted(new.rooms)}

    def explain(self, room: str, at: float | None = None):
        """The decision a request in `room` would get at `at` (now by default)."""
        return self.policy.decide(room, self.clock() if at is None else at)


MAX_OVERRIDE_S = 14 * 86400


class OverrideError(ValueError):
    pass


def _override(row: dict) -> Override:
    return Override(
        id=row["id"], scope=row["scope"], room=row["room"], effect=row["effect"], ap=bool(row["ap"]),
        ap_only=bool(row["ap_only"]), starts=datetime.fromtimestamp(row["starts"], UTC),
        expires=datetime.fromtimestamp(row["expires"], UTC), who=row["who"], why=row["why"],
    )


def _json(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _topic_of(msg: mqtt.MQTTMessage) -> str:
    try:
        return msg.topic
    except UnicodeDecodeError:  # paho decodes lazily; a broken topic must still be logged
        return msg._topic.decode("utf-8", "replace")


# command line ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`preau gateway --config school.toml`"""
    parser = argparse.ArgumentParser(prog="preau gateway", description="Run the Préau school gateway.")
    parser.add_argument("--config", required=True, help="the school's TOML configuration file")
    parser.add_argument("--bind", help="host:port for the web API (default: http.bind from the config)")
    parser.add_argument("--connect-attempts", type=int, default=5, metavar="N",
                        help="tries to reach the school broker before giving up (default 5, backoff from 1 s)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gateway = None
    try:
        config = Config.load(args.config)
        from .api import ApiSettings, create_app

        settings = ApiSettings.from_config(config, os.environ, config_path=args.config)
        bind = args.bind or config.http_bind
        host, _, port = bind.rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"--bind: expected host:port, got {bind!r}")
        gateway = Gateway(config, connect_attempts=max(1, args.connect_attempts)).start()
        app = create_app(gateway, settings)
        running = gateway

        @contextlib.asynccontextmanager
        async def lifespan(_app):
            yield
            # Here, not only in `finally`: uvicorn re-raises SIGTERM once it has shut
            # down, so code after `run()` may never execute.
            running.stop()

        app.router.lifespan_context = lifespan

        import signal

        import uvicorn

        def on_sighup(_signum, _frame) -> None:
            # `systemctl reload preau-gateway`: read the file again, off the
            # signal handler; a broken file is refused and logged.
            def reload() -> None:
                with contextlib.suppress(ConfigError):
                    gateway.reload(args.config, who="systemd")

            threading.Thread(target=reload, name="reload", daemon=True).start()

        signal.signal(signal.SIGHUP, on_sighup)
        # uvicorn handles SIGTERM/SIGINT (systemd stop) and returns.
        uvicorn.Server(uvicorn.Config(app, host=host, port=int(port), log_level=args.log_level.lower())).run()
        return 0
    except (ConfigError, GatewayError) as e:
        print(f"preau gateway: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1
    except OSError as e:  # database folder missing, port taken...
        print(f"preau gateway: {e}", file=sys.stderr)
        return 1
    finally:
        if gateway is not None:
            gateway.stop()


if __name__ == "__main__":
    sys.exit(main())
