"""`preau flash` (edge_gateway/flash/) against a simulated board: a
pseudo-terminal that speaks MicroPython's raw REPL and raw-paste mode
(devkit/sim/rawrepl.py) and runs what it receives in the real MicroPython VM
with the board's flash as its file system. After the flash, the board resets
and MicroPython boots the files the flasher wrote: the firmware's birth
reaches a locked school broker and the gateway's API. Then each error a
technician can meet, with its one sentence and its fix."""

from __future__ import annotations

import errno
import io
import json
import struct
import threading

import paho.mqtt.client as paho
import pytest
import serial

from common.files import write_private
from devkit.brokers import free_port
from devkit.http import HttpThread
from devkit.school import OBSERVER, LockedSchool
from devkit.sim.rawrepl import PICO_W, RawReplBoard
from devkit.testing import school_clock, wait_for
from edge_gateway.api import ApiSettings, create_app
from edge_gateway.config import Config
from edge_gateway.flash import build, cli, image
from edge_gateway.flash.errors import NoCompiler, WrongImage, WrongProfile
from edge_gateway.flash.repl import RawRepl, open_port
from edge_gateway.gateway import Gateway
from protocol.mac import verify

pytestmark = [pytest.mark.mpvm, pytest.mark.broker]
TOKEN = "t0ken-for-the-flash-tests"
ROOM = "cm2-b"  # wifi "never" in the school's configuration
FW_FILES = {f"/firmware/{src.stem}.mpy" for pkg, src in build.board_sources() if pkg == "firmware"}


@pytest.fixture
def school(tmp_path):
    s = LockedSchool(directory=str(tmp_path / "school"), rooms=(ROOM, "cp-a")).start()
    yield s
    s.stop()


def school_toml(school: LockedSchool, tmp_path, http_port: int) -> str:
    path = tmp_path / "school.toml"
    path.write_text(f"""
school = "{school.school}"
gateway_id = "{school.gateway_id}"
db = "{tmp_path / 'gw.sqlite'}"
fleet = "{school.fleet_file}"

[broker]
dir = "{school.files.dir}"
listen = "{school.host}:{school.port}"

[school_broker]
host = "{school.host}"
port = {school.port}

[http]
bind = "127.0.0.1:{http_port}"

[policy]
zone = "C"
commune = "Montpellier"

[rooms.{ROOM}]
wifi = "never"

[rooms.cp-a]
wifi = "allowed"
""")
    return str(path)


def credentials(school: LockedSchool, tmp_path, room: str = ROOM, **override) -> str:
    path = str(tmp_path / f"{room}.json")
    write_private(path, json.dumps(school.board_config(room) | override))
    return path


@pytest.fixture
def gateway(school, tmp_path):
    """The school's gateway with its web API on a free port."""
    http_port = free_port()
    toml = school_toml(school, tmp_path, http_port)
    config = Config.load(toml)
    gw = Gateway(config, reconnect_max_s=1, clock=school_clock()).start()
    http = HttpThread(create_app(gw, ApiSettings.from_config(config, {"PREAU_GATEWAY_TOKEN": TOKEN})),
                      "127.0.0.1", http_port)
    yield toml, gw
    http.stop()
    gw.stop()


@pytest.fixture
def board():
    boards = []

    def make(**kw) -> RawReplBoard:
        b = RawReplBoard(**kw).start()
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.stop()


def flash(toml: str, creds: str, port: str, *extra: str, room: str = ROOM, token: str | None = TOKEN):
    out, err = io.StringIO(), io.StringIO()
    env = {"PREAU_GATEWAY_VIEWER_TOKEN": token} if token else {}
    rc = cli.main([room, "--config", toml, "--credentials", creds, "--port", port, "--wait", "60", *extra],
                  environ=env, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


class Observer:
    """The test's eyes on the school broker (LockedSchool's observer identity)."""

    def __init__(self, school: LockedSchool, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=OBSERVER)
        self.client.username_pw_set(OBSERVER, school.observer_password)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(school.host, school.port)
        self.client.loop_start()
        assert subscribed.wait(10), "the observer could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def births(self) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p in self.messages if t.endswith("/state") and json.loads(p).get("online")]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ------------------------------------------------------------------ the whole way


def test_flash_copies_verifies_resets_and_the_birth_reaches_the_gateway(school, gateway, board, tmp_path):
    toml, gw = gateway
    creds_path = credentials(school, tmp_path)
    with open(creds_path) as f:
        creds = json.load(f)
    # A board flashed before with sources: a .py beside a .mpy would win the import.
    sim = board(flash={"/firmware": None, "/firmware/app.py": b"raise Exception('old sources')\n",
                       "/firmware/gone.mpy": b"M\x06"})
    watch = Observer(school, f"preau/v1/{school.school}/{ROOM}/state")
    try:
        rc, out, err = flash(toml, creds_path, sim.port)
        assert rc == 0, out + err
        for n in range(1, 7):
            assert f"[{n}/6]" in out
        assert "MicroPython 1.27.0, .mpy 6.3" in out and "mpy-cross 1.27.0 (.mpy 6.3)" in out
        assert "birth received by the gateway" in out
        # never a secret on the technician's screen
        assert creds["password"] not in out + err and creds["key"] not in out + err

        # the board's flash, as MicroPython wrote it
        files = sim.files()
        assert set(files) >= FW_FILES and "/protocol/wire.mpy" in files
        assert "/firmware/app.py" not in files and "/firmware/gone.mpy" not in files
        assert files["/main.py"] == build.MAIN_PY
        assert all(files[p][:2] == b"M\x06" for p in FW_FILES)  # .mpy version 6, as the board loads
        cfg = json.loads(files["/config.json"])
        assert cfg == {"school": school.school, "room": ROOM, "broker": school.host, "port": school.port,
                       "user": creds["user"], "password": creds["password"], "key": creds["key"],
                       "board": "olimex-esp32-poe", "wifi_never": True}
        assert json.loads(files["/board.json"])["name"] == "olimex-esp32-poe"
        assert sim.raw_pastes > 10 and sim.resets == 1

        # MicroPython booted those files: the signed birth is on the broker
        births = wait_for(lambda: watch.births() or None, 30, "the board's birth on the broker")
        assert births[-1]["board"] == "olimex-esp32-poe"
        raw = next(p for t, p in watch.messages if t.endswith("/state"))
        assert verify(bytes.fromhex(creds["key"]), f"preau/v1/{school.school}/{ROOM}/state", raw)
        assert gw.rooms()[ROOM]["online"] is True
    finally:
        watch.close()


def test_the_room_wifi_rule_comes_from_the_gateway_configuration(school, board, tmp_path):
    toml = school_toml(school, tmp_path, free_port())
    sim = board()
    rc, out, err = flash(toml, credentials(school, tmp_path, "cp-a"), sim.port, "--no-wait", room="cp-a")
    assert rc == 0, out + err
    assert json.loads(sim.files()["/config.json"])["wifi_never"] is False


# ------------------------------------------------------------------ the raw REPL


def test_plain_raw_mode_when_the_board_has_no_raw_paste(board):
    sim = board()
    repl = RawRepl(open_port(sim.port))
    try:
        repl.raw_paste = False
        repl.enter()
        assert repl.exec("print(6 * 7)").strip() == b"42"
        with pytest.raises(Exception, match="ZeroDivisionError"):
            repl.exec("1 / 0")
        assert repl.exec("import sys\nprint(sys.implementation._mpy)").strip() == b"774"
    finally:
        repl.close()
    assert sim.raw_execs == 3 and sim.raw_pastes == 0


def test_the_mpy_version_decodes_as_micropython_documents_it():
    assert build.Abi.decode(774) == build.Abi(6, 3, "")  # the VM: 1.27.0, no native code
    assert build.Abi.decode(6 | 3 << 8 | 10 << 10) == build.Abi(6, 3, "xtensawin")  # an ESP32 on 1.27
    assert build.Abi.decode(6 | 2 << 8 | 10 << 10) == build.Abi(6, 2, "xtensawin")  # an ESP32 on 1.22


def test_the_compiler_matches_the_board_or_the_flasher_refuses(tmp_path):
    assert build.find_compiler(build.Abi(6, 3, ""), str(tmp_path)).emits == (6, 3)
    older = build.find_compiler(build.Abi(6, 2, "xtensawin"), str(tmp_path))
    assert older.emits == (6, 2) and older.micropython.startswith("1.22")
    compiled = build.compile_firmware(older, build.Abi(6, 2, "xtensawin"), str(tmp_path))
    assert {f.path for f in compiled} >= FW_FILES
    with pytest.raises(NoCompiler) as e:
        build.find_compiler(build.Abi(7, 0, ""), str(tmp_path))
    assert "7.0" in str(e.value) and "mpy-cross" in e.value.fix
    with pytest.raises(NoCompiler) as e:
        build.check_micropython((1, 21, 0))
    assert "--image" in e.value.fix


# ------------------------------------------------------------------ what a technician meets


def test_no_port_found(monkeypatch):
    with pytest.raises(cli.NoPort) as e:
        cli.find_port(None, lister=lambda: [])
    assert "no board found" in str(e.value) and "--port" in e.value.fix


def test_permission_denied_on_the_port(monkeypatch):
    def denied(*args, **kw):
        raise serial.SerialException(errno.EACCES, "could not open port /dev/ttyUSB0: [Errno 13] Permission denied")

    monkeypatch.setattr(serial, "serial_for_url", denied)
    with pytest.raises(cli.FlashError) as e:
        open_port("/dev/ttyUSB0")
    assert "permission denied" in str(e.value) and "dialout" in e.value.fix


def test_the_port_is_busy(school, board, tmp_path):
    sim = board()
    other = serial.serial_for_url(sim.port, exclusive=True)  # a serial monitor left open
    try:
        rc, out, err = flash(school_toml(school, tmp_path, free_port()), credentials(school, tmp_path), sim.port,
                             "--no-wait")
    finally:
        other.close()
    assert rc == 1 and "in use by another program" in err and "fix: close the other program" in err


def test_a_board_that_does_not_answer_the_raw_repl(school, board, tmp_path):
    sim = board(answers=False)
    rc, out, err = flash(school_toml(school, tmp_path, free_port()), credentials(school, tmp_path), sim.port,
                         "--no-wait", "--timeout", "1")
    assert rc == 1 and "does not answer the raw REPL" in err and "reset button" in err


def test_the_wrong_board_profile(school, board, tmp_path):
    sim = board(identity=PICO_W)
    rc, out, err = flash(school_toml(school, tmp_path, free_port()), credentials(school, tmp_path), sim.port,
                         "--no-wait")
    assert rc == 1 and "the board is an RP2040" in err and "for an ESP32" in err and "--board: pico-w" in err
    assert "/config.json" not in sim.files()  # nothing written


def esp_image(path, chip_id: int) -> str:
    header = bytes([0xE9, 3, 2, 0x20]) + struct.pack("<I", 0x40080000) + bytes([0xEE, 0, 0, 0])
    header += struct.pack("<H", chip_id) + bytes(10)
    path.write_bytes(header + bytes(4096))
    return str(path)


def uf2_image(path, family: int) -> str:
    block = struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000, 256, 0, 1, family)
    path.write_bytes(block + bytes(512 - len(block)))
    return str(path)


def test_an_image_for_the_wrong_chip(tmp_path):
    s3 = esp_image(tmp_path / "ESP32_GENERIC_S3.bin", 9)
    assert image.image_chip(s3) == "esp32s3"
    with pytest.raises(WrongImage) as e:
        image.check_image(s3, "esp32", "olimex-esp32-poe", found="esp32")
    assert "for an ESP32S3, but this board is an ESP32" in str(e.value) and "--image" in e.value.fix
    pico = uf2_image(tmp_path / "RPI_PICO_W.uf2", 0xE48BFF56)
    assert image.image_chip(pico) == "rp2040"
    with pytest.raises(WrongImage):
        image.check_image(pico, "esp32", "olimex-esp32-poe", found="esp32")
    with pytest.raises(WrongProfile):  # esptool found an S3 where the profile says ESP32
        image.check_image(esp_image(tmp_path / "ok.bin", 0), "esp32", "olimex-esp32-poe", found="esp32s3")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(WrongImage):
        image.image_chip(str(tmp_path / "notes.txt"))
    # The Pico's bootloader drive refuses an image for another chip before any copy.
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n")
    with pytest.raises(WrongImage):
        image.uf2_write(uf2_image(tmp_path / "rp2350.uf2", 0xE48BFF59), str(drive))
    image.uf2_write(pico, str(drive))
    assert (drive / "RPI_PICO_W.uf2").read_bytes() == (tmp_path / "RPI_PICO_W.uf2").read_bytes()


def test_the_flash_is_full(school, board, tmp_path):
    sim = board(capacity=32 * 1024, flash={"/photos.bin": bytes(20 * 1024)})
    rc, out, err = flash(school_toml(school, tmp_path, free_port()), credentials(school, tmp_path), sim.port,
                         "--no-wait")
    assert rc == 1 and "the board's flash is full" in err and "mpremote rm" in err
    assert "/main.py" not in sim.files()


def test_the_flash_fills_up_while_writing(school, board, tmp_path, monkeypatch):
    # statvfs can be wrong (LittleFS's own blocks): a write that fails with ENOSPC says the same.
    monkeypatch.setattr(cli, "INSPECT", "print(repr((4096, 10 ** 6, [])))")
    sim = board(capacity=24 * 1024)
    rc, out, err = flash(school_toml(school, tmp_path, free_port()), credentials(school, tmp_path), sim.port,
                         "--no-wait")
    assert rc == 1 and "filled up while writing" in err


def test_the_gateway_is_not_reachable(school, board, tmp_path):
    sim = board()
    toml = school_toml(school, tmp_path, free_port())  # nothing listens there
    rc, out, err = flash(toml, credentials(school, tmp_path), sim.port)
    assert rc == 1 and "gateway is not reachable" in err and "--no-wait" in err
    assert "/config.json" not in sim.files()  # refused before the board was touched


def test_no_birth_after_the_reset(school, gateway, board, tmp_path):
    toml, gw = gateway
    sim = board()
    # A broker address the board cannot reach: it boots, and nothing arrives.
    creds = credentials(school, tmp_path, port=free_port())
    rc, out, err = flash(toml, creds, sim.port, "--wait", "3")
    assert rc == 1 and "no birth from room cm2-b reached the gateway" in err and "broker address" in err
    assert sim.resets == 1


def test_credentials_of_another_room_or_a_revoked_board(school, board, tmp_path):
    toml = school_toml(school, tmp_path, free_port())
    sim = board()
    rc, out, err = flash(toml, credentials(school, tmp_path, "cp-a"), sim.port, "--no-wait")
    assert rc == 2 and "is for room cp-a, not cm2-b" in err
    old = credentials(school, tmp_path)
    school.change("replace", ROOM)
    rc, out, err = flash(toml, old, sim.port, "--no-wait")
    assert rc == 2 and "not room cm2-b's active board" in err and "rekey" in err


def test_flashing_again_a_board_that_runs_the_firmware(school, board, tmp_path):
    toml, creds = school_toml(school, tmp_path, free_port()), credentials(school, tmp_path)
    sim = board()
    assert flash(toml, creds, sim.port, "--no-wait")[0] == 0
    wait_for(lambda: sim.resets == 1 or None, 30, "the flashed firmware booted")
    # The firmware runs now: the flasher stops it with Ctrl-C first.
    rc, out, err = flash(toml, creds, sim.port, "--no-wait")
    assert rc == 0, out + err
    assert b"KeyboardInterrupt" in sim.console
    wait_for(lambda: sim.resets == 2 or None, 30, "the second reset")
