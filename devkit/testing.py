"""Plain paho clients that play a classroom board and the city, for the
gateway's tests and for trying a gateway by hand. They speak
docs/protocol.md directly and share no code with the gateway, except the
codec's topic helper."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from common.mqtt import tcp_nodelay
from edge_gateway.fleet import Credentials
from protocol import mac
from protocol.citylink import city_topic
from protocol.codec import topic

_T = TypeVar("_T")


def wait_for(predicate: Callable[[], _T | None], timeout: float = 10.0, what: str = "condition") -> _T:
    """Poll until predicate() is truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def _client(client_id: str, clean_session: bool = True) -> mqtt.Client:
    return tcp_nodelay(mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session))


def _connect(client: mqtt.Client, host: str, port: int) -> None:
    up = threading.Event()
    refused: list[str] = []

    def on_connect(c, u, f, rc, p) -> None:
        if rc.is_failure:
            refused.append(str(rc))
        up.set()

    client.on_connect = on_connect
    client.connect(host, port, keepalive=10)
    client.loop_start()
    if not up.wait(10):
        raise AssertionError(f"no CONNACK from {host}:{port}")
    if refused:
        client.loop_stop()
        raise ConnectionRefusedError(f"{host}:{port} refused the connection: {refused[0]}")


class Board:
    """A classroom board: birth, Last Will, events with per-boot seq, and the
    commands it receives."""

    def __init__(self, host: str, port: int, school: str, room: str, boot: int = 1,
                 creds: Credentials | None = None, anonymous: bool = False) -> None:
        self.host, self.port, self.school, self.room, self.boot = host, port, school, room, boot
        self.seq = 0
        self.cmds: list[dict] = []  # commands about sessions (grant, deny, end, ...)
        self.times: list[dict] = []  # `time` commands: the gateway giving its clock
        self.committed: list[tuple[int, int]] = []  # `committed_to`: (boot, seq) the gateway has stored
        self.policy: dict | None = None
        self.client = _client(f"board-{school}-{room}-{boot}-{id(self)}")
        if creds is None and not anonymous:
            # the room's board on a devkit.school.LockedSchool, if there is one
            from .school import CREDENTIALS

            creds = CREDENTIALS.get((host, port, school, room))
        self.creds = creds
        self.key = bytes.fromhex(creds.key) if creds is not None else None
        if creds is not None:
            self.client.username_pw_set(creds.username, creds.password)

    def sign(self, topic_: str, payload: bytes) -> bytes:
        """What the firmware does to every message (protocol/mac.py)."""
        if self.key is None:
            return payload
        return mac.sign(self.key, topic_, payload)

    def topic(self, leaf: str) -> str:
        return topic(self.school, self.room, leaf)

    def _on_message(self, client, userdata, msg) -> None:
        # Filter by topic: amqtt also hands a connecting client retained messages that
        # match other sessions' subscriptions.
        if msg.topic == self.topic("policy"):
            self.policy = json.loads(msg.payload)
        elif msg.topic == self.topic("cmd"):
            cmd = json.loads(msg.payload)
            if cmd.get("cmd") == "committed_to":
                self.committed.append((cmd["boot"], cmd["seq"]))
            else:
                (self.times if cmd.get("cmd") == "time" else self.cmds).append(cmd)

    def connect(self, birth: bool = True) -> Board:
        will = json.dumps({"v": 1, "online": False, "boot": self.boot}).encode()
        self.client.will_set(self.topic("state"), self.sign(self.topic("state"), will), qos=1, retain=True)
        self.client.on_message = self._on_message
        _connect(self.client, self.host, self.port)
        self.client.subscribe([(self.topic("cmd"), 1), (self.topic("policy"), 1)])
        if birth:
            self.birth()
        return self

    def publish(self, leaf: str, payload: bytes | str | dict, qos: int = 1, retain: bool = False,
                topic_: str | None = None, signed: bool = True) -> None:
        """Publish as the board: signed with its key (unless `signed=False`, as a forger would)."""
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        if isinstance(payload, str):
            payload = payload.encode()
        where = topic_ or self.topic(leaf)
        if signed:
            try:
                payload = self.sign(where, payload)
            except ValueError:
                pass  # not a JSON object's text (a test's garbage): sent as it is
        self.client.publish(where, payload, qos=qos, retain=retain).wait_for_publish(5)

    def birth(self, **fields) -> None:
        body = {"v": 1, "online": True, "boot": self.boot, "fw": "0.1.0", "board": "olimex-esp32-poe",
                "uptime_ms": 0, "session": "idle", "ap": False, "devices": ["button", "led", "ap_relay"]}
        self.publish("state", body | fields, retain=True)

    def event(self, kind: str, data: dict, seq: int | None = None, boot: int | None = None, **extra) -> int:
        if seq is None:
            seq = self.seq + 1
        if boot is None or boot == self.boot:
            self.seq = max(self.seq, seq)
        body = {"v": 1, "boot": self.boot if boot is None else boot, "seq": seq, "uptime_ms": 1000 * seq,
                "time": None, "type": kind, "data": data} | extra
        self.publish("evt", body)
        return seq

    def request(self) -> int:
        """A short press in idle: lesson.requested whose req is its own seq."""
        return self.event("lesson.requested", {"req": self.seq + 1}, seq=self.seq + 1)

    def cmd_for(self, req: int, timeout: float = 10.0) -> dict:
        return wait_for(lambda: next((c for c in self.cmds if c.get("req") == req), None), timeout, f"a cmd for req {req} in {self.room}")

    def crash(self) -> None:
        """Vanish without DISCONNECT, so the broker publishes the Last Will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class City:
    """The city side of the link: records received (every delivery, in order)
    and acks of the highest contiguous seq stored, unless told to stay quiet."""

    def __init__(self, host: str, port: int, school: str, ack: bool = True) -> None:
        self.host, self.port, self.school = host, port, school
        self.ack = ack
        self.deliveries: list[int] = []   # every record seq received, repeats included
        self.stored: dict[int, dict] = {}  # (school, seq) once
        self.batches: list[dict] = []
        self.gateway_state: dict | None = None
        self._lock = threading.Lock()
        self.client = _client(f"city-{school}-{id(self)}")

    def contiguous(self) -> int:
        n = 0
        while n + 1 in self.stored:
            n += 1
        return n

    def _on_message(self, client, userdata, msg) -> None:
        body = json.loads(msg.payload)
        if msg.topic.endswith("/gateway"):
            self.gateway_state = body
            return
        with self._lock:
            self.batches.append(body)
            for r in body["records"]:
                self.deliveries.append(r["seq"])
                self.stored.setdefault(r["seq"], r)
            acked = self.contiguous()
        if self.ack:
            client.publish(city_topic(self.school, "ack"), json.dumps({"v": 1, "school": self.school, "acked": acked}), qos=1)

    def reconnect(self) -> City:
        """A new connection (after a broker restart), keeping what was stored."""
        self.client = _client(f"city-{self.school}-{id(self)}")
        return self.connect()

    def connect(self) -> City:
        self.client.on_message = self._on_message
        _connect(self.client, self.host, self.port)
        self.client.subscribe([(city_topic(self.school, "records"), 1), (city_topic(self.school, "gateway"), 1)])
        return self

    def send_ack(self, acked: int) -> None:
        self.client.publish(city_topic(self.school, "ack"), json.dumps({"v": 1, "school": self.school, "acked": acked}), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# A Tuesday in term time, in class hours (zone C, Europe/Paris): the policy
# engine grants a session with the access point then, for 5400 s at most.
SCHOOL_TIME = "2026-11-24T09:00:00+01:00"


def school_clock(start: str = SCHOOL_TIME) -> Callable[[], float]:
    """A gateway clock that starts at `start` and runs at real speed, so
    tests and the demo decide at a known school time whatever today is."""
    from datetime import datetime

    offset = datetime.fromisoformat(start).timestamp() - time.time()
    return lambda: time.time() + offset
