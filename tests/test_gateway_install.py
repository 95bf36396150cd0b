"""`preau gateway install` and what it installs, for real: the generated
units pass `systemd-analyze verify`, the Mosquitto they start runs on the
files `preau provision` wrote, the gateway's own command line says READY=1
and WATCHDOG=1 on a notify socket and STOPPING=1 at SIGTERM; the nightly
backup is a consistent copy while the gateway writes, and a gateway starts
again from it; pruning deletes only what the city acknowledged, is old, and
is not needed by the next start."""

from __future__ import annotations

import asyncio
import configparser
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import threading
from contextlib import closing

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devkit.brokers import Mosquitto, free_port
from devkit.testing import Board, City, school_clock, wait_for
from edge_gateway import backup, fleet, history, install, provision
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from edge_gateway.main import sd_notify, watchdog_interval

pytestmark = pytest.mark.broker

SCHOOL = "0341234a"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_UNITS = ("/lib/systemd/system", "/usr/lib/systemd/system")


@pytest.fixture
def site(tmp_path):
    """A Pi's layout under tmp_path: /etc/preau/school.toml, the state in
    /var/lib/preau, the broker's files from `preau provision init`."""
    etc, state = tmp_path / "etc" / "preau", tmp_path / "var" / "lib" / "preau"
    etc.mkdir(parents=True)
    port, http_port = free_port(), free_port()
    conf = etc / "school.toml"
    conf.write_text(f"""school = "{SCHOOL}"
gateway_id = "gw-{SCHOOL}"
db = "{state}/gateway.sqlite"
fleet = "{state}/fleet.json"

[broker]
dir = "{state}/broker"
listen = "127.0.0.1:{port}"

[school_broker]
host = "127.0.0.1"
port = {port}

[http]
bind = "127.0.0.1:{http_port}"

[history]
keep_days = 30

[policy]
zone = "C"

[rooms.cm2-b]
wifi = "allowed"
""")
    assert provision.main(["--config", str(conf), "init"]) == 0
    assert provision.main(["--config", str(conf), "add", "cm2-b", "--out", str(tmp_path / "cm2-b.json")]) == 0
    root = tmp_path / "root"
    code = install.main(["--config", str(conf), "--root", str(root),
                         "--backup-dir", str(tmp_path / "backups")])
    assert code == 0
    return {"conf": str(conf), "root": root, "units": root / "etc" / "systemd" / "system", "config": Config.load(conf),
            "tmp": tmp_path}


def unit(path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    parser.read(path)
    return parser


def test_the_units_pass_systemd_analyze_verify(site):
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd)")
    units = site["units"]
    # The drop-in is verified on the distribution's own mosquitto.service, as systemd will load it.
    base = next((os.path.join(d, "mosquitto.service") for d in SYSTEM_UNITS
                 if os.path.exists(os.path.join(d, "mosquitto.service"))), None)
    if base is None:
        pytest.skip("no mosquitto.service from the distribution to verify the drop-in on (apt-get install mosquitto)")
    shutil.copy(base, units / "mosquitto.service")
    names = ["preau-gateway.service", "preau-backup.service", "preau-backup.timer", "mosquitto.service"]
    proc = subprocess.run([verify, "verify", "--man=no", *[str(units / n) for n in names]],
                          capture_output=True, text=True, timeout=60)
    ours = [line for line in proc.stderr.splitlines() if str(site["root"]) in line or "preau" in line]
    assert proc.returncode == 0 and not ours, proc.stderr
    gateway = unit(units / "preau-gateway.service")["Service"]
    assert (gateway["Type"], gateway["WatchdogSec"], gateway["Restart"]) == ("notify", "30", "on-failure")
    assert gateway["RestartPreventExitStatus"] == "2" and "ProtectClock" not in gateway
    assert gateway["ReadWritePaths"] == os.path.dirname(site["config"].db)
    journald = unit(site["root"] / "etc" / "systemd" / "journald.conf.d" / "preau.conf")["Journal"]
    assert journald["SystemMaxUse"] == "200M"
    env = site["root"] / "etc" / "preau" / "gateway.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and "PREAU_GATEWAY_TOKEN=" in env.read_text()

    # With a DS3231 read through Blinka: the boot-time unit that sets the clock from it, before the gateway.
    with open(site["conf"], "a") as f:
        f.write('\n[clock]\nrtc = "ds3231"\n')
    root2 = site["tmp"] / "root-ds3231"
    assert install.main(["--config", site["conf"], "--root", str(root2)]) == 0
    units2 = root2 / "etc" / "systemd" / "system"
    shutil.copy(base, units2 / "mosquitto.service")
    proc = subprocess.run([verify, "verify", "--man=no", str(units2 / "preau-rtc.service"),
                           str(units2 / "preau-gateway.service")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "preau" not in proc.stderr, proc.stderr
    rtc = unit(units2 / "preau-rtc.service")
    assert rtc["Unit"]["Before"] == "preau-gateway.service" and rtc["Service"]["ExecStart"].endswith("--rtc-to-system")
    assert "PrivateDevices" not in unit(units2 / "preau-gateway.service")["Service"]  # /dev/i2c-1


def test_the_mosquitto_the_drop_in_starts_is_the_locked_school_broker(site):
    dropin = unit(site["units"] / "mosquitto.service.d" / "preau.conf")["Service"]
    assert dropin["User"] == "preau" and dropin["ExecReload"] == "/bin/kill -HUP $MAINPID"
    binary, flag, conf = shlex.split(dropin["ExecStart"])
    config = site["config"]
    assert (flag, conf) == ("-c", config.broker.conf) and os.path.exists(binary)
    broker = Mosquitto(port=config.broker.listen_port, config_file=conf,
                       workdir=str(site["tmp"] / "mosquitto-log")).start()
    gw = None
    try:
        anonymous = mqtt.Client(CallbackAPIVersion.VERSION2)
        refused = []
        anonymous.on_connect = lambda c, u, f, rc, p: refused.append(rc.is_failure)
        anonymous.connect(broker.host, broker.port)
        anonymous.loop_start()
        wait_for(lambda: refused, what="CONNACK")
        anonymous.loop_stop()
        assert refused == [True]
        # the real gateway, with its identity from the fleet, behind that broker: a board's press answered
        gw = Gateway(config, clock=school_clock(), reconnect_max_s=1).start()
        board = Board(broker.host, broker.port, SCHOOL, "cm2-b",
                      creds=fleet.Credentials(**_board_creds(site))).connect()
        assert board.cmd_for(board.request())["cmd"] == "grant"
        board.close()
    finally:
        if gw is not None:
            gw.stop()
        broker.stop()


def _board_creds(site) -> dict:
    """The board's credentials, as `preau provision add --out` wrote them for the flasher."""
    import json

    out = json.loads((site["tmp"] / "cm2-b.json").read_text())
    return {"school": out["school"], "room": out["room"], "username": out["user"], "password": out["password"],
            "key": out["key"]}


class NotifySocket:
    """systemd's side of sd_notify(3): a datagram socket, read by the test."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.path = path
        self.got: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def seen(self, line: str) -> bool:
        return any(line in m.split("\n") for m in self.got)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_sd_notify_only_when_systemd_asks(tmp_path):
    assert sd_notify("READY=1", {}) is False
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:123"}) is False
    listener = NotifySocket(str(tmp_path / "notify"))
    try:
        assert sd_notify("READY=1\nSTATUS=ok", {"NOTIFY_SOCKET": listener.path})
        wait_for(lambda: listener.seen("READY=1") and listener.seen("STATUS=ok"), what="the datagram")
    finally:
        listener.close()
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"preau-test-{os.getpid()}"
    abstract.bind("\0" + name)
    try:
        assert sd_notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert abstract.recv(100) == b"WATCHDOG=1"
    finally:
        abstract.close()
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # another process's
    assert watchdog_interval({}) is None


def test_the_units_command_line_tells_systemd_ready_watchdog_and_stopping(site):
    service = unit(site["units"] / "preau-gateway.service")["Service"]
    config = site["config"]
    broker = Mosquitto(port=config.broker.listen_port, config_file=config.broker.conf,
                       workdir=str(site["tmp"] / "mosquitto-log")).start()
    listener = NotifySocket(str(site["tmp"] / "notify"))
    env_file = site["root"] / service["EnvironmentFile"].lstrip("/")
    token = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#")
    # This checkout's code, whichever tree the virtual environment's editable install points at.
    here = {"PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(shlex.split(service["ExecStart"]), cwd=str(site["tmp"]),
                            env=os.environ | token | here | {"NOTIFY_SOCKET": listener.path,
                                                             "WATCHDOG_USEC": "1000000"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: listener.seen("READY=1") or proc.poll() is not None, timeout=60, what="READY=1")
        assert proc.poll() is None, proc.communicate()[1]
        ready = next(m for m in listener.got if "READY=1" in m)
        assert "STATUS=1 rooms; school broker up" in ready
        wait_for(lambda: listener.seen("WATCHDOG=1"), what="a watchdog ping (every 0.5 s)")
        proc.send_signal(signal.SIGTERM)  # systemctl stop
        # uvicorn re-raises the signal once the gateway has said goodbye: a clean stop for systemd
        assert proc.wait(30) == -signal.SIGTERM
        assert listener.seen("STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()
        broker.stop()


# backups ----------------------------------------------------------------------------


def test_backup_while_the_gateway_writes_is_consistent_and_the_gateway_restarts_from_it(mosquitto, tmp_path):
    config = Config.from_dict(mosquitto.config(str(tmp_path)) | {"rooms": {"cm2-b": {"wifi": "allowed"}},
                                                                 "policy": {"zone": "C"}})
    gw = Gateway(config, clock=school_clock()).start()
    board = Board(mosquitto.host, mosquitto.port, mosquitto.school, "cm2-b").connect()
    writing = threading.Event()
    stop = threading.Event()

    def press_on() -> None:
        while not stop.is_set():
            board.event("kit.fault", {"sensor": "scd4x", "error": "crc"})
            writing.set()

    writer = threading.Thread(target=press_on, daemon=True)
    writer.start()
    copies = []
    try:
        writing.wait(10)
        for i in range(3):  # while the journal commits
            wait_for(lambda n=i: gw.metrics["last_seq"] > 20 * (n + 1), what="more records")
            copies.append(backup.backup(config.db, str(tmp_path / "backups"), config.fleet_file, keep=2,
                                        now=lambda n=i: 1796300000.0 + 86400 * n))
    finally:
        stop.set()
        writer.join(10)
    wait_for(lambda: gw.metrics["journal_pending"] == 0, what="everything committed")
    gw.stop()
    board.close()
    # --keep 2: the oldest copy and its fleet file are gone
    assert sorted(os.listdir(tmp_path / "backups")) == sorted(
        os.path.basename(p) for c in copies[1:] for p in (c.database, c.fleet or ""))
    last = copies[-1]
    assert stat.S_IMODE(os.stat(last.database).st_mode) == 0o600
    assert last.fleet and stat.S_IMODE(os.stat(last.fleet).st_mode) == 0o600
    with closing(sqlite3.connect(last.database)) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM records ORDER BY seq")]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # a plain file, no WAL beside it
    assert seqs == list(range(1, last.last_seq + 1)) and last.records == last.last_seq  # one moment, no gap
    assert last.last_seq < gw.metrics["last_seq"]  # the gateway went on writing

    # Restore (docs/install.md): the gateway stopped, the copy in place, the old WAL gone.
    shutil.copyfile(last.database, config.db)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(config.db + suffix):
            os.unlink(config.db + suffix)
    gw = Gateway(config, clock=school_clock()).start()
    try:
        assert gw.metrics["last_seq"] == last.last_seq
        board = Board(mosquitto.host, mosquitto.port, mosquitto.school, "cm2-b", boot=2).connect()
        wait_for(lambda: gw.metrics["last_seq"] == last.last_seq + 1, what="the next seq after the copy's")
        board.close()
    finally:
        gw.stop()


def test_backup_command_line(mosquitto, tmp_path, capsys):
    config_file = tmp_path / "school.toml"
    config_file.write_text(f"""school = "{mosquitto.school}"
gateway_id = "{mosquitto.gateway_id}"
db = "gw.sqlite"
fleet = "{mosquitto.fleet_file}"
[broker]
dir = "{mosquitto.files.dir}"
[school_broker]
host = "{mosquitto.host}"
port = {mosquitto.port}
[policy]
zone = "C"
[rooms.cm2-b]
""")
    assert backup.main(["--config", str(config_file), "--dir", str(tmp_path / "b")]) == 1
    assert "no such database" in capsys.readouterr().err
    gw = Gateway(Config.load(config_file), clock=school_clock()).start()
    gw.stop()
    assert backup.main(["--config", str(config_file), "--dir", str(tmp_path / "b")]) == 0
    assert "0 records, last seq 0, schema %d" % len(history.STEPS) in capsys.readouterr().out


# pruning ----------------------------------------------------------------------------


def test_pruning_spares_the_outbox_the_recent_history_and_what_the_next_start_reads(
        mosquitto, city_broker, tmp_path, monkeypatch):
    monkeypatch.setattr(history, "DEDUP_WINDOW", 4)  # the last 4 events and decisions: what a start reads
    config = Config.from_dict(mosquitto.config(str(tmp_path)) | {
        "rooms": {"cm2-b": {"wifi": "allowed"}}, "policy": {"zone": "C"},
        "city_broker": {"host": city_broker.host, "port": city_broker.port}, "history": {"keep_days": 30}})
    school_now = school_clock()
    later = [0.0]

    def clock() -> float:
        return school_now() + later[0]

    city = City(city_broker.host, city_broker.port, SCHOOL).connect()
    gw = Gateway(config, clock=clock, reconnect_max_s=1).start()
    board = Board(mosquitto.host, mosquitto.port, mosquitto.school, "cm2-b").connect()
    try:
        reqs = [board.request() for _ in range(6)]
        for req in reqs:
            board.cmd_for(req)
        wait_for(lambda: gw.metrics["last_seq"] == 13 and gw.outbox_size() == 0, what="all acked by the city")
        assert asyncio.run(gw.prune()) == 0  # nothing is 30 days old
        city.ack = False
        board.event("kit.fault", {"sensor": "scd4x", "error": "crc"})  # not acknowledged: the outbox
        wait_for(lambda: gw.outbox_size() == 1, what="one record in the outbox")

        later[0] = 31 * 86400.0
        pruned = asyncio.run(gw.prune())
        kept = {r.seq: r for r in history.records_of(config.db)}
        # birth 1, then (request, decision) x 6 = 2..13, the unacked event 14. The start reads
        # the last 4 events (seq 8, 10, 12, 14) and decisions (7, 9, 11, 13): everything from 7 on stays.
        assert sorted(kept) == list(range(7, 15)) and pruned == 6
        assert gw.metrics["records_pruned"] == 6 and gw.outbox_size() == 1
    finally:
        board.close()
        gw.stop()
    # What a start relies on: the seqs go on from 14 (sqlite_sequence, not the rows), the ack
    # and the outbox are kept, a request answered before is not answered again.
    gw = Gateway(config, clock=clock, reconnect_max_s=1).start()
    board = Board(mosquitto.host, mosquitto.port, mosquitto.school, "cm2-b").connect()
    try:
        assert gw.metrics["last_seq"] == 14 and gw.outbox_size() == 1
        board.event("lesson.requested", {"req": reqs[-1]}, seq=reqs[-1])  # the last request, again (QoS 1)
        board.event("kit.fault", {"sensor": "scd4x", "error": "i2c"}, seq=20)
        wait_for(lambda: gw.metrics["last_seq"] == 15, what="the new event stored as seq 15")
        wait_for(lambda: gw.metrics["duplicates"] >= 1, what="the repeat recognised")
        assert [c for c in board.cmds if c.get("req") == reqs[-1]] == []  # not answered twice
    finally:
        board.close()
        gw.stop()
        city.close()


def test_install_refuses_what_cannot_be_installed(tmp_path, capsys):
    config_file = tmp_path / "school.toml"
    config_file.write_text(f"""school = "{SCHOOL}"
gateway_id = "gw-x"
db = ":memory:"
[school_broker]
host = "127.0.0.1"
[policy]
zone = "C"
[rooms.cm2-b]
""")
    assert install.main(["--config", str(config_file), "--root", str(tmp_path / "root")]) == 1
    assert "db: a file is needed" in capsys.readouterr().err
    assert install.main(["--config", str(tmp_path / "nope.toml"), "--root", str(tmp_path / "root")]) == 2
    assert not (tmp_path / "root").exists()
