# Entry point on the board: the root main.py runs
# `from firmware.main import main; main()`.
# Reads config.json and board.json from flash, brings the uplink up and runs
# the classroom application. A bad config stops here with the reason on the
# console and the LED in its fault pattern; the relay stays off.
import asyncio
import json

from .app import Classroom
from .board import Board
from .config import ConfigError, load


def _show_fault(board):
    # No network, no session: the relay stays off and the LED says "call the
    # technician" until someone fixes config.json and resets the board.
    from .compat import sleep_ms, ticks_ms
    from .led import level

    while True:
        board.set_led(level("fault", ticks_ms()))
        sleep_ms(50)


def main():
    with open("board.json") as f:
        board = Board(json.load(f))  # drives the relay off before anything else
    try:
        cfg = load("config.json")
    except ConfigError as e:
        print("preau: configuration error:", e)
        _show_fault(board)
        return
    board.start_uplink()
    asyncio.run(Classroom(cfg, board, storage="/").run())

