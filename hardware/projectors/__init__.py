"""Projector protocol tables: one JSON file per protocol family, validated
here, turned into the compact projector.json the board's driver
(firmware/projector.py) reads. docs/projectors.md describes the format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TABLES_DIR = Path(__file__).parent

COMMANDS = ("on", "off", "power", "lamp", "errors")
REQUIRED_COMMANDS = ("on", "off", "power")
QUERIES = ("power", "lamp", "errors")
STATES = ("off", "on", "warming", "cooling", "error")
OUTCOMES = ("refused", "unsupported", "failure", "auth")
TRANSPORTS = ("serial", "tcp")
ERROR_KINDS = ("none", "code", "flags")
PARITIES = {"none": None, "even": 0, "odd": 1}  # machine.UART's parity values


class TableError(ValueError):
    pass


def names() -> list[str]:
    return sorted(p.stem for p in TABLES_DIR.glob("*.json"))


def load_table(name: str) -> dict:
    """The table `name` (hardware/projectors/<name>.json), validated."""
    path = TABLES_DIR / f"{name}.json"
    if not path.exists():
        raise TableError(f"unknown projector table {name!r} (known: {', '.join(names())})")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise TableError(f"{path.name}: not valid JSON ({e})") from e
    validate(table, path.name)
    return table


def _need(obj: dict, key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise TableError(f"{where}: key {key!r} missing")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TableError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _positive(obj: dict, key: str, where: str) -> int:
    value = _need(obj, key, int, where)
    if value <= 0:
        raise TableError(f"{where}.{key}: must be > 0, got {value!r}")
    return value


def validate(table: dict, where: str = "table") -> dict:
    """Check a table; every message names the file (`where`) and the key."""
    if not isinstance(table, dict):
        raise TableError(f"{where}: expected a JSON object")
    transport = _need(table, "transport", str, where)
    if transport not in TRANSPORTS:
        raise TableError(f"{where}.transport: {transport!r} is not one of {', '.join(TRANSPORTS)}")
    if transport == "serial":
        line = _need(table, "serial", dict, where)
        _positive(line, "baud", where + ".serial")
        if line.get("bits", 8) not in (7, 8):
            raise TableError(f"{where}.serial.bits: 7 or 8, got {line['bits']!r}")
        if line.get("parity", "none") not in PARITIES:
            raise TableError(f"{where}.serial.parity: one of {', '.join(PARITIES)}, got {line['parity']!r}")
        if line.get("stop", 1) not in (1, 2):
            raise TableError(f"{where}.serial.stop: 1 or 2, got {line['stop']!r}")
    else:
        tcp = _need(table, "tcp", dict, where)
        _positive(tcp, "port", where + ".tcp")
        if tcp.get("auth", "none") not in ("none", "pjlink-md5"):
            raise TableError(f"{where}.tcp.auth: 'none' or 'pjlink-md5', got {tcp['auth']!r}")

    frame = _need(table, "frame", dict, where)
    for key in ("prefix", "suffix", "end"):
        _need(frame, key, str, where + ".frame")
    if not frame["end"]:
        raise TableError(f"{where}.frame.end: must not be empty (the driver reads a reply up to it)")

    commands = _need(table, "commands", dict, where)
    for name, spec in commands.items():
        at = f"{where}.commands.{name}"
        if name not in COMMANDS:
            raise TableError(f"{at}: unknown command (known: {', '.join(COMMANDS)})")
        if not isinstance(spec, dict):
            raise TableError(f"{at}: expected an object with 'send'")
        if not _need(spec, "send", str, at):
            raise TableError(f"{at}.send: must not be empty")
        if name in QUERIES:
            if not _need(spec, "reply", str, at):
                raise TableError(f"{at}.reply: must not be empty")
        elif "reply" in spec:
            raise TableError(f"{at}.reply: a power command has no reply pattern, only outcomes")
        if "reply_ms" in spec:
            _positive(spec, "reply_ms", at)
        unknown = set(spec) - {"send", "reply", "reply_ms"}
        if unknown:
            raise TableError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
    for name in REQUIRED_COMMANDS:
        if name not in commands:
            raise TableError(f"{where}.commands: command {name!r} missing")

    outcomes = _need(table, "outcomes", dict, where)
    for pattern, kind in outcomes.items():
        if not pattern:
            raise TableError(f"{where}.outcomes: empty pattern")
        if kind not in OUTCOMES:
            raise TableError(f"{where}.outcomes.{pattern!r}: {kind!r} is not one of {', '.join(OUTCOMES)}")

    states = _need(table, "states", dict, where)
    for code, state in states.items():
        if not code or " " in code or ":" in code:
            raise TableError(f"{where}.states.{code!r}: a state code is the reply's value: no space, no ':'")
        if state not in STATES:
            raise TableError(f"{where}.states.{code}: unknown state {state!r} (known: {', '.join(STATES)})")
    for state in ("on", "off"):
        if state not in states.values():
            raise TableError(f"{where}.states: no code maps to {state!r}")

    errors = _need(table, "errors", dict, where)
    kind = _need(errors, "kind", str, where + ".errors")
    if kind not in ERROR_KINDS:
        raise TableError(f"{where}.errors.kind: {kind!r} is not one of {', '.join(ERROR_KINDS)}")
    if kind != "none" and "errors" not in commands:
        raise TableError(f"{where}.errors: kind {kind!r} needs commands.errors")
    if kind == "none" and "errors" in commands:
        raise TableError(f"{where}.errors.kind: 'none' but commands.errors is set")
    if kind == "code":
        codes = _need(errors, "codes", dict, where + ".errors")
        for code, text in codes.items():
            if not isinstance(text, str) or not text:
                raise TableError(f"{where}.errors.codes.{code}: expected a text")
    elif kind == "flags":
        flags = _need(errors, "flags", list, where + ".errors")
        if not flags or not all(isinstance(f, str) and f for f in flags):
            raise TableError(f"{where}.errors.flags: expected a list of names")
        levels = _need(errors, "levels", dict, where + ".errors")
        if "0" in levels:
            raise TableError(f"{where}.errors.levels.0: '0' means no fault and takes no text")

    timings = _need(table, "timings", dict, where)
    for key in ("reply_ms", "warm_s", "cool_s"):
        _positive(timings, key, where + ".timings")
    unknown = set(table) - {"title", "transport", "serial", "tcp", "frame", "commands", "outcomes",
                            "states", "errors", "timings", "notes"}
    if unknown:
        raise TableError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return table


# The board form (projector.json): a dict with the transport (`io`, and
# `baud` or `port`, read by firmware/app.py and devkit/sim/classroom.py)
# and `p`, the protocol as one flat list (firmware/projector.py reads it by
# position; a dict per command would cost the board ~2 KB of heap). Indexes:
BOARD_COMMANDS = ("on", "off", "power", "lamp", "errors")  # frames at 0-4, "" when absent
MS, ANS, END, ST, WARM, COOL, KINDS, OUT = 5, 10, 13, 14, 15, 16, 17, 18
BOARD_STATES = ("off", "on", "warming", "cooling", "error")  # the digits in ST
OUTCOME_LETTERS = {kind: kind[0] for kind in OUTCOMES}  # r, u, f, a


def compact(table: dict, name: str) -> dict:
    """The board's form of a validated table: whole frames, milliseconds, no
    error texts (the board reports "err:<value>", describe_fault() gives the
    text). Layout of `p` (docs/projectors.md):

    0-4   frames of on, off, power, lamp, errors ("" when the table has none)
    5-9   each command's reply timeout, ms
    10-12 the reply prefixes of power, lamp, errors ("" when absent)
    13    what closes a reply
    14    states: " <code>:<digit>" each, digit an index in BOARD_STATES
    15-16 warm-up and cool-down, ms
    17    the outcomes' kinds, a letter each (r refused, u unsupported, f failure, a auth)
    18... the outcomes' patterns, in the same order
    """
    frame = table["frame"]
    commands = table["commands"]
    t = table["timings"]
    if table["transport"] == "serial":
        line = table["serial"]
        if (line.get("bits", 8), line.get("parity", "none"), line.get("stop", 1)) != (8, "none", 1):
            raise TableError(f"{name}.json.serial: the board opens its UART 8N1 (firmware/board.py), "
                             f"got {line.get('bits', 8)} bits, parity {line.get('parity', 'none')}, "
                             f"{line.get('stop', 1)} stop")
    def spec(n: str) -> dict:
        return commands.get(n, {})

    p: list = [frame["prefix"] + spec(n)["send"] + frame["suffix"] if n in commands else ""
               for n in BOARD_COMMANDS]
    p += [spec(n).get("reply_ms", t["reply_ms"]) for n in BOARD_COMMANDS]
    p += [spec(n).get("reply", "") for n in QUERIES]
    p += [frame["end"],
          "".join(f" {code}:{BOARD_STATES.index(state)}" for code, state in table["states"].items()),
          t["warm_s"] * 1000, t["cool_s"] * 1000]
    outcomes = sorted(table["outcomes"].items())
    p += ["".join(OUTCOME_LETTERS[kind] for _, kind in outcomes)] + [pattern for pattern, _ in outcomes]
    board: dict = {"io": table["transport"]}
    if table["transport"] == "serial":
        board["baud"] = table["serial"]["baud"]
    else:
        board["port"] = table["tcp"]["port"]
    board["p"] = p
    return board


def board_table(name: str) -> dict:
    """What the board gets as projector.json for the table `name`."""
    return compact(load_table(name), name)


def describe_fault(name: str, error: str) -> str:
    """The text of a projector.fault `error` reported by a board driving the
    table `name`. The board reports the device's error query as
    "err:<value>", the value as the projector sent it (Epson ERR?: "err:04";
    PJLink ERST, one digit per part: "err:020100"); its own faults ("no
    reply", "auth", "bad reply"...) are text already and come back as they are."""
    if not error.startswith("err:"):
        return error
    value = error[4:]
    errors = load_table(name)["errors"]
    if errors["kind"] == "code":
        return errors["codes"].get(value, "error " + value)
    if errors["kind"] == "flags" and value.isdigit():
        # strict=False: a reply with more or fewer digits than the table's parts is still read
        parts = [f"{part} {errors['levels'].get(level, level)}"
                 for part, level in zip(errors["flags"], value, strict=False) if level != "0"]
        if parts:
            return ", ".join(parts)
    return "error " + value
