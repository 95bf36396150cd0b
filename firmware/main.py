# Entry point on the board: the root main.py runs
# `from firmware.main import main; main()`.
# Reads board.json, config.json and (when a projector is fitted)
# projector.json from flash, brings the uplink up and runs the classroom
# application. A bad config stops here with the reason on the console and
# the LED in its fault pattern; the relay stays off.
import asyncio
import gc
import json
import os
import sys

from .board import Board
from .compat import const

UPLINK_MIN_MS = 1000
UPLINK_MAX_MS = 60000
_TRIAL_MS = const(600000)  # a new version has 10 minutes to report healthy


def _show_fault(board):
    # No network, no session: the relay stays off and the LED says "call the
    # technician" until someone fixes config.json and resets the board.
    from .compat import sleep_ms, ticks_ms
    from .led import level

    while True:
        board.set_led(level("fault", ticks_ms()))
        sleep_ms(50)


def _read_config():
    from .config import ConfigError, load

    try:
        return load("config.json"), None
    except ConfigError as e:
        return None, str(e)
    finally:
        # Checked once at boot: the checker's code and tables go back to the
        # heap before the application loads (about 3 KB). The import bound it
        # in the package too: both references go.
        sys.modules.pop("firmware.config", None)
        try:
            delattr(sys.modules["firmware"], "config")
        except (AttributeError, KeyError):
            pass


async def _keep_uplink(board, cfg):
    """Bring the uplink back after a loss, with backoff (the MQTT client has
    its own): Ethernet normally holds by itself, a Wi-Fi station may not."""
    from .app import sleep_ms_async
    from .compat import ticks_ms

    wait = UPLINK_MIN_MS
    trial = True
    while True:
        await sleep_ms_async(wait)
        if trial and ticks_ms() > _TRIAL_MS:
            # A new version on trial that the gateway has not answered in
            # time: a reset, and the updater puts the previous one back
            # (docs/ota.md). Checked once per boot.
            trial = False
            try:
                os.stat("preau_trial.json")
                print("preau: update unconfirmed")
                board.set_relay(False)
                board.reset()
            except OSError:
                pass
        if board.uplink_up():
            wait = UPLINK_MIN_MS
            continue
        try:
            board.start_uplink(cfg["wifi_ssid"], cfg["wifi_password"])
        except OSError as e:
            print("preau: uplink:", e)
        wait = min(wait * 2, UPLINK_MAX_MS)


def main():
    with open("board.json") as f:
        board = Board(json.load(f))  # drives the relay off before anything else
    cfg, error = _read_config()
    gc.collect()
    if cfg is not None and board.profile.get("uplink") == "wlan" and not cfg["wifi_ssid"]:
        cfg, error = None, "config.json: key 'wifi_ssid' missing (board %s has a Wi-Fi uplink)" % board.name
    if cfg is None:
        print("preau: configuration error:", error)
        _show_fault(board)
        return
    projector = None
    if cfg["projector"]:
        try:
            with open("projector.json") as f:
                projector = json.load(f)
        except (OSError, ValueError) as e:
            # The lesson goes on without the projector; the reason is on the console.
            print("preau: projector.json unreadable (%s); projector not driven" % e)
    try:
        board.start_uplink(cfg["wifi_ssid"], cfg["wifi_password"])
    except OSError as e:
        print("preau: uplink:", e)  # sessions still run on the offline policy
    from .app import Classroom

    async def run():
        app = Classroom(cfg, board, storage="/", projector=projector)
        asyncio.create_task(_keep_uplink(board, cfg))
        await app.run()

    try:
        asyncio.run(run())
    except Exception as e:  # e.g. a projector.json that parses but is wrong
        # Not left inert in the REPL: the reason on the console, the relay
        # off, the LED asking for the technician.
        board.set_relay(False)
        print("preau: stopped:", repr(e))
        _show_fault(board)
