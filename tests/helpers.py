"""Shared test helpers: a paho peer that records what it hears, bounded waits."""

from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from common.mqtt import tcp_nodelay
from devkit.testing import wait_for  # noqa: F401 - one polling helper for all tests


def school_config(broker, tmp_path, gateway_id: str = "gw-test"):
    """A school of two rooms with Wi-Fi allowed, on `broker`, its database in `tmp_path`."""
    from edge_gateway.config import Config

    base = {"school": "0341234a", "gateway_id": gateway_id, "db": str(tmp_path / "gw.sqlite"),
            "school_broker": {"host": broker.host, "port": broker.port}}
    if hasattr(broker, "config"):  # a devkit.school.LockedSchool: its fleet and broker files
        base = broker.config(str(tmp_path)) | {"gateway_id": gateway_id}
    return Config.from_dict(base | {
        "policy": {"zone": "C"}, "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {"wifi": "allowed"}},
    }, source="test.toml")


def run(coro, timeout: float = 60):
    """Run a test's asyncio scenario, bounded."""
    import asyncio

    return asyncio.run(asyncio.wait_for(coro, timeout))


async def await_for(pred, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


class Peer:
    """A paho client on a real broker that records every message it sees."""

    def __init__(self, host: str, port: int, subscribe: str | list[str] = "#", *,
                 username: str | None = None, password: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = tcp_nodelay(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peer-{uuid.uuid4().hex[:8]}"))
        if username is None:
            # On a devkit.school.LockedSchool: the test observer, who may read the school's topics.
            from devkit.school import OBSERVER, LockedSchool

            school = next((s for s in LockedSchool.running if (s.host, s.port) == (host, port)), None)
            if school is not None and school.observer:
                username, password = OBSERVER, school.observer_password
        if username is not None:
            self.client.username_pw_set(username, password)
        self._subs = [subscribe] if isinstance(subscribe, str) else subscribe
        self._ready = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a, **k: self._ready.set()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise AssertionError("peer did not subscribe")

    def _on_connect(self, client, userdata, flags, rc, props=None):
        client.subscribe([(t, 1) for t in self._subs])

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def json_on(self, suffix: str) -> list[dict]:
        out = []
        with self.lock:
            for t, p, _ in self.messages:
                if t.endswith(suffix):
                    try:
                        out.append(json.loads(p))
                    except ValueError:
                        pass
        return out

    def events(self, kind: str | None = None) -> list[dict]:
        return [e for e in self.json_on("/evt") if kind is None or e.get("type") == kind]

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
