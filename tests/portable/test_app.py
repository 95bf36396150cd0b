# The application's handling of the gateway's commands (firmware/app.py), with
# the MQTT link down: acks queue in the app, events in the flash outbox. Runs
# under CPython and in the MicroPython VM.
import json
import os

from firmware.app import Classroom
from firmware.button import SHORT
from firmware.config import validate
from firmware.session import ACTIVE, IDLE

from ._util import FakeClock, fresh, wipe


class FakeBoard:
    """The outputs and the button as firmware/board.py gives them; no
    projector, no kit."""

    name = "fake"
    devices = ["button", "led", "ap_relay"]

    def __init__(self):
        self.relay = False

    def set_relay(self, on):
        self.relay = bool(on)

    def set_led(self, on):
        pass

    def button_pressed(self):
        return False

    def on_button_edge(self, handler):
        pass

    def reset_cause(self):
        return "power_on"

    def i2c(self):
        return None


def classroom(storage):
    cfg = validate({"school": "0341234a", "room": "cm2-b", "broker": "127.0.0.1", "grace_s": 0})
    return Classroom(cfg, FakeBoard(), storage=storage, clock=FakeClock(), log=lambda msg: None)


def command(app, cmd):
    app._on_message(app.t_cmd.encode(), json.dumps(cmd).encode(), False)


def sent_types(app):
    """The types of the events in the outbox, emptying it."""
    out = []
    while True:
        rec = app.outbox.peek()
        if rec is None:
            return out
        out.append(json.loads(rec[1])["type"])
        app.outbox.pop()


def test_a_redelivered_command_is_acked_again_with_its_first_result_and_run_once():
    # QoS 1: the broker sends a command again when our PUBACK did not reach
    # it. docs/protocol.md: acknowledged again with the first result, not run again.
    d = fresh("redelivery")
    app = classroom(d)
    app.on_press(SHORT, 0)
    grant = {"v": 1, "id": "g-1", "cmd": "grant", "req": app.session.req, "duration_s": 600, "ap": True,
             "projector": False}
    command(app, grant)
    first = {"v": 1, "id": "g-1", "ok": True, "boot": 0, "result": "started"}
    assert app._acks_out == [first]
    app.clock.now = 1000
    command(app, grant)
    assert app._acks_out == [first, first]  # run again, it would say "stale_request"
    assert sent_types(app).count("session.started") == 1

    # The gateway ends the lesson, the teacher starts the next one, then the
    # broker delivers the old `end` again: the new lesson goes on.
    end = {"v": 1, "id": "e-1", "cmd": "end"}
    command(app, end)
    assert app.session.state == IDLE and not app.board.relay
    app.clock.now = 5000
    app.on_press(SHORT, 5000)
    command(app, {"v": 1, "id": "g-2", "cmd": "grant", "req": app.session.req, "duration_s": 600, "ap": True,
                  "projector": False})
    app.clock.now = 6000
    command(app, end)
    assert app.session.state == ACTIVE and app.board.relay
    assert [a["id"] for a in app._acks_out] == ["g-1", "g-1", "e-1", "g-2", "e-1"]
    assert app._acks_out[4] == app._acks_out[2] == {"v": 1, "id": "e-1", "ok": True, "boot": 0, "result": "ended"}
    assert sent_types(app).count("session.ended") == 1
    wipe(d)


def test_the_update_command_waits_for_the_lesson_then_orders_the_updater():
    # docs/ota.md: never during a lesson; else the command, as it came, is
    # the updater's order, and the board reboots into it.
    d = fresh("update_cmd")
    app = classroom(d)
    app.on_press(SHORT, 0)
    command(app, {"v": 1, "id": "g-1", "cmd": "grant", "req": app.session.req, "duration_s": 600, "ap": True,
                  "projector": False})
    update = {"v": 1, "id": "u-1", "cmd": "update", "manifest_url": "http://10.0.0.2:8080/ota/cm2-b/u-1/manifest"}
    command(app, update)
    assert app._acks_out[-1] == {"v": 1, "id": "u-1", "ok": False, "boot": 0, "error": "session_running"}
    assert not app._reboot and "preau_ota.json" not in os.listdir(d)
    command(app, {"v": 1, "id": "e-1", "cmd": "end"})
    update["id"] = "u-2"
    command(app, update)
    assert app._acks_out[-1]["result"] == "update_ordered" and app._reboot
    with open(d + "/preau_ota.json") as f:
        assert json.loads(f.read()) == update
    # a command without its address is refused by the codec, not stored
    command(app, {"v": 1, "id": "u-3", "cmd": "update"})
    assert app._acks_out[-1] == {"v": 1, "id": "u-3", "ok": False, "boot": 0, "error": "bad_command"}
    wipe(d)


def test_the_gateways_time_confirms_a_version_on_trial_and_the_next_boot_says_so():
    d = fresh("update_trial")
    with open(d + "/preau_trial.json", "w") as f:
        f.write('{"ok": true, "id": "u-2", "version": "0.2.0", "slot": "ota_a", "prev": "", "boots": 1}')
    app = classroom(d)
    app.clock.set_time = lambda unix: None  # FakeClock keeps no wall time
    command(app, {"v": 1, "id": "t-1", "cmd": "time", "now": 1795000000})
    assert app._acks_out[-1]["result"] == "time_set, update confirmed"
    assert "preau_trial.json" not in os.listdir(d)
    command(app, {"v": 1, "id": "t-2", "cmd": "time", "now": 1795000100})
    assert app._acks_out[-1]["result"] == "time_set"  # nothing on trial any more
    sent_types(app)
    app = classroom(d)  # the next boot: the outcome in its boot event, once
    boot = json.loads(app.outbox.peek()[1])
    assert boot["type"] == "boot" and json.loads(boot["data"]["update"])["version"] == "0.2.0"
    assert "preau_ota_result.json" not in os.listdir(d)
    wipe(d)


def test_the_gateways_committed_to_is_taken_not_acknowledged():
    # docs/outbox.md: the gateway's word that it stored the room's events up
    # to (boot, seq); an acknowledgement itself, never acknowledged.
    d = fresh("committed_to")
    app = classroom(d)
    assert app.acked is None  # until the first word, the broker's PUBACK is enough
    command(app, {"v": 1, "id": "c", "cmd": "committed_to", "boot": 3, "seq": 41})
    assert app.acked == (3, 41) and app._acks_out == []
    command(app, {"v": 1, "id": "c", "cmd": "committed_to", "boot": 3})  # no seq: refused, said
    assert app.acked == (3, 41) and app._acks_out[-1]["error"] == "bad_command"
    wipe(d)
