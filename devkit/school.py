"""A school broker as Préau runs it, on loopback: the fleet and the
Mosquitto files that `preau provision` writes (edge_gateway/fleet.py,
edge_gateway/broker_files.py), and Mosquitto started from them. Tests, the
benches and the demo use it, so that every end-to-end run meets the locked
broker a school has: no anonymous client, one identity per board, ACLs.

For tests only, `observer=True` adds one more identity that may read every
topic of the school (a test's eyes); it is written by this module, never by
the gateway's generator."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import ClassVar

from edge_gateway import broker_files, fleet
from edge_gateway.broker_files import BrokerFiles
from edge_gateway.fleet import Credentials, Fleet
from protocol.codec import ROOT

from .brokers import Mosquitto, free_port

# Boards made by a LockedSchool, by (host, port, school, room): devkit.testing.Board
# finds its credentials here when a test does not give them.
CREDENTIALS: dict[tuple[str, int, str, str], Credentials] = {}
OBSERVER = "observer.devkit"


@dataclass(eq=False)
class LockedSchool:
    running: ClassVar[list[LockedSchool]] = []
    school: str = "0341234a"
    gateway_id: str = "gw-test"
    rooms: tuple[str, ...] = ("cm2-b", "cp-a")
    directory: str = ""
    observer: bool = True
    port: int = 0
    host: str = "127.0.0.1"
    creds: dict[str, Credentials] = field(default_factory=dict)
    observer_password: str = ""
    broker: Mosquitto | None = None

    @property
    def fleet_file(self) -> str:
        return os.path.join(self.directory, "fleet.json")

    @property
    def files(self) -> BrokerFiles:
        return BrokerFiles(dir=os.path.join(self.directory, "broker"), listen_host=self.host,
                           listen_port=self.port)

    def prepare(self) -> LockedSchool:
        """The fleet (a board per room) and the broker's files, without a broker:
        for a gateway tried behind another broker (amqtt, or an open one)."""
        self.directory = self.directory or tempfile.mkdtemp(prefix="preau-school-")
        self.port = self.port or free_port()
        with fleet.editing(self.fleet_file, self.school, self.gateway_id) as f:
            for room in self.rooms:
                if f.board_of(room) is None:
                    self._keep(f.add(room))
        self.write()
        return self

    def start(self) -> LockedSchool:
        self.prepare()
        self.broker = Mosquitto(port=self.port, config_file=self.files.conf,
                                workdir=os.path.join(self.directory, "log")).start()
        LockedSchool.running.append(self)
        return self

    def _keep(self, creds: Credentials) -> Credentials:
        self.creds[creds.room] = creds
        CREDENTIALS[(self.host, self.port, self.school, creds.room)] = creds
        return creds

    def fleet(self) -> Fleet:
        return fleet.load(self.fleet_file)

    def write(self) -> None:
        """Write the broker's files from the fleet, as `preau provision` does
        (plus the test observer)."""
        f = self.fleet()
        broker_files.write(self.files, f)
        if self.observer:
            if not self.observer_password:
                self.observer_password = fleet.new_password()
            with open(self.files.passwd, "a") as p:
                p.write(f"{OBSERVER}:{fleet.mosquitto_hash(self.observer_password)}\n")
            with open(self.files.acl, "a") as a:
                a.write(f"\nuser {OBSERVER}\ntopic read {ROOT}{self.school}/#\n")

    def change(self, action: str, room: str) -> Credentials | None:
        """`preau provision add|rekey|replace|revoke ROOM` and a broker reload."""
        creds = None
        with fleet.editing(self.fleet_file, self.school, self.gateway_id) as f:
            if action == "add":
                creds = f.add(room)
            elif action == "rekey":
                creds = f.rekey(room)
            elif action == "replace":
                creds = f.replace_board(room)[1]
            elif action == "revoke":
                f.revoke(room)
                self.creds.pop(room, None)
                CREDENTIALS.pop((self.host, self.port, self.school, room), None)
            else:
                raise ValueError(action)
        if creds is not None:
            self._keep(creds)
        self.write()
        self.reload()
        return creds

    def board_config(self, room: str) -> dict:
        """A board's config.json keys for `room`: where the broker is, and its identity."""
        return {"broker": self.host, "port": self.port} | self.creds[room].board_config()

    def config(self, tmp_dir: str, **extra) -> dict:
        """The gateway's configuration keys for this school."""
        return {"school": self.school, "gateway_id": self.gateway_id, "db": os.path.join(tmp_dir, "gw.sqlite"),
                "fleet": self.fleet_file, "broker": {"dir": self.files.dir, "listen": f"{self.host}:{self.port}"},
                "school_broker": {"host": self.host, "port": self.port}} | extra

    def gateway_credentials(self) -> tuple[str, str]:
        f = self.fleet()
        return f.gateway_username, f.gateway_password

    # the broker
    def reload(self) -> None:
        assert self.broker is not None
        self.broker.reload()

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self in LockedSchool.running:
            LockedSchool.running.remove(self)
        for k in [k for k in CREDENTIALS if k[:2] == (self.host, self.port)]:
            CREDENTIALS.pop(k, None)

    def kill(self) -> None:
        assert self.broker is not None
        self.broker.kill()

    def restart(self) -> None:
        assert self.broker is not None
        self.broker.restart()
