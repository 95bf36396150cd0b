# Projector driver logic (firmware/projector.py, firmware/pjlink.py): frames,
# reply parsing for the three protocols, and the power rules, driven step by
# step with time passed in. Runs under CPython and in the MicroPython VM
# (tests/test_fw_vm.py): plain asserts only. The tables below are
# board_table() of hardware/projectors/*.json (the VM cannot read that
# folder); tests/test_projector.py checks they have not drifted. parse()
# takes the board list and a command number: 0 on, 1 off, 2 power, 3 lamp,
# 4 errors.
from firmware.pjlink import md5_hex
from firmware.projector import Projector, SerialLink, parse

EPSON = {'io': 'serial', 'baud': 9600, 'p': ['PWR ON\r', 'PWR OFF\r', 'PWR?\r', 'LAMP?\r', 'ERR?\r', 40000, 50000, 3000, 3000, 3000, 'PWR=', 'LAMP=', 'ERR=', ':', ' 00:0 01:1 02:2 03:3 04:0 05:4 09:0', 30000, 20000, 'r', 'ERR\r']}
BENQ = {'io': 'serial', 'baud': 9600, 'p': ['\r*pow=on#\r', '\r*pow=off#\r', '\r*pow=?#\r', '\r*ltim=?#\r', '', 2000, 2000, 2000, 2000, 2000, '*POW=', '*LTIM=', '', '#', ' ON:1 OFF:0', 30000, 90000, 'uur', '*Illegal format#', '*Unsupported item#', 'Block item#']}
PJLINK = {'io': 'tcp', 'port': 4352, 'p': ['%1POWR 1\r', '%1POWR 0\r', '%1POWR ?\r', '%1LAMP ?\r', '%1ERST ?\r', 2000, 2000, 2000, 2000, 2000, '%1POWR=', '%1LAMP=', '%1ERST=', '\r', ' 0:0 1:1 2:3 3:2', 30000, 20000, 'uurfa', '=ERR1', '=ERR2', '=ERR3', '=ERR4', 'PJLINK ERRA']}

TABLES = {"epson-escvp21": EPSON, "benq": BENQ, "pjlink": PJLINK}
ON, OFF, POWER, LAMP, ERRORS = 0, 1, 2, 3, 4


class FakeLink:
    """Answers from a function of the frame; None: silence (OSError)."""

    def __init__(self, answer):
        self.answer = answer
        self.sent = []

    async def exchange(self, frame, timeout_ms, end):
        self.sent.append(frame)
        reply = self.answer(frame)
        if reply is None:
            raise OSError("no reply")
        return reply


class EpsonDevice:
    """Just enough of an Epson to drive the rules: the test sets `code`."""

    def __init__(self, code="04"):
        self.code = code
        self.error = "00"
        self.silent = False

    def __call__(self, frame):
        if self.silent:
            return None
        if frame == b"PWR?\r":
            return b"PWR=" + self.code.encode() + b"\r:"
        if frame == b"LAMP?\r":
            return b"LAMP=1500\r:"
        if frame == b"ERR?\r":
            return b"ERR=" + self.error.encode() + b"\r:"
        if frame == b"PWR ON\r":
            if self.code in ("02", "03"):
                return b"ERR\r:"
            self.code = "02"
            return b":"
        if frame == b"PWR OFF\r":
            if self.code in ("02", "03"):
                return b"ERR\r:"
            self.code = "03"
            return b":"
        return b"ERR\r:"


def make(device=None, table=EPSON, **kw):
    device = device or EpsonDevice()
    link = FakeLink(device)
    events = []
    p = Projector(table, link, lambda kind, data: events.append((kind, data)), **kw)
    return p, device, link, events


def test_parse_epson():
    f = b"PWR?\r"
    assert parse(EPSON["p"], POWER, f, b"PWR=01\r:") == (True, "on")
    assert parse(EPSON["p"], POWER, f, b"PWR=02\r:") == (True, "warming")
    assert parse(EPSON["p"], POWER, f, b"PWR=04\r:") == (True, "off")
    assert parse(EPSON["p"], LAMP, b"LAMP?\r", b"LAMP=1234\r:") == (True, 1234)
    assert parse(EPSON["p"], ON, b"PWR ON\r", b":") == (True, None)
    assert parse(EPSON["p"], ON, b"PWR ON\r", b"ERR\r:") == (False, None)
    assert parse(EPSON["p"], ERRORS, b"ERR?\r", b"ERR=04\r:") == (True, ["err:04"])
    assert parse(EPSON["p"], POWER, f, b"\x7f?Z\r:") == (False, "bad reply")
    assert parse(EPSON["p"], POWER, f, b"PWR=\xff\r:") == (False, "bad reply")  # not text
    assert parse(EPSON["p"], POWER, f, b"PWR=77\r:") == (False, "bad reply")  # no such state
    assert parse(EPSON["p"], LAMP, b"LAMP?\r", b"LAMP=\r:") == (False, "bad reply")
    assert parse(EPSON["p"], LAMP, b"LAMP?\r", b"LAMP=12x\r:") == (False, "bad reply")


def test_parse_benq_skips_the_echo():
    assert parse(BENQ["p"], POWER, b"\r*pow=?#\r", b"*pow=?#\r\n*POW=ON#\r\n") == (True, "on")
    assert parse(BENQ["p"], POWER, b"\r*pow=?#\r", b"*POW=OFF#\r\n") == (True, "off")  # echo off
    assert parse(BENQ["p"], LAMP, b"\r*ltim=?#\r", b"*ltim=?#\r\n*LTIM=987#\r\n") == (True, 987)
    assert parse(BENQ["p"], OFF, b"\r*pow=off#\r", b"*pow=off#\r\n*Block item#\r\n") == (False, None)
    # A TK700STi refuses the power query while cooling with its item name
    # (arendst/Tasmota#15841): refused, not a bad reply.
    assert parse(BENQ["p"], POWER, b"\r*pow=?#\r", b">*pow=?#\r\r\n*POW=Block item#\r\n")[1] != "bad reply"
    assert parse(BENQ["p"], ON, b"\r*pow=on#\r", b"*pow=on#\r\n*POW=ON#\r\n") == (True, None)
    assert parse(BENQ["p"], ON, b"\r*pow=on#\r", b"*Unsupported item#") == (False, "unsupported on")


def test_parse_pjlink():
    assert parse(PJLINK["p"], POWER, b"%1POWR ?\r", b"%1POWR=3\r") == (True, "warming")
    assert parse(PJLINK["p"], ON, b"%1POWR 1\r", b"%1POWR=ERR3\r") == (False, None)
    assert parse(PJLINK["p"], ON, b"%1POWR 1\r", b"%1POWR=OK\r") == (True, None)
    assert parse(PJLINK["p"], POWER, b"%1POWR ?\r", b"PJLINK ERRA\r") == (False, "auth")
    assert parse(PJLINK["p"], LAMP, b"%1LAMP ?\r", b"%1LAMP=1234 1 56 0\r") == (True, 1234)  # hours of lamp 1
    assert parse(PJLINK["p"], ERRORS, b"%1ERST ?\r", b"%1ERST=ERR4\r") == (False, "projector failure")


def test_state_codes_match_whole():
    f = b"PWR?\r"
    for value in (b"0", b"1", b"001", b"0 01", b"", b" "):
        assert parse(EPSON["p"], POWER, f, b"PWR=" + value + b"\r:") == (False, "bad reply"), value
    assert parse(BENQ["p"], POWER, b"\r*pow=?#\r", b"*POW=N#") == (False, "bad reply")
    assert parse(BENQ["p"], POWER, b"\r*pow=?#\r", b"*POW=OF#") == (False, "bad reply")
    assert parse(PJLINK["p"], POWER, b"%1POWR ?\r", b"%1POWR=2\r") == (True, "cooling")
    assert parse(PJLINK["p"], POWER, b"%1POWR ?\r", b"%1POWR=4\r") == (False, "bad reply")
    assert parse(PJLINK["p"], POWER, b"%1POWR ?\r", b"%1POWR=0:0 1\r") == (False, "bad reply")  # not the board's syntax


def test_error_texts():
    def errors(table, frame, reply):
        ok, texts = parse(table["p"], ERRORS, frame, reply)
        assert ok is True
        return texts

    assert errors(EPSON, b"ERR?\r", b"ERR=00\r:") == []
    assert errors(EPSON, b"ERR?\r", b"ERR=04\r:") == ["err:04"]
    assert errors(EPSON, b"ERR?\r", b"ERR=2F\r:") == ["err:2F"]
    assert errors(PJLINK, b"%1ERST ?\r", b"%1ERST=000000\r") == []
    assert errors(PJLINK, b"%1ERST ?\r", b"%1ERST=020100\r") == ["err:020100"]  # one fault: the parts


def test_md5_matches_the_pjlink_spec_example():
    assert md5_hex(b"") == b"d41d8cd98f00b204e9800998ecf8427e"
    assert md5_hex(b"498e4a67JBMIAProjectorLink") == b"5d8409bc1c3fa39749434aa3a5c38682"
    assert md5_hex(b"x" * 56) == b"668a72d5ba17f08e62dabcafad6db14b"  # two blocks


async def test_session_start_sends_the_table_frames():
    p, dev, link, events = make()
    p.want(True, 0)
    assert await p.step(0)
    assert link.sent == [b"PWR?\r", b"PWR ON\r", b"PWR?\r", b"LAMP?\r", b"ERR?\r"]
    assert p.state == "warming" and p.lamp_h == 1500
    assert events == [("projector.changed", {"state": "warming", "lamp_h": 1500})]


async def test_poll_interval_is_at_least_ten_seconds():
    p, dev, link, events = make(poll_s=1)
    assert await p.step(0)
    assert not await p.step(9999)
    assert await p.step(10000)
    assert len([f for f in link.sent if f == b"PWR?\r"]) == 2


async def test_no_power_on_during_cool_down_the_wish_waits():
    p, dev, link, events = make(device=EpsonDevice("03"))
    p.want(True, 0)
    await p.step(0)
    assert b"PWR ON\r" not in link.sent and p.state == "cooling"
    dev.code = "04"  # cooled down
    link.sent.clear()
    assert not await p.step(9000)  # retried at the short interval
    await p.step(10000)
    assert link.sent[:3] == [b"PWR?\r", b"PWR ON\r", b"PWR?\r"] and p.state == "warming"


async def test_after_an_off_the_driver_waits_the_cool_down_before_on():
    p, dev, link, events = make(device=EpsonDevice("01"))
    p.want(False, 0)
    await p.step(0)
    assert b"PWR OFF\r" in link.sent
    dev.code = "04"  # reports standby early (as BenQ does while still cooling)
    p.want(True, 5000)
    await p.step(5000)
    await p.step(15000)
    assert b"PWR ON\r" not in link.sent
    await p.step(25000)  # cool_ms (20 s) after the change
    assert link.sent.count(b"PWR ON\r") == 1


async def test_no_power_off_during_warm_up():
    p, dev, link, events = make()
    p.want(True, 0)
    await p.step(0)
    p.want(False, 5000)
    await p.step(5000)
    assert b"PWR OFF\r" not in link.sent
    dev.code = "01"  # warm
    await p.step(15000)
    assert b"PWR OFF\r" not in link.sent  # still inside our own warm-up hold
    await p.step(30000)
    assert link.sent[-4:] == [b"PWR OFF\r", b"PWR?\r", b"LAMP?\r", b"ERR?\r"]
    assert p.state == "cooling" and p.target is None


async def test_refused_command_is_retried():
    dev = EpsonDevice("01")
    p, dev, link, events = make(device=dev, poll_s=60)
    await p.step(0)
    dev.code = "02"  # the remote started it meanwhile; our wish is off
    p.want(False, 1000)
    await p.step(1000)
    assert p.target == "off" and b"PWR OFF\r" not in link.sent
    assert not await p.step(10999)
    dev.code = "01"
    await p.step(11000)  # retried at the short interval, not poll_s
    await p.step(41000)
    assert b"PWR OFF\r" in link.sent


async def test_remote_on_outside_a_session_goes_to_standby_after_the_delay():
    dev = EpsonDevice("01")
    p, dev, link, events = make(device=dev, standby_after_s=120)
    await p.step(0)
    for now in range(30000, 120000, 30000):
        await p.step(now)
    assert b"PWR OFF\r" not in link.sent
    await p.step(120000)
    assert b"PWR OFF\r" in link.sent and p.state == "cooling"


async def test_remote_on_in_a_session_is_left_alone():
    dev = EpsonDevice("01")
    p, dev, link, events = make(device=dev, standby_after_s=60)
    p.want(True, 0)
    for now in range(0, 300000, 30000):
        await p.step(now)
    assert b"PWR OFF\r" not in link.sent and b"PWR ON\r" not in link.sent


async def test_faults_are_reported_once():
    dev = EpsonDevice("01")
    p, dev, link, events = make(device=dev)
    await p.step(0)
    dev.error = "04"
    await p.step(30000)
    await p.step(60000)
    faults = [d for k, d in events if k == "projector.fault"]
    assert faults == [{"error": "err:04"}]
    assert p.errors == ["err:04"]
    dev.silent = True
    await p.step(90000)
    await p.step(120000)
    assert p.state == "unknown"
    faults = [d for k, d in events if k == "projector.fault"]
    assert faults[-1] == {"error": "no reply"} and len(faults) == 2
    dev.silent = False
    dev.error = "00"
    await p.step(150000)
    assert p.errors == [] and p.state == "on"
    # Back from "unknown" to the same state: nothing new to report.
    assert [k for k, d in events].count("projector.changed") == 1


async def test_garbled_reply_is_a_fault_not_a_crash():
    p, dev, link, events = make(device=lambda frame: b"\xff\x00junk\r:")
    await p.step(0)
    assert p.state == "unknown"
    assert events == [("projector.fault", {"error": "bad reply"})]


async def test_benq_holds_off_through_the_warm_up():
    state = {"on": False}

    def benq(frame):
        if frame == b"\r*pow=?#\r":
            return b"*pow=?#\r\n*POW=" + (b"ON" if state["on"] else b"OFF") + b"#\r\n"
        if frame == b"\r*ltim=?#\r":
            return b"*ltim=?#\r\n*LTIM=42#\r\n"
        if frame == b"\r*pow=on#\r":
            state["on"] = True
            return b"*pow=on#\r\n*POW=ON#\r\n"
        if frame == b"\r*pow=off#\r":
            state["on"] = False
            return b"*pow=off#\r\n*POW=OFF#\r\n"
        return None

    p, dev, link, events = make(device=benq, table=BENQ)
    p.want(True, 0)
    await p.step(0)
    assert p.state == "on" and p.lamp_h == 42
    p.want(False, 2000)
    await p.step(2000)
    await p.step(12000)
    assert b"\r*pow=off#\r" not in link.sent  # BenQ says ON while warming
    await p.step(32000)
    assert b"\r*pow=off#\r" in link.sent and p.state == "off"


async def test_unsupported_power_command_is_a_fault():
    def benq(frame):
        if frame == b"\r*pow=?#\r":
            return b"*POW=ON#"
        if frame == b"\r*ltim=?#\r":
            return b"*LTIM=42#"
        return b"*Unsupported item#"

    p, dev, link, events = make(device=benq, table=BENQ)
    p.want(False, 0)
    await p.step(0)
    assert link.sent[:2] == [b"\r*pow=?#\r", b"\r*pow=off#\r"]
    assert events[-1] == ("projector.fault", {"error": "unsupported off"})
    assert p.errors == ["unsupported off"] and p.target == "off"


class FakePort:
    """A UART with timeout=0: read() returns what is there, any() counts it."""

    def __init__(self, reply):
        self.reply = reply
        self.written = b""
        self.rx = b""

    def write(self, data):
        self.written += data
        self.rx += self.reply

    def any(self):
        return len(self.rx)

    def read(self, n):
        out, self.rx = self.rx[:n], self.rx[n:]
        return out or None


async def test_serial_link_reads_past_the_echo():
    port = FakePort(b"*pow=?#\r\n*POW=OFF#\r\n")
    reply = await SerialLink(port).exchange(b"\r*pow=?#\r", 200, b"#")
    assert port.written == b"\r*pow=?#\r"
    assert parse(BENQ["p"], POWER, b"\r*pow=?#\r", reply) == (True, "off")


async def test_serial_link_times_out_with_oserror():
    port = FakePort(b"")
    link = SerialLink(port)
    try:
        await link.exchange(b"PWR?\r", 30, b":")
    except OSError:
        return
    raise AssertionError("no OSError")
