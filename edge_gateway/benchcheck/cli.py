"""`preau bench`: check a freshly flashed board on a Raspberry Pi's bench
before it goes into a classroom (docs/benchcheck.md).

    preau bench [--board PROFILE] [--console PORT] --projector-port PORT [--projector NAME | --no-projector]
                [--button-gpio N] [--relay-gpio N] [--led-gpio N] [--reset-gpio N]

Prints one line per check, PASS or FAIL with its reason, and the fix under
each failure. Exit 0 only when every check passed; 1 otherwise or when the
bench cannot run (a line and its fix); 2 for a wrong option."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from .checks import Timing, check_board
from .projector import SERIAL_TABLES, BenchProjector
from .wire import BenchError, BenchWire


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="preau bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="olimex-esp32-poe", help="board profile (hardware/boards/)")
    p.add_argument("--console", metavar="PORT",
                   help="the board's USB serial port or a pyserial URL (default: the one board plugged in)")
    p.add_argument("--projector", default="epson-escvp21", choices=SERIAL_TABLES,
                   help="the projector the bench plays on the board's projector port (the table it was flashed with)")
    p.add_argument("--no-projector", action="store_true", help="the room has no RS-232 projector: skip that check")
    p.add_argument("--projector-port", metavar="PORT",
                   help="the bench's serial port wired to the board's projector port (e.g. /dev/ttyUSB1)")
    p.add_argument("--button-gpio", type=int, default=17, metavar="N", help="BCM line to the board's button (17)")
    p.add_argument("--relay-gpio", type=int, default=27, metavar="N", help="BCM line from the relay's sense contact (27)")
    p.add_argument("--led-gpio", type=int, default=22, metavar="N", help="BCM line from the board's LED (22)")
    p.add_argument("--reset-gpio", type=int, metavar="N",
                   help="BCM line to the board's EN/RUN pin (default: reset through the console)")
    p.add_argument("--boot-timeout", type=float, default=30.0, metavar="S",
                   help="longest wait from a reset to the LED's first pattern (30 s)")
    return p


async def _check(wire: BenchWire, projector: str | None, timing: Timing):
    try:
        return await check_board(wire, projector, timing)
    finally:
        await wire.close()


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    stdout, stderr = out or sys.stdout, err or sys.stderr
    from hardware.boards import ProfileError, load_profile, profile_names

    try:
        profile = load_profile(args.board)
    except ProfileError as e:
        print(f"preau bench: {e}\n  fix: give one of {', '.join(profile_names())} with --board", file=stderr)
        return 2
    projector = None if args.no_projector else args.projector
    if projector is not None and not args.projector_port:
        print("preau bench: no port for the projector line\n  fix: give the bench's port wired to the board's "
              "projector port with --projector-port, or --no-projector for a room without one", file=stderr)
        return 2
    try:
        from .blinka import BlinkaWire, require_blinka

        require_blinka()  # before any port: off the Pi, that is the one thing to say
        wire = BlinkaWire(profile, console=_console(args.console), projector_port=args.projector_port if projector else None,
                          projector_baud=BenchProjector(projector).table["serial"]["baud"] if projector else 9600,
                          button_gpio=args.button_gpio, relay_gpio=args.relay_gpio, led_gpio=args.led_gpio,
                          reset_gpio=args.reset_gpio)
        sheet = asyncio.run(_check(wire, projector, Timing(boot_s=args.boot_timeout)))
    except BenchError as e:
        print(f"preau bench: {e}\n  fix: {e.fix}", file=stderr, flush=True)
        return 1
    print(sheet.render(), file=stdout, flush=True)
    return 0 if sheet.ok else 1


def _console(port: str | None) -> str:
    if port:
        return port
    from ..flash.cli import find_port
    from ..flash.errors import FlashError

    try:
        return find_port(None)[0]
    except FlashError as e:
        raise BenchError(str(e), e.fix.replace("--port", "--console")) from None


if __name__ == "__main__":
    sys.exit(main())
