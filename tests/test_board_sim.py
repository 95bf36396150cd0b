"""The real firmware on a simulated board, against real brokers (Mosquitto
and amqtt), with a paho client playing the gateway."""

from __future__ import annotations

import pytest

from devkit.sim.classroom import SimClassroom
from tests.helpers import Peer, await_for, run

SCHOOL = "0341234a"


@pytest.fixture
def mosquitto(open_mosquitto):
    """These tests are about the board, with the test playing the gateway on
    an open broker; the locked school broker is for the end-to-end tests
    (test_gateway_*.py, test_school_broker.py)."""
    return open_mosquitto


def board_config(broker, room="cm2-b", **extra):
    # The test plays the gateway: the longest request timeout, so its answer
    # never races the board's own offline decision on a busy machine.
    cfg = {"school": SCHOOL, "room": room, "broker": broker.host, "port": broker.port,
           "keepalive": 10, "request_timeout_ms": 30000, "grace_s": 0}
    cfg.update(extra)
    return cfg


def relay_ever_on(sim: SimClassroom) -> bool:
    return any(sim.relay_history())


def test_press_grant_end_through_a_real_broker(broker, tmp_path):
    peer = Peer(broker.host, broker.port, f"preau/v1/{SCHOOL}/#")
    base = f"preau/v1/{SCHOOL}/cm2-b/"

    async def scenario():
        sim = SimClassroom(board_config(broker), storage=str(tmp_path))
        sim.start()
        birth = await await_for(lambda: [s for s in peer.json_on("/state") if s.get("online")], what="birth")
        assert birth[0]["session"] == "idle" and birth[0]["ap"] is False
        assert not relay_ever_on(sim), "relay energised at boot"
        await await_for(lambda: peer.events("boot"), what="boot event")

        await sim.press(0.2)
        # feedback before any network round trip (press() may return before
        # the firmware's debounce has seen the release, on a busy machine)
        await await_for(lambda: sim.led_mode == "waiting", what="the LED waiting")
        req = (await await_for(lambda: peer.events("lesson.requested"), what="request"))[0]["data"]["req"]
        peer.publish(base + "cmd", {"v": 1, "id": "g-1", "cmd": "grant", "req": req, "duration_s": 600,
                                    "ap": True, "projector": True, "now": 1763900000})
        await await_for(lambda: sim.relay, what="relay on")
        assert sim.led_mode == "on"
        acks = await await_for(lambda: peer.json_on("/ack"), what="ack")
        assert acks[0] == {"v": 1, "id": "g-1", "ok": True, "boot": 0, "result": "started"}

        # QoS 1 redelivery of the same command: acknowledged again, not re-run
        peer.publish(base + "cmd", {"v": 1, "id": "g-1", "cmd": "grant", "req": req, "duration_s": 600,
                                    "ap": True, "projector": True})
        acks = await await_for(lambda: len(peer.json_on("/ack")) == 2 and peer.json_on("/ack"), what="second ack")
        assert acks[1] == acks[0]  # the first result; run again, it would be "stale_request"
        assert len(peer.events("session.started")) == 1

        await sim.press(2.3)  # long press ends it
        await await_for(lambda: not sim.relay, what="relay off")
        ended = await await_for(lambda: peer.events("session.ended"), what="session.ended")
        assert ended[0]["data"]["reason"] == "teacher"
        assert ended[0]["time"] is not None  # the grant carried the gateway's time
        seqs = [e["seq"] for e in peer.events()]
        assert seqs == list(range(1, len(seqs) + 1)), "events gap-free and in order"
        await sim.stop()
        dead = await await_for(lambda: [s for s in peer.json_on("/state") if s.get("online") is False],
                               what="death on clean shutdown")
        assert dead == [{"v": 1, "online": False, "boot": 0, "reason": "shutdown"}]
        assert not sim.relay

    try:
        run(scenario())
    finally:
        peer.close()


def test_bad_commands_are_rejected_and_the_board_goes_on(broker, tmp_path):
    peer = Peer(broker.host, broker.port, f"preau/v1/{SCHOOL}/#")
    base = f"preau/v1/{SCHOOL}/cm2-b/"

    async def scenario():
        sim = SimClassroom(board_config(broker), storage=str(tmp_path))
        sim.start()
        await await_for(lambda: [s for s in peer.json_on("/state") if s.get("online")], what="birth")
        peer.publish(base + "cmd", b"{not json")
        peer.publish(base + "cmd", {"v": 1, "id": "x-1", "cmd": "grant", "req": "3", "duration_s": 60,
                                    "ap": True, "projector": True})
        peer.publish(base + "cmd", {"v": 1, "id": "x-2", "cmd": "selfdestruct"})
        peer.publish(base + "policy", {"v": 1, "start": "yes"}, retain=False)
        rejected = await await_for(lambda: peer.events("cmd.rejected"), what="cmd.rejected")
        assert "JSON" in rejected[0]["data"]["reason"]
        acks = await await_for(lambda: len(peer.json_on("/ack")) >= 2 and peer.json_on("/ack"), what="acks")
        assert {a["id"]: a["error"] for a in acks} == {"x-1": "bad_command", "x-2": "bad_command"}
        await await_for(lambda: sim.app.rejected.get("policy") == 1, what="policy rejection counted")
        assert sim.app.rejected["cmd"] == 3
        # still alive: a press is still asked upstream, the relay stayed off
        await sim.press(0.2)
        await await_for(lambda: peer.events("lesson.requested"), what="request after bad input")
        assert not relay_ever_on(sim)
        await sim.stop()

    try:
        run(scenario())
    finally:
        peer.close()


def test_offline_policy_when_gateway_is_silent_and_last_will(mosquitto, tmp_path):
    peer = Peer(mosquitto.host, mosquitto.port, f"preau/v1/{SCHOOL}/#")
    base = f"preau/v1/{SCHOOL}/cm1-a/"

    async def scenario():
        peer.publish(base + "policy", {"v": 1, "start": True, "max_s": 2, "ap": True}, retain=True)
        sim = SimClassroom(board_config(mosquitto, room="cm1-a", request_timeout_ms=300), storage=str(tmp_path))
        sim.start()
        await await_for(lambda: [s for s in peer.json_on("/state") if s.get("online")], what="birth")
        await await_for(lambda: sim.app.session.policy.get("max_s") == 2, what="retained policy")
        await sim.press(0.2)
        started = (await await_for(lambda: peer.events("session.started"), what="offline start"))[0]["data"]
        assert started["source"] == "offline" and started["duration_s"] == 2
        assert True in sim.relay_history()  # on for those 2 s, however late this test looks
        ended = await await_for(lambda: peer.events("session.ended"), what="end by time")
        assert ended[0]["data"]["reason"] == "time"
        assert not sim.relay
        # the board dies without a clean disconnect: the broker sends its Last Will
        await sim.stop(clean=False)
        will = await await_for(lambda: [s for s in peer.json_on("/state") if s.get("online") is False],
                               timeout=30, what="last will")
        assert will[-1] == {"v": 1, "online": False, "boot": 0}

    try:
        run(scenario())
    finally:
        peer.close()


@pytest.mark.parametrize("bad, message", [
    ({"room": "cm2-b", "broker": "x"}, "key 'school' missing"),
    ({"school": "S!", "room": "cm2-b", "broker": "x"}, "key 'school'"),
    ({"school": "s", "room": "r", "broker": "x", "port": "1883"}, "key 'port': expected an integer"),
    ({"school": "s", "room": "r", "broker": "x", "colour": 1}, "unknown key 'colour'"),
])
def test_wrong_board_config_names_the_key(bad, message):
    from firmware.config import ConfigError, validate

    with pytest.raises(ConfigError, match=message):
        validate(bad)
