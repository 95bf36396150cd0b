# The classroom board's application: wires the button, LED, relay, session
# state machine, flash outbox, projector, kit and MQTT link together.
# Hardware comes in through `board` (firmware/board.py) and time through
# `clock`, so the simulator runs this very file. Tasks: MQTT link, button,
# ticker (session, relay, LED, watchdog), publisher (outbox, acks),
# telemetry, and the projector's and the kit's own tasks when fitted.
import asyncio
import json
import os

from . import VERSION
from .button import LONG, SHORT, ButtonLogic
from .clock import Clock
from .compat import const
from .events import Events
from .led import level  # not `led as ledmod`: one name fewer in the full qstr pool (docs/board.md)
from .mqtt import MQTTClient
from .outbox import EVENT, Outbox, replace_file
from .session import ACTIVE, IDLE, REQUESTING, Session

# Last, as measured: imported before the package's own modules, the board
# holds 144 bytes more heap at boot (bench/firmware_footprint.py).
from protocol.wire import ProtocolError, encode, parse, topic  # isort: skip

# The async seams live here, not in compat: the pure logic modules that
# import compat must not pull asyncio into the board's RAM.
try:
    ThreadSafeFlag = asyncio.ThreadSafeFlag  # type: ignore[attr-defined]
except AttributeError:  # CPython and ports without it: the simulator's pins
    # call `set` from the event loop's own thread, so an Event is enough.

    class ThreadSafeFlag:  # type: ignore[no-redef]
        def __init__(self):
            self._event = asyncio.Event()

        def set(self):
            self._event.set()

        def clear(self):
            self._event.clear()

        async def wait(self):
            await self._event.wait()
            self._event.clear()


try:
    # MicroPython: an int sleep; asyncio.sleep(0.05) would allocate floats every tick
    sleep_ms_async = asyncio.sleep_ms  # type: ignore[attr-defined]
except AttributeError:  # CPython

    async def sleep_ms_async(ms):  # type: ignore[misc]
        await asyncio.sleep(ms / 1000)


_TICK_MS = const(50)
_BUTTON_SAMPLE_MS = const(10)
_ACK_MEMORY = const(16)
_RESTART_IDLE_MS = const(536870912)  # 2**29 ms, 6.2 days
_COMMIT_MS = const(10000)  # no word from the gateway on a sent event: sent again


def bump_boot_counter(storage):
    """Read, increment and persist the boot counter; 0 on a fresh board."""
    path = storage + "boot.cnt"
    boot = 0
    try:
        with open(path) as f:
            boot = int(f.read().strip() or "0") + 1
    except (OSError, ValueError):
        boot = 0
    # Write then rename: a power cut mid-write leaves the old counter, never
    # a torn one (a repeated boot would make the gateway drop our events as
    # duplicates of the previous boot's).
    try:
        replace_file(path, str(boot).encode())
    except OSError as e:
        print("preau: boot counter not saved (%s); the next boot may repeat %d" % (e, boot))
    return boot


class Classroom:
    def __init__(self, cfg, board, storage="/", clock=None, log=print, projector=None):
        """`projector`: the board's projector table (projector.json), or None."""
        self.cfg = cfg
        self.board = board
        board.set_relay(False)  # first thing: the access point is off at boot
        self.log = log
        self.clock = clock or Clock()
        if storage and not storage.endswith("/"):
            storage += "/"
        self.boot = bump_boot_counter(storage)
        self.storage = storage  # the flash's root on the board: the updater's files are there
        self._wake = ThreadSafeFlag()  # the publisher has something to send
        self.outbox = Outbox(storage + "outbox", cfg["outbox_kb"] * 1024, log=log)
        self.events = Events(self.boot, self.clock, self.outbox, self._wake.set)
        self.session = Session(
            self.events,
            wifi_never=cfg["wifi_never"],
            request_timeout_ms=cfg["request_timeout_ms"],
            ap_cap_s=cfg["ap_cap_s"],
            grace_s=cfg["grace_s"],
        )
        self.button = ButtonLogic()
        self.rejected = {}
        self.identify_until = 0
        self._acks = []  # recent (id, ack payload) for QoS 1 redelivery
        self._acks_out = []
        self._button_flag = ThreadSafeFlag()
        self._reboot = False
        self.acked = None  # (boot, seq): the gateway's last `committed_to`
        self._stopping = False
        school, room = cfg["school"], cfg["room"]
        self.t_state = topic(school, room, "state")
        self.t_evt = topic(school, room, "evt")
        self.t_tele = topic(school, room, "tele")
        self.t_cmd = topic(school, room, "cmd")
        self.t_ack = topic(school, room, "ack")
        self.t_policy = topic(school, room, "policy")
        will = (self.t_state, encode({"v": 1, "online": False, "boot": self.boot}), True, 1)
        self.mqtt = MQTTClient(
            "preau-%s-%s" % (school, room),
            cfg["broker"],
            cfg["port"],
            user=cfg["user"],
            password=cfg["password"],
            keepalive=cfg["keepalive"],
            will=will,
            on_message=self._on_message,
            on_connect=self._on_connect,
            key=cfg["key"],  # signs all the board publishes, its Last Will too
        )
        self.devices = list(board.devices)
        self.projector = self.kit = None
        self._proj_on = False
        if projector is not None:
            # Imported only when fitted: a driver the room lacks costs no heap.
            from .projector import Projector, open_link

            serial = projector["io"] == "serial"
            link = open_link(projector, uart=board.uart(projector.get("baud", 9600)) if serial else None,
                             host=cfg["projector_host"], password=cfg["projector_password"])
            self.projector = Projector(projector, link, self.events.emit,
                                       standby_after_s=cfg["projector_standby_s"])
            self.devices.append("projector")
        i2c = board.i2c()
        if i2c is not None:
            from .kit import Kit

            self.kit = Kit(i2c, self.events.emit, cfg["co2_alert_ppm"])
            self.devices.append("kit")
        self.wdt = None
        board.on_button_edge(self._isr)
        data = {"reset_cause": board.reset_cause()}
        try:
            # what the updater did at this boot (docs/ota.md), said once
            with open(storage + "preau_ota_result.json") as f:
                data["update"] = f.read(400)
            os.remove(storage + "preau_ota_result.json")
        except OSError:
            pass
        self.events.emit("boot", data)

    # -- interrupt: set one flag, nothing else ------------------------------
    def _isr(self, _pin):
        self._button_flag.set()

    # -- MQTT ---------------------------------------------------------------
    def birth(self):
        return {
            "v": 1,
            "online": True,
            "boot": self.boot,
            "fw": VERSION,
            "board": self.board.name,
            "uptime_ms": self.clock.uptime_ms(),
            "session": self.session.state,
            "ap": self.session.ap,
            "devices": self.devices,
        }

    async def _on_connect(self):
        # The client re-subscribes by itself (subscriptions made in run()).
        await self.mqtt.publish(self.t_state, encode(self.birth()), True, 1)
        self._wake.set()

    def _reject(self, leaf, reason):
        self.rejected[leaf] = self.rejected.get(leaf, 0) + 1
        self.log("preau: rejected %s: %s" % (leaf, reason))

    def _on_message(self, t, payload, retain):
        t = t.decode() if isinstance(t, (bytes, bytearray)) else t
        if t == self.t_policy:
            try:
                self.session.set_policy(parse("policy", payload))
            except ProtocolError as e:
                self._reject("policy", str(e))
            return
        if t != self.t_cmd:
            return
        try:
            cmd = parse("cmd", payload)
        except ProtocolError as e:
            self._reject("cmd", str(e))
            cid = _id_of(payload)
            if cid is None:
                self.events.emit("cmd.rejected", {"reason": str(e)[:120]})
            else:
                self._send_ack({"v": 1, "id": cid, "ok": False, "boot": self.boot, "error": "bad_command"})
            return
        if cmd["cmd"] == "committed_to":
            # The gateway has this room's events up to (boot, seq) in its
            # database: only now do they leave the flash (docs/outbox.md). Not
            # acknowledged: it is an acknowledgement.
            self.acked = cmd["boot"], cmd["seq"]
            self._wake.set()
            return
        for cid, ack in self._acks:
            if cid == cmd["id"]:  # QoS 1 redelivery: answer again, act once
                self._send_ack(ack)
                return
        ok, text = self._execute(cmd)
        ack = {"v": 1, "id": cmd["id"], "ok": ok, "boot": self.boot}
        ack["result" if ok else "error"] = text
        self._acks.append((cmd["id"], ack))
        if len(self._acks) > _ACK_MEMORY:
            self._acks.pop(0)
        self._send_ack(ack)

    def _send_ack(self, ack):
        self._acks_out.append(ack)
        self._wake.set()

    def _execute(self, cmd):
        now = self.clock.uptime_ms()
        if "now" in cmd:
            self.clock.set_time(cmd["now"])
        name = cmd["cmd"]
        s = self.session
        if name == "grant" and self._stopping:
            result = False, "shutting_down"  # not even recorded as started
        elif name == "grant":
            result = s.grant(cmd["req"], cmd["duration_s"], cmd["ap"], cmd["projector"], now, cmd.get("grace_s"))
        elif name == "deny":
            result = s.deny(cmd["req"], cmd["reason"], now)
        elif name == "end":
            result = s.end(now)
        elif name == "identify":
            self.identify_until = now + 1000 * cmd.get("seconds", 10)
            result = True, "identifying"
        elif name == "time":
            result = True, "time_set"
            try:
                # A new version on trial reports healthy: the gateway answers
                # its birth. The trial's file, which says ok, is the result.
                os.rename(self.storage + "preau_trial.json", self.storage + "preau_ota_result.json")
                result = True, "time_set, update confirmed"
            except OSError:
                pass
        elif name == "update" and s.state != IDLE:
            result = False, "session_running"  # an update never cuts a lesson
        elif name == "update":
            # The updater does it at the next boot, before the application:
            # this command, as it came, is its order (docs/ota.md).
            try:
                replace_file(self.storage + "preau_ota.json", encode(cmd))
                self._reboot = True
                result = True, "update_ordered"
            except OSError as e:
                result = False, "flash write failed: %s" % e
        elif name == "reboot":
            self._reboot = True
            result = True, "rebooting"
        else:  # the codec already refused unknown commands
            result = False, "unknown_command"
        self.apply(now)
        return result

    # -- outputs --------------------------------------------------------------
    def fault(self):
        """A fault a technician must see, or None: the projector does not
        answer or reports an error, or flash refuses the outbox's writes."""
        if self.projector is not None and self.projector.errors:
            return "projector"
        if self.events.flash_errors:
            return "flash"
        return None

    def led_mode(self, now):
        if now < self.identify_until:
            return "identify"
        mode = self.session.led(now, self.mqtt.up)
        # The room's air and the technician's faults only show when the
        # session has nothing more urgent to say.
        if mode in ("on", "alone", "idle", "offline") and self.kit is not None and self.kit.air_alert:
            return "air"
        if mode in ("idle", "offline") and self.fault() is not None:
            return "fault"
        return mode

    def apply(self, now):
        s = self.session
        # Wall time only matters when a request times out (offline windows);
        # reading it every tick would allocate a big int 20 times a second.
        s.tick(now, self.clock.time() if s.waiting_time() else None)
        if self._stopping and s.state == ACTIVE:
            s.end(now, "shutdown")  # a grant that arrived during the shutdown
        self.board.set_relay(s.ap and not self._stopping)
        self.board.set_led(level(self.led_mode(now), now))
        if self.projector is not None:
            want = s.state == ACTIVE and s.projector
            if want != self._proj_on:
                self._proj_on = want
                self.projector.want(want, now)

    # -- tasks ----------------------------------------------------------------
    async def _ticker(self):
        while True:
            now = self.clock.uptime_ms()
            if now >= _RESTART_IDLE_MS and self.session.state == IDLE and self.mqtt.up and not self._stopping:
                # Small ints end at 2**30 on a 32-bit port: past 12 days of
                # uptime every time value would be a heap-allocated big int,
                # 20 times a second. Restarted while idle, after 6 days
                # (the relay is off at boot; the outbox keeps the events), and
                # only with the gateway reachable: it gives the time and the
                # offline policy again at once.
                self.board.set_relay(False)
                self.board.reset()
            self.apply(now)
            if self.wdt is not None:
                # Fed from the main loop only: if the loop hangs, the board
                # resets and comes back with the access point off.
                self.wdt.feed()
            await sleep_ms_async(_TICK_MS)

    async def _button_task(self):
        while True:
            await self._button_flag.wait()
            # Sample until the press is over: debounce and long-press timing
            # need the level over time, which an edge interrupt alone can't give.
            while True:
                now = self.clock.uptime_ms()
                press = self.button.update(self.board.button_pressed(), now)
                if press is not None:
                    self.on_press(press, now)
                if not self.button.busy():
                    break
                await sleep_ms_async(_BUTTON_SAMPLE_MS)

    def on_press(self, press, now):
        if self._stopping:
            return  # shutting down: no new session
        self.events.emit("button", {"press": press})
        if press == SHORT:
            self.session.press_short(now)
        elif press == LONG:
            self.session.press_long(now)
        self.apply(now)  # LED and relay answer before any network round trip

    async def _publisher(self):
        # One outbox record in flight at a time. Telemetry leaves the flash
        # once the broker acknowledged it; an event, once a gateway that
        # says what it committed (`committed_to`) has said it of this one: a
        # broker that dies before saving its queue loses none (docs/outbox.md).
        # Before the first such word of a boot (a gateway of an older
        # version, or none), the broker's acknowledgement is enough, as before.
        # A reset never loses a record, at worst sends one again (the gateway
        # keeps each (boot, seq) once, and says so again).
        pending = rec = key = None
        since = 0
        while True:
            if pending is None and key is None and (not self.mqtt.up or (not self._acks_out and not len(self.outbox))):
                await self._wake.wait()
            try:
                pid = None
                while self._acks_out and self.mqtt.up:
                    pid = await self.mqtt.publish(self.t_ack, encode(self._acks_out[0]), False, 1)
                    self._acks_out.pop(0)
                if self._reboot and not self._acks_out:
                    # the "rebooting" ack reaches the broker first (bounded wait)
                    if pid is not None:
                        await self.mqtt.wait_puback(pid, 2000)
                    self.board.set_relay(False)
                    self.board.reset()
                if pending is not None:
                    # short waits: acks for commands must not queue behind it
                    if await self.mqtt.wait_puback(pending, 200):
                        pending = None
                        if rec[0] == EVENT and self.acked is not None:  # pyright: ignore[reportOptionalSubscript]  # set with pending
                            e = json.loads(rec[1])  # pyright: ignore[reportOptionalSubscript]
                            key = e["boot"], e["seq"]
                            since = self.clock.uptime_ms()
                        else:
                            self.outbox.pop()
                    continue
                if key is not None:
                    e = self.acked
                    if e is not None and e[0] == key[0] and e[1] >= key[1]:
                        self.outbox.pop()  # the last peek's record, unless the cap dropped it meanwhile
                        key = None
                    elif self.mqtt.up and self.clock.uptime_ms() - since < _COMMIT_MS:
                        try:
                            await asyncio.wait_for(self._wake.wait(), 0.2)  # the gateway's word wakes it
                        except asyncio.TimeoutError:
                            pass
                        continue
                    else:
                        key = None  # no word: sent again
                rec = self.outbox.peek() if self.mqtt.up else None
                if rec is not None:
                    pending = await self.mqtt.publish(self.t_evt if rec[0] == EVENT else self.t_tele, rec[1], False, 1)
            except OSError:
                await asyncio.sleep(0.2)  # link down or in-flight window full

    def telemetry(self, now):
        s = self.session
        tele = {"v": 1, "boot": self.boot, "uptime_ms": now, "session": s.state, "ap": s.ap,
                "remaining_s": s.remaining_s(now), "outbox": len(self.outbox),
                "dropped": self.outbox.dropped + self.events.dropped}  # cap and flash, oversized
        p = self.projector
        if p is not None:
            tele["projector"] = p.state
            if p.lamp_h is not None:
                tele["lamp_h"] = p.lamp_h
        if self.kit is not None and self.kit.readings:
            tele["air"] = self.kit.readings
        return tele

    async def _telemetry(self):
        while True:
            await asyncio.sleep(self.cfg["tele_s"])
            # Through the outbox too: readings taken while the gateway is away
            # reach it later, and go first when flash runs short.
            if not self.outbox.append(encode(self.telemetry(self.clock.uptime_ms())), True):
                self.events.flash_errors += 1
            self._wake.set()

    async def run(self):
        self.apply(self.clock.uptime_ms())
        await self.mqtt.subscribe(self.t_cmd, 1)  # remembered, sent at every connection
        await self.mqtt.subscribe(self.t_policy, 1)
        self.wdt = self.board.wdt(self.cfg["wdt_ms"])
        tasks = [
            asyncio.create_task(self.mqtt.run()),
            asyncio.create_task(self._ticker()),
            asyncio.create_task(self._button_task()),
            asyncio.create_task(self._publisher()),
            asyncio.create_task(self._telemetry()),
        ]
        if self.projector is not None:
            tasks.append(asyncio.create_task(self.projector.run(self.clock.uptime_ms)))
        if self.kit is not None:
            tasks.append(asyncio.create_task(self.kit.run(sleep_ms_async, self.clock.uptime_ms)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self.board.set_relay(False)

    async def shutdown(self):
        """Clean stop: relay off, death published, clean disconnect."""
        self._stopping = True  # no new press, no grant turns the relay back on
        self.board.set_relay(False)
        now = self.clock.uptime_ms()
        if self.session.state == ACTIVE:
            self.session.end(now, "shutdown")
        elif self.session.state == REQUESTING:
            self.session.press_long(now)
        self.apply(now)  # the projector is told the session is over
        if self.mqtt.up:
            try:
                # Let the publisher hand the last events (the session's end)
                # to the MQTT client; bounded, a shutdown must not hang.
                self._wake.set()
                for _ in range(40):
                    if not len(self.outbox):
                        break
                    await asyncio.sleep(0.05)
                dead = {"v": 1, "online": False, "boot": self.boot, "reason": "shutdown"}
                await self.mqtt.publish(self.t_state, encode(dead), True, 1)
                await self.mqtt.disconnect()
            except OSError:
                pass


def _id_of(payload):
    """Best effort: the id of a command that failed validation, to ack it."""
    try:
        obj = json.loads(payload)
        cid = obj.get("id")
        if isinstance(cid, str) and 1 <= len(cid) <= 32:
            return cid
    except (ValueError, AttributeError, TypeError):
        pass
    return None
