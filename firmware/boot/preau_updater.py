# The board's updater (docs/ota.md). It sits at the root of the flash as
# /preau_updater.mpy, outside the firmware slots, and no update replaces it
# (`preau flash` does): whatever a new version does, this code is there at
# the next boot to finish or undo a switch. Like a bootloader, it is small
# and does one thing.
#
# The root main.py (firmware/boot/main.py) imports it only while an update
# is under way, before the firmware: the school day's heap never holds it.
#
# Files at the root of the flash, each replaced whole (write, then rename):
#   preau_ota.json         the order: the gateway's `update` command as the
#                          application stored it, then this updater's journal
#                          ({"step": "download" | "switch", ...})
#   preau_trial.json       a new version on trial: {"ok": true, "version",
#                          "slot", "prev", "boots"}; the application renames
#                          it to preau_ota_result.json once the gateway
#                          answers it (healthy)
#   preau_slot.txt         the slot the firmware runs from: ota_a or ota_b
#                          (absent: the root, as `preau flash` wrote it)
#   preau_ota_result.json  the outcome, for the application's boot event
#
# A power cut at any point leaves a board that boots the old version or the
# new one, never neither: the new version is written into the slot that is
# not running, checked file by file, and only then does one rename (the slot
# file) switch. The journal makes every step safe to run again after a cut.
#
# Written here rather than taken from micropython-lib: its `hmac` and HTTP
# clients are not on the board's build, and this needs only HMAC-SHA256 and
# one HTTP/1.0 GET (a few hundred bytes of bytecode, loaded for the update
# only).
import hashlib
import json
import os

try:
    from ubinascii import hexlify, unhexlify
except ImportError:  # CPython
    from binascii import hexlify, unhexlify

ORDER = "preau_ota.json"
TRIAL = "preau_trial.json"
SLOT = "preau_slot.txt"
RESULT = "preau_ota_result.json"
SLOTS = ("ota_a", "ota_b")  # relative: the board runs from /, the tests from a folder
PACKAGES = ("firmware", "protocol")
MAX_TRIES = 3  # downloads of one order before giving up
MAX_TRIAL_BOOTS = 1  # boots a new version has to report healthy (docs/ota.md)
MAX_MANIFEST = 4096
MAX_FILES = 40
MAX_FILE = 64 * 1024
CHUNK = 512
UPLINK_WAIT_S = 30  # for the board's uplink to come up before the download


class UpdateError(Exception):
    pass


# -- files: whole or not at all ---------------------------------------------------------


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def replace(path, data):
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.rename(path + ".new", path)


def read_json(path):
    with open(path) as f:
        return json.loads(f.read())


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def rmtree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        full = path + "/" + name
        if os.stat(full)[0] & 0x4000:  # a directory
            rmtree(full)
        else:
            os.remove(full)
    os.rmdir(path)


def active_slot():
    try:
        with open(SLOT) as f:
            slot = f.read()
    except OSError:
        return ""
    return slot if slot in SLOTS else ""


def set_slot(slot):
    if slot:
        replace(SLOT, slot.encode())
    else:
        remove(SLOT)


# -- HMAC-SHA256 (RFC 2104), over hashlib: the board has no hmac module ------------------


def mac_of(key, topic, body):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(topic.encode() + b"\n" + body)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner.digest())
    return hexlify(outer.digest()[:16])


def verify_manifest(key, topic, raw):
    # The signed manifest (protocol/mac.py's format): its body, checked.
    tail = b'"}'
    cut = len(raw) - 42  # ,"mac":"<32 hex>"}
    if cut < 2 or raw[cut:cut + 8] != b',"mac":"' or raw[-2:] != tail:
        raise UpdateError("manifest not signed")
    body = raw[:cut] + b"}"
    if mac_of(key, topic, body) != raw[cut + 8:-2]:
        raise UpdateError("manifest signature does not match this board's key")
    return json.loads(body)


def check_manifest(m, order_id):
    if not isinstance(m, dict) or m.get("v") != 1 or m.get("id") != order_id:
        raise UpdateError("manifest is not for this order")
    version, files = m.get("version"), m.get("files")
    if not isinstance(version, str) or not 1 <= len(version) <= 32:
        raise UpdateError("manifest: bad version")
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_FILES:
        raise UpdateError("manifest: bad file list")
    for item in files:
        if not (isinstance(item, list) and len(item) == 3):
            raise UpdateError("manifest: bad file entry")
        path, size, digest = item
        parts = path.split("/") if isinstance(path, str) else ()
        if (len(parts) != 2 or parts[0] not in PACKAGES or not parts[1].endswith(".mpy")
                or not 5 <= len(parts[1]) <= 40 or ".." in path):
            raise UpdateError("manifest: file %r outside the firmware" % (path,))
        if not isinstance(size, int) or not 0 < size <= MAX_FILE:
            raise UpdateError("manifest: file %s: bad size" % path)
        if not isinstance(digest, str) or len(digest) != 64:
            raise UpdateError("manifest: file %s: bad hash" % path)
    return m


# -- HTTP/1.0 GET over asyncio streams (the MQTT client's transport) -----------------------


def http_get(url, limit, sink=None):
    # The body of a 200 answer (or, with `sink`, fed to it in chunks).
    import asyncio

    if not url.startswith("http://"):
        raise UpdateError("only http:// URLs: %s" % url)
    rest = url[7:]
    i = rest.find("/")
    hostport, path = (rest, "/") if i < 0 else (rest[:i], rest[i:])
    host, _, port = hostport.partition(":")
    port = int(port) if port else 80

    async def get():
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        try:
            writer.write(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, hostport)).encode())
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 10)
            if status.split(b" ")[1:2] != [b"200"]:
                raise UpdateError("GET %s: %s" % (path, status.strip().decode()))
            length = None
            while True:
                line = await asyncio.wait_for(reader.readline(), 10)
                if line in (b"\r\n", b"\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line[15:].strip())
            if length is None or length > limit:
                raise UpdateError("GET %s: length %s, limit %d" % (path, length, limit))
            out, left = [], length
            while left:
                chunk = await asyncio.wait_for(reader.read(min(CHUNK, left)), 10)
                if not chunk:
                    raise UpdateError("GET %s: connection closed early" % path)
                left -= len(chunk)
                if sink is None:
                    out.append(chunk)
                else:
                    sink(chunk)
            return b"".join(out)
        finally:
            writer.close()

    return asyncio.run(get())


# -- the steps -------------------------------------------------------------------------------


def _fail(order, why):
    replace(RESULT, json.dumps({"ok": False, "id": order.get("id"), "error": why[:160]}).encode())
    remove(ORDER)


def download(order, cfg, fetch):
    """Fetch, check and stage the bundle in the slot not running; then the
    journal's "switch" step. UpdateError on any fault: nothing switched."""
    if exists(TRIAL):
        # The version on trial is not yet a safe place to come back to, and
        # the other slot is the one that is: neither may be written over.
        raise UpdateError("a version is on trial: it must report healthy or roll back first")
    active = active_slot()
    target = SLOTS[1] if active == SLOTS[0] else SLOTS[0]
    topic = "preau/v1/%s/%s/ota" % (cfg["school"], cfg["room"])
    raw = fetch(order["url"], MAX_MANIFEST, None)
    m = check_manifest(verify_manifest(unhexlify(cfg["key"]), topic, raw), order.get("id"))
    need = sum(item[1] for item in m["files"])
    try:
        st = os.statvfs("/")
        free = st[0] * st[3]
    except (AttributeError, OSError):
        free = None
    if free is not None and need + 8192 > free + _slot_size(target):
        raise UpdateError("flash full: the update needs %d bytes, %d free" % (need, free))
    rmtree(target)
    os.mkdir(target)
    for package in PACKAGES:
        os.mkdir(target + "/" + package)
    base = m.get("base") or order["url"].rsplit("/", 1)[0] + "/"
    for path, size, digest in m["files"]:
        h = hashlib.sha256()
        with open(target + "/" + path, "wb") as f:
            def sink(chunk, f=f, h=h):
                h.update(chunk)
                f.write(chunk)
            fetch(base + digest, size, sink)
        if hexlify(h.digest()).decode() != digest:
            raise UpdateError("file %s: SHA-256 does not match the manifest" % path)
    # Read back from flash, as the flasher does: what boots is what was checked.
    for path, size, digest in m["files"]:
        h = hashlib.sha256()
        n = 0
        with open(target + "/" + path, "rb") as f:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                n += len(chunk)
                h.update(chunk)
        if n != size or hexlify(h.digest()).decode() != digest:
            raise UpdateError("file %s: reads back wrong from flash" % path)
    return {"step": "switch", "id": order.get("id"), "version": m["version"], "slot": target, "prev": active}


def _slot_size(slot):
    total = 0
    try:
        names = os.listdir(slot)
    except OSError:
        return 0
    for name in names:
        full = slot + "/" + name
        st = os.stat(full)
        total += _slot_size(full) if st[0] & 0x4000 else st[6]
    return total


def switch(order):
    # Idempotent: a cut anywhere here runs it again at the next boot.
    replace(TRIAL, json.dumps({"ok": True, "id": order["id"], "version": order["version"], "slot": order["slot"],
                               "prev": order["prev"], "boots": 0}).encode())
    set_slot(order["slot"])
    remove(ORDER)


def trial_boot():
    # A new version's boot before it reported healthy: count it; past
    # MAX_TRIAL_BOOTS, back to the previous slot.
    try:
        t = read_json(TRIAL)
        slot, prev = t["slot"], t["prev"]
    except (OSError, ValueError, KeyError, TypeError):
        remove(TRIAL)  # unreadable: the running slot stays
        return "trial file unreadable"
    t["boots"] = t.get("boots", 0) + 1
    replace(TRIAL, json.dumps(t).encode())
    if t["boots"] <= MAX_TRIAL_BOOTS:
        if active_slot() != slot:
            set_slot(slot)  # a cut between the trial file and the slot file
        return None
    # Not healthy in time: the previous version again. Each step is safe to
    # repeat: the trial file, which says so, goes last.
    set_slot(prev if prev in SLOTS else "")
    replace(RESULT, json.dumps({"ok": False, "id": t.get("id"), "version": t.get("version"),
                                "error": "not healthy after %d boot(s): back to %s" % (t["boots"] - 1, prev or "the flashed version")}).encode())
    remove(TRIAL)
    return "rolled back"


def run(cfg, fetch, reset):
    """What the root main.py calls while an update is under way. Returns to
    boot the firmware; calls `reset` after a step that needs a fresh boot."""
    if exists(ORDER):
        try:
            order = read_json(ORDER)
        except (OSError, ValueError):
            order = None
        if not isinstance(order, dict):
            _fail({}, "update order unreadable")
            return "order unreadable"
        if order.get("cmd") == "update":  # as the application stored the command
            order = {"step": "download", "id": order.get("id"), "url": order.get("manifest_url"), "tries": 0}
        if order.get("step") == "download":
            order["tries"] = order.get("tries", 0) + 1
            if order["tries"] > MAX_TRIES:
                _fail(order, "gave up after %d tries" % MAX_TRIES)
                reset()
                return "gave up"
            replace(ORDER, json.dumps(order).encode())
            try:
                order = download(order, cfg, fetch)
            except (UpdateError, OSError, ValueError, KeyError, TypeError, IndexError) as e:
                _fail(order, "%s: %s" % (type(e).__name__, e))
                reset()
                return "failed"
            replace(ORDER, json.dumps(order).encode())
        if order.get("step") == "switch":
            switch(order)
            reset()
            return "switched"
        _fail(order, "update order of an unknown kind")
        return "unknown order"
    if exists(TRIAL):
        return trial_boot()
    return None


def main():
    # On the board: the key and room from config.json, HTTP over the
    # board's uplink (brought up only to download), machine.reset. The
    # firmware modules it borrows for the uplink are dropped after, so that
    # the root main.py imports the firmware of the slot chosen here.
    import sys

    import machine

    cfg = read_json("config.json")
    try:
        if exists(ORDER):
            try:
                from firmware.board import Board

                with open("board.json") as f:
                    board = Board(json.loads(f.read()))  # the relay off first, as at every boot
                board.start_uplink(cfg.get("wifi_ssid"), cfg.get("wifi_password"))
                # Ethernet's link and DHCP, or a Wi-Fi station's association,
                # take seconds after a reset: the download waits for them.
                import time

                for _ in range(UPLINK_WAIT_S * 10):
                    if board.uplink_up():
                        break
                    time.sleep_ms(100)  # pyright: ignore[reportAttributeAccessIssue]  # MicroPython's time
            except Exception as e:  # the download then fails, and says why
                print("preau: update: uplink:", repr(e))
        return run(cfg, http_get, machine.reset)
    finally:
        for name in list(sys.modules):
            if name.split(".")[0] in PACKAGES:
                del sys.modules[name]
