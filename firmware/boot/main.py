# The board's root main.py, written by `preau flash`; no update replaces it
# (docs/ota.md). While an update is under way (one of its files is there),
# the updater runs first; then the firmware starts from the slot an update
# installed, or from the root as flashed. It uses only names MicroPython
# already holds and strings over 10 characters, so that compiling it at
# every boot adds nothing to the interned-name pool of the day
# (docs/board.md).
import os
import sys

for f in ("preau_ota.json", "preau_trial.json"):
    try:
        os.stat(f)
    except OSError:
        continue
    try:
        __import__("preau_updater").main()
    except Exception as e:  # an updater fault never keeps the classroom down
        sys.print_exception(e)
    break
try:
    with open("preau_slot.txt") as f:
        sys.path.insert(0, f.read())
except OSError:
    pass
from firmware.main import main  # noqa: E402  # after the slot is on sys.path

main()
