"""A city broker locked down as in production, for tests, benches and the
demo: a fresh city CA in a folder (cloud_bridge/ca.py), the generated
Mosquitto files (cloud_bridge/broker_files.py), Mosquitto on a free
loopback port; then the certificates and settings each party needs.

    city = LockedCity.start(tmp_path, schools={"0341234a": "gw-0341234a"})
    gateway_broker = city.gateway("0341234a")        # a BrokerConfig: TLS, the school's certificate
    settings = city.worker_settings("1", db_path=...)  # CitySettings of worker.1, TLS, the CA's index
    ...
    city.stop()

`TlsClient` is a plain paho client with a certificate (or none): what an
attacker or a test uses to probe the broker. `TlsCity` is devkit.testing's
City test double speaking TLS as a worker."""

from __future__ import annotations

import json
import os
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_bridge import broker_files
from cloud_bridge.ca import CityCA, Written, worker_cn
from cloud_bridge.settings import CitySettings
from common.mqtt import BrokerConfig, tcp_nodelay

from .brokers import Mosquitto, free_port
from .testing import City, wait_for

WAIT_S = 15.0


@dataclass
class LockedCity:
    dir: Path
    ca: CityCA
    files: broker_files.BrokerFiles
    broker: Mosquitto
    identities: dict[str, Written] = field(default_factory=dict)  # by CN

    @classmethod
    def start(cls, directory: str | os.PathLike, schools: dict[str, str] | None = None,
              workers: tuple[str, ...] = ("1",)) -> LockedCity:
        """A new CA in `directory`/ca, the broker's files in `directory`/broker,
        a gateway certificate for each school (school -> gateway id) and a
        worker certificate for each name, then Mosquitto started."""
        root = Path(directory)
        ca = CityCA.init(str(root / "ca"), name="Préau test city CA")
        ca.issue_server(["localhost"], ["127.0.0.1"])
        files = broker_files.BrokerFiles(str(root / "broker"), ca.dir, port=free_port(), host="127.0.0.1")
        city = cls(root, ca, files, Mosquitto(port=files.port, config_file=files.conf, workdir=str(root / "broker")))
        for school, gateway in (schools or {}).items():
            city.issue_gateway(school, gateway)
        for name in workers:
            city.issue_worker(name)
        broker_files.write(files, ca)
        city.broker.start()
        return city

    @property
    def host(self) -> str:
        return self.broker.host

    @property
    def port(self) -> int:
        return self.broker.port

    # identities ----------------------------------------------------------------

    def issue_gateway(self, school: str, gateway: str) -> Written:
        written = self.ca.issue_gateway(school, gateway, str(self.dir / "gateways" / school))
        self.identities[school] = written
        return written

    def issue_worker(self, name: str) -> Written:
        written = self.ca.issue_worker(name, str(self.dir / "workers" / name))
        self.identities[written.entry.cn] = written
        broker_files.write_acl(self.ca)
        return written

    def reload(self) -> None:
        """Write the ACL and send SIGHUP (the broker reads its ACL and CRL
        again; the caller waits for what it needs to see)."""
        broker_files.write_acl(self.ca)
        self.broker.reload()

    def gateway(self, school: str, gateway: str | None = None) -> BrokerConfig:
        """The school gateway's `city_broker`: TLS with its certificate,
        issued now if the school has none yet."""
        if school not in self.identities:
            self.issue_gateway(school, gateway or f"gw-{school}")
        return self.broker_config(self.identities[school])

    def broker_config(self, identity: Written) -> BrokerConfig:
        return BrokerConfig(self.host, self.port, tls=True, ca_file=self.ca.cert_file,
                            cert_file=identity.cert_file, key_file=identity.key_file)

    def gateway_config(self, school: str) -> dict:
        """The same, as the `city_broker` table of a gateway's configuration."""
        b = self.gateway(school)
        return {"host": b.host, "port": b.port, "tls": True, "ca_file": b.ca_file, "cert_file": b.cert_file,
                "key_file": b.key_file}

    def worker_settings(self, name: str = "1", **values) -> CitySettings:
        """A city worker's settings: TLS with worker.NAME's certificate, the
        CA's index as the gateway register, a fresh API token."""
        identity = self.identities[worker_cn(name)]
        values.setdefault("token", secrets.token_urlsafe(24))
        values.setdefault("http_port", 0)
        values.setdefault("client_id", f"city-{uuid.uuid4().hex[:8]}")
        values.setdefault("reconnect_max_s", 1.0)
        values.setdefault("gateways", self.ca.index_file)
        # The city's files (its SQLite database, or with PostgreSQL the pages'
        # accounts and the alerts beside where it would be) in the city's
        # folder, never in the working directory.
        values.setdefault("db_path", str(self.dir / "workers" / name / "city.sqlite3"))
        return CitySettings(broker_host=self.host, broker_port=self.port, ca_file=self.ca.cert_file,
                            cert_file=identity.cert_file, key_file=identity.key_file, **values)

    def client(self, who: str | None, client_id: str | None = None) -> TlsClient:
        """A paho client as `who` (a school, `worker.NAME`), or with no certificate (None)."""
        return TlsClient(self.host, self.port, self.ca.cert_file, self.identities[who] if who else None, client_id)

    def stop(self) -> None:
        self.broker.stop()


class TlsClient:
    """A plain paho client (its own network thread) with a certificate, or
    none: connect, subscribe, publish, and what it received."""

    def __init__(self, host: str, port: int, ca_file: str, identity: Written | None = None,
                 client_id: str | None = None, clean_session: bool = True):
        self.host, self.port = host, port
        self.messages: list[tuple[str, bytes]] = []
        self.refused: str | None = None
        self._connack = threading.Event()
        self._granted: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self.client = tcp_nodelay(mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or uuid.uuid4().hex,
                                              clean_session=clean_session))
        if identity is None:
            self.client.tls_set(ca_certs=ca_file)
        else:
            self.client.tls_set(ca_certs=ca_file, certfile=identity.cert_file, keyfile=identity.key_file)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._connack.is_set():
            # A certificate refused: with TLS 1.3 the handshake "succeeds" on
            # our side and the broker's alert arrives with the first read.
            self.refused = f"disconnected before CONNACK ({reason_code})"
            self._connack.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._granted[mid] = [rc.value for rc in reason_codes]

    def connect(self, timeout: float = WAIT_S) -> bool:
        """True once connected; False if the broker refused us (TLS or CONNACK)."""
        try:
            self.client.connect(self.host, self.port, keepalive=10)
        except OSError as e:  # the TLS handshake failed on our side
            self.refused = f"{type(e).__name__}: {e}"
            return False
        self.client.loop_start()
        if not self._connack.wait(timeout):
            raise AssertionError(f"neither CONNACK nor refusal from {self.host}:{self.port} in {timeout:.0f} s")
        if self.refused is not None:
            self.client.loop_stop()
            return False
        return True

    def subscribe(self, *filters: str) -> list[int]:
        """Subscribe (QoS 1) and wait for the SUBACK: its codes, one per filter."""
        rc, mid = self.client.subscribe([(f, 1) for f in filters])
        if mid is None:
            raise AssertionError(f"subscribe {filters}: {mqtt.error_string(rc)}")
        return wait_for(lambda: self._granted.get(mid), WAIT_S, f"SUBACK for {filters}")

    def publish(self, topic: str, payload: bytes | str | dict, retain: bool = False) -> None:
        """QoS 1, waited for: the broker has it (or dropped it, if the ACL says no: MQTT 3.1.1 says nothing)."""
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def received(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class TlsCity(City):
    """devkit.testing's City test double, connecting as a worker with its certificate."""

    def __init__(self, city: LockedCity, school: str, worker: str = "1", ack: bool = True) -> None:
        super().__init__(city.host, city.port, school, ack=ack)
        self.identity = city.identities[worker_cn(worker)]
        self.ca_file = city.ca.cert_file

    def connect(self) -> TlsCity:
        self.client.tls_set(ca_certs=self.ca_file, certfile=self.identity.cert_file, keyfile=self.identity.key_file)
        super().connect()
        return self
