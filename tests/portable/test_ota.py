# The board's updater (firmware/boot/preau_updater.py, docs/ota.md), under
# CPython and in the MicroPython VM: a corrupt bundle, a wrong key, a
# manifest for another order are refused; a new version that does not report
# healthy is rolled back; and a power cut at every write, rename, remove and
# folder step of an update, and of a rollback, leaves a board that boots the
# old version or the new one, whole, never neither.
import hashlib
import json
import os

try:
    from firmware.boot import preau_updater as U
except ImportError:  # the VM: tests/mpvm installs firmware/boot as `fwboot`
    from fwboot import preau_updater as U  # pyright: ignore[reportMissingImports]

try:
    from ubinascii import hexlify
except ImportError:
    from binascii import hexlify

from ._util import fresh, raises, wipe

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CFG = {"school": "0341234a", "room": "cm2-b", "key": hexlify(KEY).decode()}
TOPIC = "preau/v1/0341234a/cm2-b/ota"
BASE = "http://gw.test:8080/ota/blobs/"
MANIFEST_URL = "http://gw.test:8080/ota/cm2-b/u-7/manifest"

OLD = {"firmware/app.mpy": b"old app " * 40, "firmware/main.mpy": b"old main " * 30, "protocol/wire.mpy": b"old wire"}
NEW = {"firmware/app.mpy": b"new app " * 50, "firmware/main.mpy": b"new main " * 20, "firmware/kit.mpy": b"new kit",
       "protocol/wire.mpy": b"new wire " * 3}


class Reset(BaseException):
    pass


class Cut(BaseException):
    """The power goes: nothing after this runs."""


def sha(data):
    return hexlify(hashlib.sha256(data).digest()).decode()


def signed(body, key=KEY, topic=TOPIC):
    raw = json.dumps(body).encode()
    return raw[:-1] + b',"mac":"' + U.mac_of(key, topic, raw) + b'"}'


def manifest(files=NEW, order_id="u-7", version="0.2.0", key=KEY):
    return signed({"v": 1, "id": order_id, "version": version, "base": BASE,
                   "files": [[p, len(d), sha(d)] for p, d in sorted(files.items())]}, key)


class Server:
    """The gateway's HTTP side, as the updater's `fetch` sees it."""

    def __init__(self, raw_manifest, files=NEW, blobs=None):
        self.urls = {MANIFEST_URL: raw_manifest}
        for data in files.values():
            self.urls[BASE + sha(data)] = data
        for digest, data in (blobs or {}).items():
            self.urls[BASE + digest] = data
        self.gets = 0

    def fetch(self, url, limit, sink):
        self.gets += 1
        if url not in self.urls:
            raise OSError(113, "unreachable")
        data = self.urls[url]
        if len(data) > limit:
            raise U.UpdateError("too long")
        if sink is None:
            return data
        for i in range(0, len(data), 64):
            sink(data[i:i + 64])
        return b""


# -- the power: counted steps, and a cut at one of them -------------------------------------


class Power:
    def __init__(self):
        self.n = 0
        self.cut_at = 0

    def step(self):
        self.n += 1
        if self.n == self.cut_at:
            raise Cut()


POWER = Power()


class CutOs:
    # os as the updater uses it: every change to the flash is a step.
    def stat(self, p):
        return os.stat(p)

    def listdir(self, p):
        return os.listdir(p)

    def statvfs(self, p):
        raise OSError(95, "not in this test")

    def rename(self, a, b):
        POWER.step()
        os.rename(a, b)

    def remove(self, p):
        POWER.step()
        os.remove(p)

    def mkdir(self, p):
        POWER.step()
        os.mkdir(p)

    def rmdir(self, p):
        POWER.step()
        os.rmdir(p)


class CutFile:
    def __init__(self, f):
        self.f = f

    def write(self, data):
        POWER.n += 1
        if POWER.n == POWER.cut_at:
            self.f.write(data[:len(data) // 2])  # torn: half of it reached the flash
            raise Cut()
        return self.f.write(data)

    def read(self, *args):
        return self.f.read(*args)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.f.close()


def cut_open(path, mode="r"):
    f = open(path, mode)
    return CutFile(f) if "w" in mode else f


HOME = os.getcwd()


# -- the board around the updater -----------------------------------------------------------------


def install(root, files):
    for path, data in files.items():
        package = path.split("/")[0]
        try:
            os.mkdir(root + "/" + package)
        except OSError:
            pass
        with open(root + "/" + path, "wb") as f:
            f.write(data)


def flashed(name):
    """A board as `preau flash` leaves it, in a folder of its own; the
    working directory is that folder (the board runs from /)."""
    d = fresh(name)
    install(d, OLD)
    os.chdir(d)
    U.os = CutOs()  # the updater's flash, through the power switch
    U.open = cut_open
    with open("config.json", "w") as f:
        f.write(json.dumps(CFG))
    return d


def leave(d):
    U.os = os
    del U.open
    os.chdir(HOME)
    wipe(d)


def order(cmd_id="u-7", url=MANIFEST_URL):
    # What the application writes on the `update` command (firmware/app.py).
    with open(U.ORDER, "w") as f:
        f.write(json.dumps({"v": 1, "id": cmd_id, "cmd": "update", "manifest_url": url}))


def reset():
    raise Reset()


def runs():
    """The firmware the root main.py would import now: {path: bytes}."""
    slot = U.active_slot()
    out = {}
    for package in U.PACKAGES:
        folder = (slot + "/" if slot else "") + package
        for name in os.listdir(folder):
            with open(folder + "/" + name, "rb") as f:
                out[package + "/" + name] = f.read()
    return out


def boot(server, healthy=True, versions=(OLD, NEW)):
    """One boot: the root main.py's updater part, then the firmware; a new
    version on trial confirms (the application's rename when the gateway
    answers), or its deadline resets the board. Returns what happened."""
    for name in (U.ORDER, U.TRIAL):
        if U.exists(name):
            try:
                U.run(CFG, server.fetch, reset)
            except Reset:
                return "reset"
            break
    running = runs()
    assert running in versions, "the board boots neither version: %r" % sorted(running)
    if U.exists(U.TRIAL):
        if healthy and running == versions[-1]:
            os.rename(U.TRIAL, U.RESULT)
            return "confirmed"
        return "deadline"  # firmware/main.py: not confirmed in time, a reset
    return "running"


def until_settled(server, healthy=True, versions=(OLD, NEW), limit=12):
    seen = []
    for _ in range(limit):
        what = boot(server, healthy, versions)
        seen.append(what)
        if what == "running":
            return seen
    raise AssertionError("the board never settles: %r" % seen)


def result():
    with open(U.RESULT) as f:
        return json.loads(f.read())


# -- the tests ------------------------------------------------------------------------------------------


def test_an_update_stages_switches_and_confirms():
    d = flashed("ota_happy")
    try:
        server = Server(manifest())
        order()
        assert until_settled(server) == ["reset", "confirmed", "running"]
        assert runs() == NEW and U.active_slot() == "ota_a"
        r = result()
        assert r["ok"] is True and r["version"] == "0.2.0" and r["id"] == "u-7"
        assert not U.exists(U.ORDER) and not U.exists(U.TRIAL)
        # the flashed version is still there, untouched, and so is the next slot free
        install_check = {}
        for p in OLD:
            with open(p, "rb") as f:
                install_check[p] = f.read()
        assert install_check == OLD
        # a second update goes to the other slot, and keeps this one
        os.remove(U.RESULT)
        newer = dict(NEW)
        newer["firmware/app.mpy"] = b"newer app"
        server2 = Server(manifest(newer, "u-8", "0.3.0"), newer)
        order("u-8")
        assert until_settled(server2, versions=(NEW, newer)) == ["reset", "confirmed", "running"]
        assert runs() == newer and U.active_slot() == "ota_b"
    finally:
        leave(d)


def test_a_corrupt_file_is_refused_and_the_board_keeps_its_version():
    d = flashed("ota_corrupt")
    try:
        server = Server(manifest())
        server.urls[BASE + sha(NEW["firmware/kit.mpy"])] = b"new kiT"  # one byte changed on the way
        order()
        assert until_settled(server) == ["reset", "running"]
        assert runs() == OLD and U.active_slot() == ""
        r = result()
        assert r["ok"] is False and "firmware/kit.mpy" in r["error"] and "SHA-256" in r["error"]
    finally:
        leave(d)


def test_a_manifest_signed_with_another_key_is_refused():
    d = flashed("ota_key")
    try:
        server = Server(manifest(key=OTHER_KEY))
        order()
        assert until_settled(server) == ["reset", "running"]
        assert runs() == OLD
        assert "signature" in result()["error"]
        assert server.gets == 1, "nothing downloaded past the manifest"
    finally:
        leave(d)


def test_a_tampered_or_unsigned_manifest_is_refused():
    for raw, why in ((manifest().replace(b"0.2.0", b"0.2.1"), "signature"),
                     (json.dumps({"v": 1, "id": "u-7"}).encode(), "not signed"),
                     (manifest(order_id="u-6"), "not for this order"),  # a replayed manifest
                     (b"\xff\x00garbage", "not signed")):
        d = flashed("ota_tamper")
        try:
            order()
            assert until_settled(Server(raw)) == ["reset", "running"]
            assert runs() == OLD
            assert why in result()["error"], result()
        finally:
            leave(d)


def test_a_manifest_naming_files_outside_the_firmware_is_refused():
    for path in ("../main.mpy", "firmware/../../config.json", "firmware/x.py", "lib/evil.mpy", "main.mpy"):
        d = flashed("ota_path")
        try:
            files = dict(NEW)
            files[path] = b"evil"
            order()
            assert until_settled(Server(manifest(files), files)) == ["reset", "running"]
            assert runs() == OLD and "outside the firmware" in result()["error"]
        finally:
            leave(d)


def test_an_unreachable_gateway_ends_the_order_with_the_reason():
    d = flashed("ota_unreachable")
    try:
        server = Server(manifest())
        order(url="http://gw.test:8080/ota/cm2-b/u-7/missing")
        assert until_settled(server) == ["reset", "running"]
        assert runs() == OLD and "OSError" in result()["error"]
        assert raises(U.UpdateError, U.check_manifest, {"v": 1, "id": "x"}, "y")
    finally:
        leave(d)


def test_a_version_that_never_reports_healthy_is_rolled_back():
    d = flashed("ota_unhealthy")
    try:
        order()
        assert until_settled(Server(manifest()), healthy=False) == ["reset", "deadline", "running"]
        assert runs() == OLD and U.active_slot() == ""
        r = result()
        assert r["ok"] is False and r["version"] == "0.2.0" and "not healthy" in r["error"]
        assert not U.exists(U.TRIAL)
    finally:
        leave(d)


def test_an_order_during_a_trial_is_refused_and_the_trial_goes_on():
    d = flashed("ota_order_in_trial")
    try:
        order()
        assert boot(Server(manifest())) == "reset"  # staged and switched: on trial now
        assert U.exists(U.TRIAL)
        newer = dict(NEW)
        newer["firmware/app.mpy"] = b"newer app"
        order("u-8")
        assert boot(Server(manifest(newer, "u-8", "0.3.0"), newer)) == "reset"
        assert "on trial" in result()["error"] and runs() == NEW and U.exists(U.TRIAL)
        os.remove(U.RESULT)
        # the trial carries on as if nothing came: unconfirmed, it rolls back
        assert until_settled(Server(manifest()), healthy=False) == ["deadline", "running"]
        assert runs() == OLD
    finally:
        leave(d)


def _cut_everywhere(name, healthy, final):
    # Count the steps of an uncut run, then cut at each one in turn.
    d = flashed(name)
    try:
        POWER.n, POWER.cut_at = 0, 0
        order()
        until_settled(Server(manifest()), healthy)
        steps = POWER.n
    finally:
        leave(d)
    assert steps > 20, steps
    for at in range(1, steps + 1):
        d = flashed(name)
        try:
            POWER.n, POWER.cut_at = 0, at
            order()
            server = Server(manifest())
            seen = []
            for _ in range(12):
                try:
                    what = boot(server, healthy)  # asserts: old or new, whole
                except Cut:
                    what = "cut"
                seen.append(what)
                if what == "running":
                    break
            assert seen[-1] == "running", "cut at step %d: %r" % (at, seen)
            assert runs() == final, "cut at step %d: %r ends on the wrong version" % (at, seen)
            assert not U.exists(U.ORDER) and not U.exists(U.TRIAL)
        finally:
            POWER.cut_at = 0
            leave(d)
    return steps


def test_a_power_cut_at_every_step_of_an_update():
    _cut_everywhere("ota_cut", True, NEW)


def test_a_power_cut_at_every_step_of_a_rollback():
    _cut_everywhere("ota_cut_back", False, OLD)
