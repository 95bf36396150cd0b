"""`preau demo`: a simulated school, locked down as in production.

Two Mosquitto brokers on loopback, from the files Préau generates (the
school's: a board identity per room, ACLs, no anonymous client; the city's:
TLS with client certificates from a fresh city CA),
three classrooms running the real firmware on simulated boards (cp-a drives
an Epson projector over a simulated RS-232 line; ce2-b has the shared CO2
kit plugged in, in a stuffy room), the school gateway, the city service, and
a scripted teacher pressing buttons. It
narrates what happens, serves the gateway and city APIs on loopback, and at
the end checks that the city database holds the whole story."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_bridge.errors import CityError
from cloud_bridge.service import CityService
from cloud_bridge.web.accounts import default_path as city_accounts_path
from common.mqtt import tcp_nodelay
from common.web.accounts import first_password_path, new_password
from devkit.citybroker import LockedCity
from devkit.http import HttpThread
from devkit.school import OBSERVER, LockedSchool
from devkit.sim.classroom import SimClassroom
from devkit.sim.i2c import SCD4xModel, SimI2C, SimKit
from devkit.sim.projector import EpsonSim
from devkit.testing import school_clock
from edge_gateway.accounts import AccountStore, default_path
from edge_gateway.api import ApiSettings, create_app
from edge_gateway.config import Config
from edge_gateway.fleet import write_private
from edge_gateway.gateway import Gateway
from hardware.projectors import describe_fault

SCHOOL = "0341234a"
ROOMS = {
    # room: (wifi, sessions) -- one of each kind a director meets
    "cp-a": ("allowed", True),
    "ce2-b": ("never", True),
    "cm1-c": ("allowed", False),
}
# The demo's clock: a Tuesday in term time, 35 s before lunch (class time ends
# at 11:45 in the default week), so the demo shows sessions ending with the
# period and a request refused at lunch, whatever the real date and hour.
DEMO_TIME = "2026-11-24T11:44:25+01:00"
PROJECTORS = {"cp-a": "epson-escvp21"}  # room: projector table
log = logging.getLogger("preau.demo")


class Narrator:
    """Listens on the school broker and tells the story in plain words."""

    def __init__(self, port: int, t0: float, out, password: str) -> None:
        self.t0 = t0
        self.out = out
        self.client = tcp_nodelay(mqtt.Client(CallbackAPIVersion.VERSION2, client_id="preau-demo-narrator"))
        self.client.username_pw_set(OBSERVER, password)  # the demo's read-only identity (devkit/school.py)

        def on_connect(client: mqtt.Client, *_: object) -> None:
            client.subscribe(f"preau/v1/{SCHOOL}/+/evt", 1)

        self.client.on_connect = on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def say(self, room: str, text: str) -> None:
        self.out(f"[{time.monotonic() - self.t0:6.1f}s] {room:6} {text}")

    def _on_message(self, client, userdata, msg) -> None:
        room = msg.topic.split("/")[3]
        try:
            evt = json.loads(msg.payload)
            kind, data = evt["type"], evt["data"]
        except (ValueError, KeyError, TypeError):
            return
        text = {
            "boot": lambda d: "board booted, access point off",
            "button": lambda d: f"teacher {d['press']} press",
            "lesson.requested": lambda d: "asks the gateway for a session",
            "session.started": lambda d: (f"session started for {d['duration_s']} s "
                                          f"({'with' if d['ap'] else 'without'} Wi-Fi, {d['source']})"),
            "session.denied": lambda d: f"session denied: {d['reason']}",
            "session.ended": lambda d: f"session ended ({d['reason']}) after {d['ran_s']} s",
            "ap.changed": lambda d: f"access point {'ON' if d['on'] else 'OFF'} ({d['reason']})",
            "projector.changed": lambda d: f"projector {d['state']}" + (f" (lamp {d['lamp_h']} h)" if "lamp_h" in d else ""),
            "projector.fault": lambda d: f"projector fault: {describe_fault(PROJECTORS.get(room, ''), d['error'])}",
            "kit.attached": lambda d: f"kit {d['kit']} plugged in ({', '.join(d['sensors'])})",
            "kit.detached": lambda d: f"kit {d['kit']} unplugged",
            "air.alert": lambda d: f"CO2 {d['co2']} ppm: " + ("air the room (LED hint on)" if d["on"] else "air is fine again"),
        }.get(kind)
        if text:
            self.say(room, text(data))

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def teacher(boards: dict[str, SimClassroom], say, stop: asyncio.Event) -> None:
    """The scripted morning: (seconds from start, room, press length)."""
    script = [(2, "cp-a", 0.2), (4, "ce2-b", 0.2), (6, "cm1-c", 0.2), (12, "cp-a", 2.4), (40, "cp-a", 0.2)]
    t0 = time.monotonic()
    for at, room, hold in script:
        delay = at - (time.monotonic() - t0)
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, delay))
            return
        except TimeoutError:
            pass
        say(room, f"finger on the button for {hold:.1f} s")
        await boards[room].press(hold)


def status_table(gateway: Gateway, city: CityService, boards: dict[str, SimClassroom]) -> str:
    rooms = gateway.rooms()
    lines = ["  room    online  session     AP relay  LED       wifi     | city: %d records, outbox %d"
             % (city.store.record_count(SCHOOL) if city.store else 0, gateway.outbox_size())]
    for room, sim in boards.items():
        r = rooms.get(room, {})
        lines.append(f"  {room:7} {str(r.get('online')):7} {sim.app.session.state:11} "
                     f"{'ON ' if sim.relay else 'off':9} {sim.led_mode:9} {r.get('wifi', '?'):8}")
    return "\n".join(lines)


def check_city(city: CityService) -> list[tuple[bool, str]]:
    assert city.store is not None, "the city is running"
    records = city.store.records(school=SCHOOL, limit=1000)
    evts = [(r["room"], r["body"]) for r in records if r["kind"] == "evt"]

    def has(room: str, kind: str, **data) -> bool:
        return any(rm == room and b.get("type") == kind and all(b.get("data", {}).get(k) == v for k, v in data.items())
                   for rm, b in evts)

    return [
        (has("cp-a", "session.started", ap=True), "cp-a: session started with the access point"),
        (has("cp-a", "ap.changed", on=True), "cp-a: access point turned on"),
        (has("cp-a", "session.ended", reason="teacher"), "cp-a: session ended by the teacher"),
        (has("cp-a", "ap.changed", on=False), "cp-a: access point turned off"),
        (has("ce2-b", "session.started", ap=False), "ce2-b: session without Wi-Fi (room is 'Wi-Fi never')"),
        (has("cm1-c", "session.denied", reason="room_disabled"), "cm1-c: request denied with its reason"),
        (has("ce2-b", "session.ended", reason="time"), "ce2-b: session ended with the class period (11:45)"),
        (has("cp-a", "session.denied", reason="period_no_sessions"), "cp-a: request at lunch time denied"),
        (has("cp-a", "projector.changed", state="on") or has("cp-a", "projector.changed", state="warming"),
         "cp-a: projector switched on for the session (RS-232)"),
        (has("ce2-b", "kit.attached", kit="air-co2-01"), "ce2-b: the shared CO2 kit is known to be there"),
        (has("ce2-b", "air.alert", on=True), "ce2-b: CO2 above 1000 ppm reported (air the room)"),
    ]


async def run_demo(duration: float, gateway_port: int, city_port: int, keep: bool, out=print) -> int:
    workdir = tempfile.mkdtemp(prefix="preau-demo-")
    # The school broker as `preau provision` writes it; the city broker with a fresh city CA.
    school = await asyncio.to_thread(LockedSchool(school=SCHOOL, gateway_id=f"gw-{SCHOOL}", rooms=tuple(ROOMS),
                                                  directory=os.path.join(workdir, "school")).start)
    city_broker = await asyncio.to_thread(LockedCity.start, os.path.join(workdir, "city"),
                                          {SCHOOL: f"gw-{SCHOOL}"})
    school_port = school.port
    gw_token = secrets.token_urlsafe(24)
    city_settings = city_broker.worker_settings("1", db_path=os.path.join(workdir, "city.sqlite3"),
                                                http_port=city_port, client_id="preau-city-demo")
    city_token = city_settings.token
    try:
        city = await asyncio.to_thread(CityService(city_settings).start)
    except CityError:  # the port is taken: any free one will do for a demo
        city_settings.http_port = 0
        city = await asyncio.to_thread(CityService(city_settings).start)
    config = Config.from_dict(school.config(workdir) | {
        "db": os.path.join(workdir, "gateway.sqlite3"),
        "city_broker": city_broker.gateway_config(SCHOOL),
        # The school's real rules (zone C, the default 4-day week); a session
        # asked a minute before lunch lasts until lunch, then lunch is refused.
        "policy": {"zone": "C", "commune": "Montpellier", "min_session_s": 10, "grace_s": 3},
        "rooms": {room: {"wifi": wifi, "sessions": sessions} for room, (wifi, sessions) in ROOMS.items()},
    }, source="demo")
    gateway = await asyncio.to_thread(Gateway(config, resend_after_s=3, clock=school_clock(DEMO_TIME)).start)
    # The pages' first account, as a school's first start makes it; its
    # password in a 0600 file, never on the screen of a shared machine.
    accounts = AccountStore(default_path(config.db))
    pages_login = os.path.join(workdir, "pages-login.txt")
    pages_password = new_password()
    await asyncio.to_thread(accounts.add, "direction", "director", pages_password)
    write_private(pages_login, f"login: direction\npassword: {pages_password}\n")
    gw_http = HttpThread(create_app(gateway, ApiSettings(token=gw_token)), "127.0.0.1", gateway_port,
                         any_port_if_taken=True, name="gateway-http")
    gw_port = gw_http.port
    t0 = time.monotonic()
    narrator = await asyncio.to_thread(Narrator, school_port, t0, out, school.observer_password)
    # cp-a's projector warms up in 3 s instead of 30; ce2-b's kit reads 1450 ppm.
    projector = EpsonSim(speed=10)
    kit_bus = SimI2C()
    kit = kit_bus.attach(SimKit("air-co2-01"))
    next(d for d in kit.devices if isinstance(d, SCD4xModel)).co2 = 1450
    extra = {"cp-a": ({"projector": PROJECTORS["cp-a"]}, {"projector": projector}),
             "ce2-b": ({}, {"kit_bus": kit_bus})}
    boards = {
        room: SimClassroom(school.board_config(room) | {"wifi_never": wifi == "never", "tele_s": 10}
                           | extra.get(room, ({}, {}))[0],
                           storage=os.path.join(workdir, "board-" + room), **extra.get(room, ({}, {}))[1])
        for room, (wifi, _) in ROOMS.items()
    }
    out(f"Préau demo: school {SCHOOL}, {len(boards)} simulated classrooms running the real firmware")
    # The demo's credentials, in files (mode 0600): never on a command line.
    watcher = os.path.join(workdir, "school", "observer.json")
    write_private(watcher, json.dumps({"username": OBSERVER, "password": school.observer_password}) + "\n")
    out(f"  school broker          mqtt://127.0.0.1:{school_port} (Mosquitto, no anonymous client: "
        f"{school.files.conf})")
    out(f"    board identities     {school.fleet_file} (a board per room)")
    out(f"    read-only identity   {watcher} (subscribe to preau/v1/# with it to watch)")
    out(f"  city broker            mqtts://127.0.0.1:{city_broker.port} (Mosquitto, client certificates: "
        f"{city_broker.ca.dir})")
    out(f"  school's pages         http://127.0.0.1:{gw_port}/ (log-in: {pages_login})")
    out(f"  gateway API            curl -H 'Authorization: Bearer {gw_token}' http://127.0.0.1:{gw_port}/api/rooms")
    city_login = first_password_path(city_accounts_path(city_settings.db_path))  # the city's first start wrote it (0600)
    out(f"  city's pages           {city.url}/ (log-in: {city_login})")
    out(f"  city API               curl -H 'Authorization: Bearer {city_token}' {city.url}/api/status")
    out(f"  data                   {workdir}")
    out(f"  school clock           {DEMO_TIME} (Tuesday, Europe/Paris), running at real speed")
    out(f"  running for {duration:.0f} s (Ctrl-C ends it cleanly)\n")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    ok = False
    try:
        for sim in boards.values():
            sim.start()
        script = asyncio.create_task(teacher(boards, narrator.say, stop))
        end = t0 + duration
        next_table = t0 + 2
        last_table = ""
        while not stop.is_set() and time.monotonic() < end:
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except TimeoutError:
                pass
            if time.monotonic() >= next_table:
                table = status_table(gateway, city, boards)
                if table.split("\n", 1)[1] != last_table:  # only when a room changed
                    out(table)
                    last_table = table.split("\n", 1)[1]
                next_table += 2
        interrupted = stop.is_set()
        script.cancel()
        out(("\ninterrupted" if interrupted else "\nending") + ": boards shut down cleanly (access points off), gateway drains its outbox to the city")
        for sim in boards.values():
            await sim.stop()
        deadline = time.monotonic() + 15
        while gateway.outbox_size() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        out(status_table(gateway, city, boards))
        out("\nwhat reached the city database:")
        results = check_city(city)
        for good, text in results:
            out(f"  [{'ok' if good else 'MISSING'}] {text}")
        relays_off = all(not sim.relay for sim in boards.values())
        out(f"  [{'ok' if relays_off else 'FAIL'}] every access point is off at the end")
        ok = all(good for good, _ in results) and relays_off
        if not ok and (interrupted or duration < 42):
            # Cut short on purpose: only the access points must be off.
            out("  (the script needs about 42 s: run with --duration 45 or more to see it all)")
            ok = relays_off
    finally:
        await asyncio.to_thread(narrator.stop)
        projector.close()
        await asyncio.to_thread(gw_http.stop)
        await asyncio.to_thread(gateway.stop)
        await asyncio.to_thread(city.stop)
        await asyncio.to_thread(school.stop)
        await asyncio.to_thread(city_broker.stop)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="preau demo", description=__doc__)
    parser.add_argument("--duration", type=float, default=45.0, metavar="SECONDS",
                        help="how long the demo runs (default 45; the script needs about 42)")
    parser.add_argument("--gateway-port", type=int, default=8080, help="gateway API port (a free one if taken)")
    parser.add_argument("--city-port", type=int, default=8081, help="city API port (a free one if taken)")
    parser.add_argument("--keep", action="store_true", help="keep the databases after the demo")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error("--duration must be positive")
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("uvicorn",):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    return asyncio.run(run_demo(args.duration, args.gateway_port, args.city_port, args.keep,
                                out=lambda s: print(s, flush=True)))


if __name__ == "__main__":
    sys.exit(main())
