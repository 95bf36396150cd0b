"""A technician's commands to a board through the gateway's API, end to end:
the real firmware in the MicroPython VM on the locked school broker, the real
gateway and its API. Identify blinks the LED, end ends the session, reboot
restarts the board; each is audited and its ack can be followed."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from devkit.sim.classroom import SimClassroom
from devkit.testing import school_clock
from edge_gateway.api import ApiSettings, create_app
from edge_gateway.config import Config
from edge_gateway.gateway import Gateway
from edge_gateway.history import read_audit
from tests.helpers import await_for

pytestmark = pytest.mark.broker

DIRECTOR = {"Authorization": "Bearer director-token-0123456789"}
VIEWER = {"Authorization": "Bearer viewer-token-0123456789"}


@pytest.fixture
def gateway(mosquitto, tmp_path):
    config = Config.from_dict(mosquitto.config(str(tmp_path)) | {
        "rooms": {"cm2-b": {"wifi": "allowed"}, "cp-a": {"wifi": "allowed"}}, "policy": {"zone": "C"}})
    gw = Gateway(config, clock=school_clock(), reconnect_max_s=1).start()
    yield gw
    gw.stop()


@pytest.fixture
def api(gateway):
    return TestClient(create_app(gateway, ApiSettings(token=DIRECTOR["Authorization"][7:],
                                                      viewer_token=VIEWER["Authorization"][7:])))


def test_identify_end_and_reboot_from_the_api(gateway, api, mosquitto, tmp_path):
    async def scenario():
        sim = SimClassroom(mosquitto.board_config("cm2-b"), storage=str(tmp_path / "board"))
        sim.start()
        await await_for(lambda: gateway.rooms()["cm2-b"]["online"] and sim.app.clock.time() is not None,
                        timeout=20, what="the board online, with the time")

        async def command(action: str, **body) -> dict:
            r = await asyncio.to_thread(api.post, f"/api/rooms/cm2-b/board/{action}", headers=DIRECTOR,
                                        json=body or None)
            assert r.status_code == 202, r.text
            sent = r.json()
            # `online` is the registry's view when sent; under load the board may be between its
            # Last Will and its next birth, and gets the command from the broker all the same.
            assert sent["cmd"] == action and isinstance(sent["online"], bool)

            def result() -> dict | None:
                got = api.get(f"/api/rooms/cm2-b/board/commands/{sent['id']}", headers=DIRECTOR).json()
                return got if got.get("acked") else None

            return await await_for(result, timeout=20, what=f"the board's ack of {action}")

        done = await command("identify", seconds=5, who="technicien")
        assert done["ok"] is True and done["result"] == "identifying"
        assert sim.led_mode == "identify"

        await sim.press(0.2)  # a session, granted by the gateway
        await await_for(lambda: sim.app.session.state == "active", what="a session")
        done = await command("end")
        assert done["ok"] is True
        await await_for(lambda: sim.app.session.state == "idle" and not sim.relay, what="the session ended")

        first = sim.machine
        done = await command("reboot")
        assert done["ok"] is True and done["result"] == "rebooting"  # acknowledged before the restart
        await await_for(lambda: sim.machine is not first, timeout=20, what="the reboot")
        await await_for(lambda: gateway.rooms()["cm2-b"]["boot"] == sim.app.boot, timeout=20,
                        what="the new boot's birth at the gateway")
        await sim.stop()

    asyncio.run(asyncio.wait_for(scenario(), 90))
    actions = [a["action"] for a in read_audit(gateway.config.db, 10)]
    assert {"board.identify", "board.end", "board.reboot"} <= set(actions)


def test_board_commands_need_the_directors_token_and_a_known_room(api):
    assert api.post("/api/rooms/cm2-b/board/identify", headers=VIEWER).status_code == 403
    assert api.post("/api/rooms/cm2-b/board/identify").status_code == 401
    assert api.post("/api/rooms/cm9-z/board/identify", headers=DIRECTOR).status_code == 404
    assert api.post("/api/rooms/cm2-b/board/format", headers=DIRECTOR).status_code == 422
    assert api.post("/api/rooms/cm2-b/board/identify", headers=DIRECTOR,
                    json={"seconds": 3600}).status_code == 422
    assert api.get("/api/rooms/cm2-b/board/commands/b-1-999", headers=DIRECTOR).status_code == 404
    # offline: sent all the same (the broker keeps it for the board), said so
    r = api.post("/api/rooms/cp-a/board/reboot", headers=DIRECTOR)
    assert r.status_code == 202 and r.json()["online"] is False


def test_preau_board_from_the_command_line(gateway, mosquitto, tmp_path, monkeypatch, capsys):
    """`preau board identify ROOM`, as a technician types it, against the
    gateway's API served over HTTP; the token only from the environment."""
    from devkit.http import HttpThread
    from edge_gateway.board_cli import main as board

    token = DIRECTOR["Authorization"][7:]
    http = HttpThread(create_app(gateway, ApiSettings(token=token)), "127.0.0.1", 0, name="gw-http")
    conf = tmp_path / "school.toml"
    conf.write_text(f'school = "0341234a"\ngateway_id = "gw-test"\ndb = "{tmp_path / "gw.sqlite"}"\n'
                    f'fleet = "{mosquitto.fleet_file}"\n[school_broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n'
                    f'[http]\nbind = "127.0.0.1:{http.port}"\n[policy]\nzone = "C"\n'
                    '[rooms.cm2-b]\nwifi = "allowed"\n[rooms.cp-a]\nwifi = "allowed"\n')
    try:
        monkeypatch.delenv("PREAU_GATEWAY_TOKEN", raising=False)
        assert board(["--config", str(conf), "identify", "cm2-b"]) == 2
        assert "set PREAU_GATEWAY_TOKEN" in capsys.readouterr().err
        monkeypatch.setenv("PREAU_GATEWAY_TOKEN", "not-the-token-0123456789")
        assert board(["--config", str(conf), "identify", "cm2-b"]) == 2
        assert "refused the token" in capsys.readouterr().err
        monkeypatch.setenv("PREAU_GATEWAY_TOKEN", token)
        assert board(["--config", str(conf), "identify", "cm9-z"]) == 2
        assert "not in school.toml" in capsys.readouterr().err

        async def scenario() -> int:
            sim = SimClassroom(mosquitto.board_config("cm2-b"), storage=str(tmp_path / "board"))
            sim.start()
            await await_for(lambda: gateway.rooms()["cm2-b"]["online"], timeout=20, what="the board online")
            code = await asyncio.to_thread(board, ["--config", str(conf), "identify", "cm2-b", "--seconds", "3"])
            assert sim.led_mode == "identify"
            await sim.stop()
            return code

        assert asyncio.run(asyncio.wait_for(scenario(), 60)) == 0
        out = capsys.readouterr().out
        assert "identify sent to cm2-b" in out and "cm2-b: done (identifying)" in out
        assert token not in out
    finally:
        http.stop()
