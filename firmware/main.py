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


def main():
    with open("board.json") as f:
        board = Board(json.load(f))
    board.set_relay(False)
    try:
        cfg = load("config.json")
    except ConfigError as e:
        print("preau: configuration error:", e)
        board.set_led(True)
        return
    board.start_uplink()
    asyncio.run(Classroom(cfg, board, storage="/").run())

