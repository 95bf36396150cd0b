"""The complete board in the simulator, against a real broker: the real
firmware drives a simulated projector over a pseudo-terminal, reads a kit on
a simulated I2C bus, keeps its events in the flash outbox across a power
cut, and is reset by its watchdog when its loop hangs."""

import asyncio

import pytest

from devkit.brokers import Mosquitto, free_port
from devkit.sim.classroom import SimClassroom
from devkit.sim.i2c import SimI2C, SimKit
from devkit.sim.machine import SimMachine
from devkit.sim.projector import EpsonSim
from tests.helpers import Peer, await_for, run
from tests.test_board_sim import SCHOOL, board_config

pytestmark = pytest.mark.broker


@pytest.fixture
def mosquitto(open_mosquitto):
    """These tests are about the board, with the test playing the gateway on
    an open broker; the locked school broker is for the end-to-end tests
    (test_gateway_*.py, test_school_broker.py)."""
    return open_mosquitto


def grant(peer, room, req, cid, **extra):
    body = {"v": 1, "id": cid, "cmd": "grant", "req": req, "duration_s": 600, "ap": True, "projector": True,
            "now": 1_795_000_000} | extra
    peer.publish(f"preau/v1/{SCHOOL}/{room}/cmd", body)


def test_session_drives_the_projector_over_rs232(mosquitto, tmp_path):
    peer = Peer(mosquitto.host, mosquitto.port, f"preau/v1/{SCHOOL}/#")
    projector = EpsonSim(speed=100)

    async def scenario():
        sim = SimClassroom(board_config(mosquitto, projector="epson-escvp21"), storage=str(tmp_path),
                           projector=projector)
        sim.start()
        birth = await await_for(lambda: [s for s in peer.json_on("/state") if s.get("online")], what="birth")
        assert "projector" in birth[0]["devices"]
        await sim.press(0.2)
        req = (await await_for(lambda: peer.events("lesson.requested"), what="request"))[0]["data"]["req"]
        grant(peer, "cm2-b", req, "g-1")
        # the firmware sends the table's frame on the serial line; the lamp lights
        await await_for(lambda: projector.power in ("warming", "on"), what="projector powered on")
        assert b"PWR ON\r" in projector.frames
        await await_for(lambda: projector.power == "on", what="the lamp warm")  # the simulator's 100x time
        await sim.press(2.3)  # the teacher ends the lesson
        # The driver holds the off for the table's 30 s warm-up, on the board's
        # clock: moved on rather than waited for.
        sim.advance(30_000)
        await await_for(lambda: projector.power in ("cooling", "off"), what="projector off")
        assert projector.frames.count(b"PWR OFF\r") == 1
        states = await await_for(lambda: [e["data"]["state"] for e in peer.events("projector.changed")],
                                 what="projector state reported")
        assert states[0] in ("off", "warming", "on", "cooling")
        await sim.stop()

    try:
        run(scenario(), timeout=90)
    finally:
        projector.close()
        peer.close()


def test_kit_plugged_read_and_air_hint_then_unplugged(mosquitto, tmp_path):
    peer = Peer(mosquitto.host, mosquitto.port, f"preau/v1/{SCHOOL}/#")
    bus = SimI2C()

    async def scenario():
        sim = SimClassroom(board_config(mosquitto, co2_alert_ppm=1000, tele_s=5), storage=str(tmp_path), kit_bus=bus)
        sim.start()
        await await_for(lambda: peer.events("boot"), what="boot event")
        kit = bus.attach(SimKit("air-co2-01"))
        kit.scd4x.co2 = 1450
        attached = await await_for(lambda: peer.events("kit.attached"), timeout=20, what="kit.attached")
        assert attached[0]["data"] == {"kit": "air-co2-01", "sensors": ["scd4x"]}
        alert = await await_for(lambda: peer.events("air.alert"), timeout=30, what="air alert")
        assert alert[0]["data"] == {"co2": 1450, "on": True}
        assert sim.led_mode == "air"  # idle, gateway reachable: the hint shows
        tele = await await_for(lambda: [t for t in peer.json_on("/tele") if "air" in t], timeout=20, what="readings")
        assert tele[-1]["air"]["co2"] == 1450
        bus.detach()
        detached = await await_for(lambda: peer.events("kit.detached"), timeout=20, what="kit.detached")
        assert detached[0]["data"]["kit"] == "air-co2-01"
        await sim.stop()

    try:
        run(scenario(), timeout=120)
    finally:
        peer.close()


def test_events_kept_in_flash_through_a_power_cut_then_sent_in_order(tmp_path):
    port = free_port()  # no broker there yet: the school's network is down

    async def scenario():
        sim = SimClassroom({"school": SCHOOL, "room": "cm2-b", "broker": "127.0.0.1", "port": port,
                            "request_timeout_ms": 300, "grace_s": 0}, storage=str(tmp_path))
        sim.start()
        await sim.press(0.2)  # alone: the offline policy's session
        await await_for(lambda: sim.app.session.state == "active", what="offline session")
        await sim.press(2.3)
        await await_for(lambda: sim.app.session.state == "idle", what="ended by the teacher")
        queued = len(sim.app.outbox)
        assert queued >= 6  # boot, presses, request, start, end...
        await sim.stop(clean=False)  # power cut
        broker = Mosquitto(port=port).start()
        peer = Peer(broker.host, broker.port, f"preau/v1/{SCHOOL}/#")
        try:
            sim.boot()  # power back: the outbox reopens from flash
            sim.start()
            await await_for(lambda: len(peer.events()) >= queued + 1, timeout=30, what="backlog sent")
            first_boot = [e for e in peer.events() if e["boot"] == 0]
            assert [e["seq"] for e in first_boot] == list(range(1, queued + 1)), "in order, none lost"
            assert [e["type"] for e in first_boot][-1] == "session.ended"
            await await_for(lambda: not len(sim.app.outbox), what="outbox drained")
            await sim.stop()
        finally:
            peer.close()
            broker.stop()

    run(scenario(), timeout=90)


def test_watchdog_resets_a_hung_board_and_the_access_point_comes_back_off(mosquitto, tmp_path):
    peer = Peer(mosquitto.host, mosquitto.port, f"preau/v1/{SCHOOL}/#")

    async def scenario():
        sim = SimClassroom(board_config(mosquitto, wdt_ms=2000), storage=str(tmp_path))
        sim.start()
        await await_for(lambda: peer.events("boot"), what="boot event")
        await sim.press(0.2)
        req = (await await_for(lambda: peer.events("lesson.requested"), what="request"))[0]["data"]["req"]
        grant(peer, "cm2-b", req, "g-1")
        await await_for(lambda: sim.relay, what="access point on")
        hung = sim.machine
        sim.hang(3.0)  # the loop is stuck: nothing feeds the watchdog
        assert hung.wdt_fired and not sim.relay_history(hung)[-1], "outputs dropped at the reset"
        await await_for(lambda: sim.machine is not hung, what="reboot")
        assert sim.relay_history()[0] is False and not sim.relay
        boots = await await_for(lambda: [e for e in peer.events("boot") if e["boot"] == 1], what="second boot")
        assert boots[0]["data"]["reset_cause"] == "watchdog"
        assert sim.machine.reset_cause() == SimMachine.WDT_RESET
        birth = await await_for(lambda: [s for s in peer.json_on("/state") if s.get("online") and s["boot"] == 1],
                                what="the second boot online")
        assert birth[0]["session"] == "idle" and birth[0]["ap"] is False  # no session survives a reset
        assert not any(sim.relay_history())
        await sim.stop()

    try:
        run(scenario(), timeout=60)
    finally:
        peer.close()


def test_reboot_command_restarts_one_board_and_the_others_keep_running(mosquitto, tmp_path):
    peer = Peer(mosquitto.host, mosquitto.port, f"preau/v1/{SCHOOL}/#")

    async def scenario():
        a = SimClassroom(board_config(mosquitto, room="cm1-a"), storage=str(tmp_path / "a"))
        b = SimClassroom(board_config(mosquitto, room="cm1-b"), storage=str(tmp_path / "b"))
        a.start()
        b.start()
        await await_for(lambda: len(peer.events("boot")) == 2, what="both boots")
        await a.press(0.2)
        req = (await await_for(lambda: peer.events("lesson.requested"), what="request"))[0]["data"]["req"]
        grant(peer, "cm1-a", req, "g-1")
        await await_for(lambda: a.relay, what="access point on")
        first = a.machine
        peer.publish(f"preau/v1/{SCHOOL}/cm1-a/cmd", {"v": 1, "id": "r-1", "cmd": "reboot"})
        await await_for(lambda: a.machine is not first, what="reboot")
        assert first.halted and not a.relay_history(first)[-1], "relay off at the reset"
        boots = await await_for(lambda: [e for e in peer.events("boot") if e["boot"] == 1], what="second boot")
        assert boots[0]["data"]["reset_cause"] == "soft"
        acks = [x for x in peer.json_on("/ack") if x["id"] == "r-1"]
        assert acks and acks[0]["result"] == "rebooting"  # acknowledged before the restart
        assert not a.relay
        await b.press(0.2)  # the other board is still alive on the same loop
        await await_for(lambda: [e for e in peer.json_on("/cm1-b/evt") if e["type"] == "lesson.requested"],
                        what="the other board's request")
        await a.stop()
        await b.stop()

    try:
        run(scenario(), timeout=60)
    finally:
        peer.close()


def test_pjlink_projector_driven_over_tcp_with_its_password(mosquitto, tmp_path):
    from devkit.sim.projector import PJLinkSim

    peer = Peer(mosquitto.host, mosquitto.port, f"preau/v1/{SCHOOL}/#")
    projector = PJLinkSim(speed=100, password="salle-12")

    async def scenario():
        sim = SimClassroom(board_config(mosquitto, projector="pjlink", projector_host="127.0.0.1",
                                        projector_password="salle-12"), storage=str(tmp_path), projector=projector)
        sim.start()
        await sim.press(0.2)
        req = (await await_for(lambda: peer.events("lesson.requested"), what="request"))[0]["data"]["req"]
        grant(peer, "cm2-b", req, "g-1")
        await await_for(lambda: projector.power in ("warming", "on"), what="projector on over PJLink")
        await sim.stop()

    try:
        run(scenario(), timeout=60)
    finally:
        projector.close()
        peer.close()


def test_shutdown_ignores_presses_and_a_late_grant(mosquitto, tmp_path):
    peer = Peer(mosquitto.host, mosquitto.port, f"preau/v1/{SCHOOL}/#")

    async def scenario():
        sim = SimClassroom(board_config(mosquitto), storage=str(tmp_path))
        sim.start()
        await await_for(lambda: peer.events("boot"), what="boot event")
        await sim.press(0.2)
        await await_for(lambda: peer.events("lesson.requested"), what="request")
        before = len(sim.relay_history())
        stopping = asyncio.create_task(sim.app.shutdown())
        await asyncio.sleep(0)
        assert sim.app.session.state == "idle"  # the pending request was given up
        sim.app.session.press_short(sim.app.clock.uptime_ms())  # a request sneaks in...
        sim.app.session.grant(sim.app.session.req, 600, True, True, sim.app.clock.uptime_ms())  # ...and its grant
        sim.app.apply(sim.app.clock.uptime_ms())
        assert not sim.relay and sim.app.session.state == "idle"
        await sim.press(0.2)
        assert sim.app.session.state == "idle"
        await stopping
        await sim.stop(clean=False)
        assert not any(sim.relay_history()[before:]), "the relay came on during the shutdown"

    try:
        run(scenario(), timeout=60)
    finally:
        peer.close()


def test_a_board_restarts_when_idle_before_its_uptime_leaves_small_ints(mosquitto, tmp_path):
    peer = Peer(mosquitto.host, mosquitto.port, f"preau/v1/{SCHOOL}/#")

    async def scenario():
        sim = SimClassroom(board_config(mosquitto), storage=str(tmp_path))
        sim.start()
        await await_for(lambda: peer.events("boot"), what="boot event")
        first = sim.machine
        clock = sim.app.clock
        real = clock.uptime_ms
        clock.uptime_ms = lambda: real() + 2**29  # six days later
        await await_for(lambda: sim.machine is not first, what="restart")
        boots = await await_for(lambda: [e for e in peer.events("boot") if e["boot"] == 1], what="second boot")
        assert boots[0]["data"]["reset_cause"] == "soft"
        await sim.stop()

    try:
        run(scenario(), timeout=60)
    finally:
        peer.close()
