"""The school broker as `preau provision` generates it, attacked with plain
MQTT clients as a pupil's laptop on the school LAN would: real Mosquitto,
real files, real gateway (docs/security.md)."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devkit.brokers import Mosquitto, free_port
from devkit.school import LockedSchool
from devkit.testing import Board, school_clock, wait_for
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from protocol import mac
from tests.helpers import Peer

pytestmark = pytest.mark.broker

SCHOOL = "0341234a"
ROOT = f"preau/v1/{SCHOOL}"


class Client:
    """A plain MQTT 5 client: it sees the broker's reason codes (a refused
    CONNECT, a PUBACK 'not authorised', a SUBACK per filter)."""

    def __init__(self, school: LockedSchool, username: str | None = None, password: str | None = None,
                 client_id: str = "", clean: bool = True) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.got: list[tuple[str, bytes]] = []
        self.connack: str | None = None
        self.disconnected = threading.Event()
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.client.on_connect = lambda c, u, f, rc, p: setattr(self, "connack", str(rc))
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc.value)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.__setitem__(mid, [r.value for r in rcs])
        props = None
        if not clean:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect(school.host, school.port, keepalive=30, clean_start=clean, properties=props)
        self.client.loop_start()
        wait_for(lambda: self.connack is not None, what="CONNACK")

    @property
    def ok(self) -> bool:
        return self.connack == "Success"

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """The broker's PUBACK reason code: below 128 accepted (0, or 16 when
        no one subscribes), 135 not authorised."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return wait_for(lambda: self.pubacks.get(info.mid) is not None and [self.pubacks[info.mid]],
                        what="PUBACK")[0]

    def subscribe(self, topic: str) -> list[int]:
        _, mid = self.client.subscribe(topic, qos=1)
        return wait_for(lambda: self.subacks.get(mid), what="SUBACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def school(tmp_path):
    s = LockedSchool(school=SCHOOL, rooms=("cm2-b", "cp-a"), directory=str(tmp_path / "school")).start()
    yield s
    s.stop()


def as_board(school: LockedSchool, room: str) -> Client:
    creds = school.creds[room]
    return Client(school, creds.username, creds.password)


def as_gateway(school: LockedSchool) -> Client:
    return Client(school, *school.gateway_credentials())


def test_anonymous_and_wrong_passwords_are_refused(school):
    assert Client(school).connack == "Not authorized"
    creds = school.creds["cm2-b"]
    assert Client(school, creds.username, creds.password + "x").connack == "Not authorized"
    assert Client(school, "cm2-b", creds.password).connack == "Not authorized"  # the room is not a username
    assert Client(school, school.gateway_credentials()[0], creds.password).connack == "Not authorized"
    assert as_board(school, "cm2-b").ok


def test_a_board_publishes_only_its_own_rooms_board_topics(school):
    observer = Peer(school.host, school.port, f"{ROOT}/#")
    a = as_board(school, "cm2-b")
    for leaf in ("state", "evt", "tele", "ack"):
        assert a.publish(f"{ROOT}/cp-a/{leaf}", b'{"v": 1}') == 135, f"as another room: {leaf}"
    for leaf in ("cmd", "policy"):  # only the gateway gives orders and policies
        assert a.publish(f"{ROOT}/cm2-b/{leaf}", b'{"v": 1}') == 135, leaf
        assert a.publish(f"{ROOT}/cp-a/{leaf}", b'{"v": 1}', retain=True) == 135, leaf
    assert a.publish(f"{ROOT}/gateway/state", b'{"v": 1, "online": true}', retain=True) == 135
    assert a.publish("preau/v1/0999999z/cm2-b/evt", b'{"v": 1}') == 135  # another school
    assert a.publish(f"{ROOT}/cm2-b/evt", b'{"marker": 1}') < 128
    wait_for(lambda: any(t == f"{ROOT}/cm2-b/evt" for t, _, _ in observer.messages), what="the board's own event")
    # Mosquitto forwards one client's messages in order: nothing refused came through before it.
    assert [t for t, _, _ in observer.messages] == [f"{ROOT}/cm2-b/evt"]
    observer.close()


def test_a_board_reads_only_its_own_commands_and_policy(school):
    a = as_board(school, "cm2-b")
    a.subscribe(f"{ROOT}/cp-a/cmd")
    a.subscribe(f"{ROOT}/#")  # granted by the broker, filtered at delivery
    a.subscribe(f"{ROOT}/cm2-b/cmd")
    gw = as_gateway(school)
    assert gw.publish(f"{ROOT}/cp-a/cmd", b'{"cmd": "grant", "to": "cp-a"}') < 128
    assert gw.publish(f"{ROOT}/cp-a/policy", b'{"to": "cp-a"}', retain=True) < 128
    assert gw.publish(f"{ROOT}/cm2-b/cmd", b'{"cmd": "grant", "to": "cm2-b"}') < 128
    wait_for(lambda: any(t.endswith("/cm2-b/cmd") for t, _ in a.got), what="its own command")
    assert all("/cm2-b/" in t for t, _ in a.got), a.got


def test_the_gateway_identity_gives_orders_and_reads_every_room(school):
    gw = as_gateway(school)
    gw.subscribe(f"{ROOT}/+/evt")
    b = as_board(school, "cp-a")
    assert b.publish(f"{ROOT}/cp-a/evt", b'{"x": 1}') < 128
    wait_for(lambda: gw.got, what="the room's event at the gateway")
    assert gw.publish(f"{ROOT}/cp-a/policy", b"{}", retain=True) < 128


def test_a_borrowed_client_id_does_not_take_over_a_boards_session(school):
    """Every client's id is its username: a board id borrowed by another
    identity names another session, and cannot kick the board off."""
    creds_a, creds_b = school.creds["cm2-b"], school.creds["cp-a"]
    a = Client(school, creds_a.username, creds_a.password, client_id="board-cm2-b")  # a guessable id
    other = Client(school, creds_b.username, creds_b.password, client_id="board-cm2-b")
    assert other.ok
    assert not a.disconnected.wait(1.0)  # a bounded look for a kick that must not come
    assert a.publish(f"{ROOT}/cm2-b/evt", b"{}") < 128


def test_revoke_disconnects_the_board_now_and_refuses_it_after(school):
    a = as_board(school, "cm2-b")
    other = as_board(school, "cp-a")
    old = school.creds["cm2-b"]
    school.change("revoke", "cm2-b")
    assert a.disconnected.wait(10), "the revoked board is dropped at the reload"
    assert Client(school, old.username, old.password).connack == "Not authorized"
    # A reload keeps every other board connected.
    assert not other.disconnected.is_set()
    assert other.publish(f"{ROOT}/cp-a/evt", b"{}") < 128


def test_rekey_and_replace_refuse_the_old_credentials(school):
    old = school.creds["cm2-b"]
    new = school.change("rekey", "cm2-b")
    assert new is not None and new.username == old.username and new.key != old.key
    assert Client(school, old.username, old.password).connack == "Not authorized"
    assert Client(school, new.username, new.password).ok
    replaced = school.change("replace", "cm2-b")
    assert replaced is not None and replaced.username != old.username
    assert Client(school, new.username, new.password).connack == "Not authorized"
    fresh = Client(school, replaced.username, replaced.password)
    assert fresh.ok and fresh.publish(f"{ROOT}/cm2-b/evt", b"{}") < 128
    listed = school.fleet()
    assert [b.state for b in listed.boards if b.room == "cm2-b"] == ["revoked", "active"]


def test_a_reload_keeps_the_boards_connected_and_their_sessions(school):
    a = as_board(school, "cm2-b")
    gw = as_gateway(school)
    gw.subscribe(f"{ROOT}/+/evt")
    for _ in range(3):
        school.reload()
        assert a.publish(f"{ROOT}/cm2-b/evt", b"{}") < 128
    wait_for(lambda: len(gw.got) == 3, what="every event through the reloads")
    assert not a.disconnected.is_set() and not gw.disconnected.is_set()


def test_the_broker_listens_only_where_it_is_told(school):
    """No listener beyond the configured one (a listener option before the
    `listener` line would open Mosquitto's default one on 0.0.0.0:1883)."""
    import subprocess

    assert school.broker is not None and school.broker.proc is not None
    pid = school.broker.proc.pid
    lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    ours = sorted(line.split()[3] for line in lines if f"pid={pid}," in line)
    assert ours == [f"127.0.0.1:{school.port}"]


def test_files_holding_secrets_are_private(school):
    for path in (school.fleet_file, school.files.passwd, school.files.acl, school.files.conf):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    texts = {p: pathlib.Path(p).read_text() for p in (school.files.passwd, school.files.conf, school.files.acl)}
    for creds in school.creds.values():
        assert all(creds.password not in t and creds.key not in t for t in texts.values())
    assert "allow_anonymous false" in texts[school.files.conf]


# --- queues and persistence: a default Mosquitto drops a QoS 1 burst -----------------

BURST = 1500  # beyond Mosquitto's default max_queued_messages of 1000


def _burst_into_an_absent_gateway(school_like, publisher_creds, subscriber_creds, restart) -> int:
    """A gateway's persistent session subscribes, goes away; a board sends a
    burst of QoS 1 events; the broker restarts (or not); the gateway comes back.
    How many events it receives."""
    topic = f"{ROOT}/cm2-b/evt"
    sub = Client(school_like, *subscriber_creds, client_id="gateway-session", clean=False)
    assert sub.ok
    sub.subscribe(f"{ROOT}/+/evt")
    sub.close()
    pub = Client(school_like, *publisher_creds)
    for i in range(BURST):
        pub.client.publish(topic, json.dumps({"n": i}).encode(), qos=1)
    wait_for(lambda: len(pub.pubacks) == BURST, timeout=60, what="the burst acknowledged by the broker")
    pub.close()
    if restart:
        school_like.restart()
    back = Client(school_like, *subscriber_creds, client_id="gateway-session", clean=False)
    # Settled when nothing more arrives for a while after the count stops growing.
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 1.5:
        n = len(back.got)
        if n != last:
            last, since = n, time.monotonic()
        if n >= BURST:
            break
        time.sleep(0.05)
    back.close()
    return len({p for _, p in back.got})


class _Default:
    """Mosquitto as installed: only a listener; every other setting its default."""

    def __init__(self, tmp_path) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        conf = tmp_path / "default.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.broker = Mosquitto(port=self.port, config_file=str(conf)).start()

    def restart(self) -> None:
        self.broker.restart()

    def stop(self) -> None:
        self.broker.stop()


def test_a_default_mosquitto_loses_a_burst_and_the_generated_one_keeps_it(school, tmp_path):
    default = _Default(tmp_path)
    try:
        lost_in_queue = _burst_into_an_absent_gateway(default, (None, None), (None, None), restart=False)
        lost_in_restart = _burst_into_an_absent_gateway(default, (None, None), (None, None), restart=True)
    finally:
        default.stop()
    assert lost_in_queue < BURST  # max_queued_messages 1000: the rest dropped
    assert lost_in_restart == 0  # no persistence: the session and its queue are gone
    creds = school.creds["cm2-b"]
    gw = school.gateway_credentials()
    # the gateway's username is its client id on this broker (use_username_as_clientid)
    assert _burst_into_an_absent_gateway(school, (creds.username, creds.password), gw, restart=False) == BURST
    assert _burst_into_an_absent_gateway(school, (creds.username, creds.password), gw, restart=True) == BURST


# --- the gateway's own check: a room is bound to its board's key ---------------------

def test_the_gateway_refuses_a_room_message_not_signed_by_that_rooms_board(tmp_path):
    """Behind a misconfigured (open) broker, a board's identity still binds
    its room: signed with another room's key, or unsigned, it is refused and
    counted; the real board is still answered."""
    school = LockedSchool(school=SCHOOL, rooms=("cm2-b", "cp-a"), directory=str(tmp_path / "school"))
    school.start()
    school.stop()  # its fleet only: the broker below is open
    open_broker = Mosquitto().start()
    try:
        config = Config.from_dict(school.config(str(tmp_path)) | {
            "school_broker": {"host": open_broker.host, "port": open_broker.port},
            "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {"wifi": "allowed"}}, "policy": {"zone": "C"}})
        gw = Gateway(config, clock=school_clock(), reconnect_max_s=1).start()
        try:
            forger = Board(open_broker.host, open_broker.port, SCHOOL, "cm2-b", boot=9,
                           creds=school.creds["cp-a"]).connect(birth=False)  # cp-a's key, cm2-b's topic
            forger.request()
            anonymous = Board(open_broker.host, open_broker.port, SCHOOL, "cm2-b", boot=9, anonymous=True)
            anonymous.connect(birth=False)
            anonymous.request()
            wait_for(lambda: gw.metrics["rejected"].get("bad_mac") == 2, what="both refused")
            assert not forger.cmds and not anonymous.cmds
            real = Board(open_broker.host, open_broker.port, SCHOOL, "cm2-b", boot=1,
                         creds=school.creds["cm2-b"]).connect()
            assert real.cmd_for(real.request())["cmd"] == "grant"
            assert gw.registry.row("cm2-b")["boot"] == 1
            for b in (forger, anonymous, real):
                b.close()
        finally:
            gw.stop()
    finally:
        open_broker.stop()


def test_the_running_gateway_follows_provisioning(mosquitto, tmp_path, caplog):
    """`preau provision replace` while the gateway runs: the new board is
    answered, the old key is refused, without a gateway restart; no secret
    reaches the log, even at DEBUG."""
    import logging

    caplog.set_level(logging.DEBUG)
    config = Config.from_dict(mosquitto.config(str(tmp_path)) | {
        "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {"wifi": "allowed"}}, "policy": {"zone": "C"}})
    gw = Gateway(config, clock=school_clock(), reconnect_max_s=1, tick_s=0.05).start()
    try:
        old = mosquitto.creds["cm2-b"]
        new = mosquitto.change("replace", "cm2-b")
        assert new is not None
        wait_for(lambda: gw.intake.keys.get("cm2-b") == bytes.fromhex(new.key), what="the new key in force")
        board = Board(mosquitto.host, mosquitto.port, SCHOOL, "cm2-b", boot=1).connect()
        assert board.cmd_for(board.request())["cmd"] == "grant"
        # a copy of the old board's config.json: its key no longer signs for the room
        body = b'{"v": 1, "boot": 1, "seq": 50, "uptime_ms": 1, "time": null, "type": "button", "data": {"press": "short"}}'
        msg = mqtt.MQTTMessage(topic=f"{ROOT}/cm2-b/evt".encode())
        msg.payload = mac.sign(bytes.fromhex(old.key), f"{ROOT}/cm2-b/evt", body)
        assert gw._loop is not None
        gw._loop.call_soon_threadsafe(gw._on_board, msg)
        wait_for(lambda: gw.metrics["rejected"].get("bad_mac") == 1, what="the old key refused")
        board.close()
    finally:
        gw.stop()
    secrets = [old.password, old.key, new.password, new.key, mosquitto.gateway_credentials()[1]]
    assert not [s for s in secrets if s in caplog.text]
    assert not [s for s in secrets if s in repr(mosquitto.fleet()) + repr(gw.school_broker) + repr(new)]


# --- `preau provision`, as a technician runs it ---------------------------------------

def _school_toml(tmp_path, port: int) -> str:
    path = tmp_path / "school.toml"
    path.write_text(f"""
school = "{SCHOOL}"
gateway_id = "gw-1"
db = "state/gateway.sqlite"

[broker]
listen = "127.0.0.1:{port}"

[school_broker]
host = "127.0.0.1"
port = {port}

[policy]
zone = "C"

[rooms.cm2-b]
wifi = "allowed"

[rooms.cp-a]
""")
    return str(path)


def test_provision_from_the_command_line(tmp_path, capsys):
    from edge_gateway.provision import main as provision

    port = free_port()
    conf = _school_toml(tmp_path, port)
    assert provision(["--config", conf, "init"]) == 0
    files = tmp_path / "state" / "broker"
    assert "the files take effect when Mosquitto starts" in capsys.readouterr().out
    broker = Mosquitto(port=port, config_file=str(files / "mosquitto.conf")).start()
    try:
        assert provision(["--config", conf, "add", "cm2-b", "--out", str(tmp_path / "cm2-b.json"),
                          "--broker-host", "10.0.0.2"]) == 0
        out = capsys.readouterr().out
        assert "broker reloaded (SIGHUP" in out
        board = json.loads((tmp_path / "cm2-b.json").read_text())
        assert stat.S_IMODE(os.stat(tmp_path / "cm2-b.json").st_mode) == 0o600
        assert board["broker"] == "10.0.0.2" and board["port"] == port and len(board["key"]) == 64
        assert board["password"] not in out  # written to the file, not shown
        holder = type("S", (), {"host": "127.0.0.1", "port": port})()
        assert Client(holder, board["user"], board["password"]).ok
        # the list shows no secret
        assert provision(["--config", conf, "list"]) == 0
        listed = capsys.readouterr().out
        assert board["user"] in listed and "active" in listed
        assert board["password"] not in listed and board["key"] not in listed
        # wrong inputs: one clear line, exit 2, nothing changed
        assert provision(["--config", conf, "add", "cm2-b"]) == 2
        assert "already has a board" in capsys.readouterr().err
        assert provision(["--config", conf, "add", "cm9-z"]) == 2
        assert "not in school.toml" in capsys.readouterr().err
        assert provision(["--config", conf, "revoke", "cp-a"]) == 2
        assert "no active board for 'cp-a'" in capsys.readouterr().err
        # revoked from the command line: refused at once
        assert provision(["--config", conf, "revoke", board["user"]]) == 0
        assert "revoked" in capsys.readouterr().out
        assert Client(holder, board["user"], board["password"]).connack == "Not authorized"
    finally:
        broker.stop()
    fleet_file = tmp_path / "state" / "fleet.json"
    fleet_file.write_text("{ not json")
    assert provision(["--config", conf, "list"]) == 2
    assert "fleet.json: not valid JSON" in capsys.readouterr().err


def test_rekey_gateway_while_it_runs(mosquitto, tmp_path):
    """The gateway's own password changes under it: the broker drops it at
    the reload, it comes back with the new one, and boards are answered."""
    from edge_gateway import fleet as fleet_mod

    config = Config.from_dict(mosquitto.config(str(tmp_path)) | {
        "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {"wifi": "allowed"}}, "policy": {"zone": "C"}})
    gw = Gateway(config, clock=school_clock(), reconnect_max_s=1, tick_s=0.05).start()
    try:
        assert gw.school is not None
        connects = gw.school.client  # the same paho client reconnects
        old = mosquitto.gateway_credentials()
        with fleet_mod.editing(mosquitto.fleet_file, mosquitto.school, mosquitto.gateway_id) as f:
            f.rekey_gateway()
        wait_for(lambda: gw.school_broker.password != old[1], what="the gateway read its new password")
        mosquitto.write()
        mosquitto.reload()
        assert Client(mosquitto, *old).connack == "Not authorized"
        board = Board(mosquitto.host, mosquitto.port, SCHOOL, "cm2-b").connect()
        assert board.cmd_for(board.request(), timeout=20)["cmd"] == "grant"
        assert gw.school.client is connects and gw.school.connected
        board.close()
    finally:
        gw.stop()


def _self_signed(tmp_path) -> tuple[str, str]:
    """A broker certificate for 127.0.0.1 and its key (a school's own, or its city's CA)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "school broker")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "broker.pem", tmp_path / "broker.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_the_optional_tls_listener_carries_the_gateway_and_the_boards(tmp_path, capsys):
    """`[broker] tls_listen`: the same identities and ACL over TLS; the
    gateway connects with `tls = true` and the broker's certificate."""
    from edge_gateway.provision import main as provision

    cert, key = _self_signed(tmp_path)
    port, tls_port = free_port(), free_port()
    conf = _school_toml(tmp_path, port)
    text = pathlib.Path(conf).read_text().replace(
        f'listen = "127.0.0.1:{port}"\n',
        f'listen = "127.0.0.1:{port}"\ntls_listen = "127.0.0.1:{tls_port}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    text = text.replace(f"[school_broker]\nhost = \"127.0.0.1\"\nport = {port}\n",
                        f"[school_broker]\nhost = \"127.0.0.1\"\nport = {tls_port}\ntls = true\nca_file = \"{cert}\"\n")
    pathlib.Path(conf).write_text(text)
    assert provision(["--config", conf, "add", "cm2-b", "--out", str(tmp_path / "b.json")]) == 0
    creds = json.loads((tmp_path / "b.json").read_text())
    broker = Mosquitto(port=port, config_file=str(tmp_path / "state" / "broker" / "mosquitto.conf")).start()
    try:
        gw = Gateway(Config.load(conf), clock=school_clock()).start()
        try:
            assert gw.school is not None and gw.school.connected
            board = mqtt.Client(CallbackAPIVersion.VERSION2)
            board.tls_set(ca_certs=cert)
            board.username_pw_set(creds["user"], creds["password"])
            got: list[bytes] = []
            board.on_message = lambda c, u, m: got.append(m.payload)
            board.connect("127.0.0.1", tls_port)
            board.loop_start()
            board.subscribe(f"{ROOT}/cm2-b/cmd", qos=1)
            body = json.dumps({"v": 1, "boot": 1, "seq": 1, "uptime_ms": 1, "time": None,
                               "type": "lesson.requested", "data": {"req": 1}}).encode()
            # one connection: the broker takes the subscription before the request
            board.publish(f"{ROOT}/cm2-b/evt", mac.sign(bytes.fromhex(creds["key"]), f"{ROOT}/cm2-b/evt", body), qos=1)
            wait_for(lambda: any(b'"req":1' in p or b'"req": 1' in p for p in got), what="the grant over TLS")
            board.loop_stop()
            board.disconnect()
        finally:
            gw.stop()
    finally:
        broker.stop()


def test_a_gateway_without_a_fleet_refuses_every_board_then_follows_the_first_add(tmp_path, caplog):
    """No fleet file yet (a new school): the gateway runs, refuses every board
    message as `unprovisioned` and says why once; `preau provision add` brings
    the room in without a restart. A corrupt fleet file later keeps the keys
    in force, counted."""
    import logging

    from edge_gateway import fleet as fleet_mod

    caplog.set_level(logging.ERROR, logger="edge_gateway")
    open_broker = Mosquitto().start()  # the gateway needs no credentials on it
    fleet_file = tmp_path / "fleet.json"
    try:
        config = Config.from_dict({
            "school": SCHOOL, "gateway_id": "gw-1", "db": str(tmp_path / "gw.sqlite"), "fleet": str(fleet_file),
            "school_broker": {"host": open_broker.host, "port": open_broker.port},
            "rooms": {"cm2-b": {"wifi": "allowed"}}, "policy": {"zone": "C"}})
        gw = Gateway(config, clock=school_clock(), tick_s=0.05).start()
        try:
            stranger = Board(open_broker.host, open_broker.port, SCHOOL, "cm2-b", anonymous=True).connect()
            stranger.request()
            wait_for(lambda: gw.metrics["rejected"].get("unprovisioned") == 2, what="birth and request refused")
            assert not stranger.cmds
            assert sum("no fleet file" in r.getMessage() for r in caplog.records) == 1
            with fleet_mod.editing(str(fleet_file), SCHOOL, "gw-1") as f:
                creds = f.add("cm2-b")
            wait_for(lambda: "cm2-b" in gw.intake.keys, what="the new board's key")
            board = Board(open_broker.host, open_broker.port, SCHOOL, "cm2-b", creds=creds).connect()
            assert board.cmd_for(board.request())["cmd"] == "grant"
            fleet_file.write_text('{"format": 1, "school": "' + SCHOOL + '"')  # cut short by a full disk
            wait_for(lambda: gw.metrics["fleet_rejected"] == 1, what="the broken fleet file refused")
            assert "cm2-b" in gw.intake.keys
            assert board.cmd_for(board.request())["cmd"] == "grant"
            for b in (stranger, board):
                b.close()
        finally:
            gw.stop()
    finally:
        open_broker.stop()
