# A small asyncio MQTT 3.1.1 client for the classroom board. Runs unchanged on
# MicroPython (>= 1.22) and CPython 3.11, so the same code is tested against
# real brokers on loopback.
#
# Why not umqtt.simple: it blocks the whole board while it reconnects (the
# teacher's button and the relay timer stop with it) and it has no QoS 1
# retry, so an event published during a Wi-Fi or gateway outage is lost.
# Here the socket is an asyncio stream, reconnection is a background loop with
# backoff, and every QoS 1 message stays in a bounded in-flight table until
# the broker's PUBACK, across reconnects.
#
# Scope: QoS 0 and 1 out, subscriptions at most QoS 1 (incoming QoS 2 closes
# the connection), no unsubscribe, no TLS. The broker is the school gateway on
# the local network.
import asyncio

from .compat import const, ticks_diff, ticks_ms

try:
    from random import getrandbits  # pyright: ignore[reportAssignmentType]  # stub: positional-only
except ImportError:  # a port built without `random`: the clock is jitter enough

    def getrandbits(bits):
        return ticks_ms() & ((1 << bits) - 1)


_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)  # SUBSCRIBE carries the mandatory flags 0b0010
_SUBACK = const(0x90)
_UNSUBACK = const(0xB0)
_PINGRESP = const(0xD0)
_DUP = const(0x08)
_MAX_LENGTH = const(268435455)  # the largest remaining length in 4 bytes
# A connection that stayed up this long was healthy: the next outage starts
# again from the minimum backoff instead of where the last flapping left off.
_STABLE_MS = const(10000)

# Fixed packets, shared: no allocation for a ping.
_PINGREQ_PACKET = b"\xc0\x00"
_DISCONNECT_PACKET = b"\xe0\x00"

# In-flight entry fields. An entry is a list, not an object: 5 slots, one
# allocation besides the packet itself.
_PID = const(0)
_PKT = const(1)  # the whole PUBLISH packet, ready to write; DUP set in place
_SENT = const(2)  # connection number it was last sent on; 0 = never sent
_AT = const(3)  # ticks_ms when last sent
_FIRST = const(4)  # published by on_connect: goes before the backlog

CONNACK_REASONS = (
    "accepted",
    "unacceptable protocol version",
    "client identifier rejected",
    "server unavailable",
    "bad user name or password",
    "not authorised",
)


class MQTTError(OSError):
    """The broker refused or broke the protocol. `rc` is the CONNACK return
    code when the broker refused the connection, None otherwise."""

    def __init__(self, msg, rc=None):
        super().__init__(msg)
        self.rc = rc


def encode_length(n):
    """MQTT remaining length: 7 bits a byte, little end first, 1 to 4 bytes."""
    if not 0 <= n <= _MAX_LENGTH:
        raise ValueError("remaining length %d out of range" % n)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def backoff_wait(delay, r8):
    """Equal jitter: a wait in [delay/2, delay] from 8 random bits, so a whole
    school's boards that lost the gateway together do not come back in step."""
    return delay // 2 + (r8 * (delay - delay // 2) >> 8)


def _bytes(x):
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, (bytes, bytearray)):
        return x
    return bytes(x)


def _packet(first, parts, pid=0):
    """One packet in one bytearray: header, optional packet id, then each
    part as-is (bytes) or with a 2-byte length prefix (a 1-tuple)."""
    n = 2 if pid else 0
    for p in parts:
        n += len(p[0]) + 2 if isinstance(p, tuple) else len(p)
    head = encode_length(n)
    pkt = bytearray(1 + len(head) + n)
    pkt[0] = first
    i = 1 + len(head)
    pkt[1:i] = head
    for p in parts:
        if isinstance(p, tuple):
            p = p[0]
            pkt[i] = len(p) >> 8
            pkt[i + 1] = len(p) & 0xFF
            i += 2
        pkt[i : i + len(p)] = p
        i += len(p)
        if pid:  # after the first part: the PUBLISH topic, or b"" for SUBSCRIBE
            pkt[i] = pid >> 8
            pkt[i + 1] = pid & 0xFF
            i += 2
            pid = 0
    return pkt


def _closed(e):
    # CPython's readexactly raises IncompleteReadError (an EOFError),
    # MicroPython's raises EOFError; asyncio.TimeoutError is not an OSError on
    # MicroPython. Everything that means "this connection is gone" becomes an
    # OSError, the one failure the robust loop handles.
    if isinstance(e, OSError):
        return e
    if isinstance(e, EOFError):
        return OSError("connection closed by the broker")
    if isinstance(e, asyncio.TimeoutError):
        return OSError("timed out")
    return MQTTError("bad packet (%r)" % (e,))


async def _call(cb, *args):
    r = cb(*args)
    if r is not None and hasattr(r, "send"):  # a coroutine or MicroPython generator
        await r


class MQTTClient:
    def __init__(
        self,
        client_id,
        server,
        port=1883,
        user=None,
        password=None,
        keepalive=30,
        will=None,
        on_message=None,
        on_connect=None,
        backoff_ms=(500, 30000),
        max_inflight=16,
        clean_session=True,
        max_packet=4096,
        retry_ms=5000,
        timeout_ms=10000,
    ):
        self.client_id = _bytes(client_id)
        self.server = server
        self.port = port
        self.user = None if user is None else _bytes(user)
        self.password = None if password is None else _bytes(password)
        self.keepalive = keepalive
        if will is not None:
            t, p, retain, qos = will
            will = (_bytes(t), _bytes(p), bool(retain), qos)
        self.will = will
        self.on_message = on_message
        self.on_connect = on_connect
        self.backoff_ms = backoff_ms
        self.max_inflight = max_inflight
        self.clean_session = clean_session
        self.max_packet = max_packet
        self.retry_ms = retry_ms
        self.timeout_ms = timeout_ms
        self.up = False
        self.last_error = None  # the latest failure, for the app to show or log
        self.stats = {"connects": 0, "disconnects": 0, "retransmits": 0, "rx": 0, "tx": 0, "errors": 0}
        self._inflight = []  # oldest first: the order the broker must see
        self._subs = []  # [topic, qos, connection number it was sent on]
        self._pid = 0
        self._conn = 0  # connection number, bumped at every attempt
        self._writer = None  # the open stream, from connect to teardown; usable while `up`
        self._rx_task = None
        self._run_task = None
        self._first_phase = False  # on_connect is running
        self._stopping = False
        self._last_rx = 0
        self._last_tx = 0
        self._last_ping = 0
        self._lock = asyncio.Lock()  # one packet at a time on the stream
        self._wake = asyncio.Event()  # connection lost, or disconnect() called
        # Set (never cleared) and replaced at a PUBACK when someone waits: a
        # set()+clear() pulse is lost when the waiter's wait_for task has not
        # started yet, on both CPython and MicroPython.
        self._acked = asyncio.Event()
        self._ack_waiters = 0
        self._done = asyncio.Event()  # run() has returned

    # ----- public API -----

    async def run(self):
        """Connect, serve, and reconnect with backoff after any OSError, until
        disconnect() or cancellation."""
        self._stopping = False
        self._done.clear()
        self._run_task = asyncio.current_task()
        lo, hi = self.backoff_ms
        delay = lo
        try:
            while not self._stopping:
                t0 = ticks_ms()
                connects = self.stats["connects"]
                try:
                    await self._session()
                except OSError as e:  # MQTTError included
                    if e is not self.last_error:  # _lost() counted it already
                        self._error(e)
                finally:
                    await self._teardown()
                if self._stopping:
                    break
                if self.stats["connects"] != connects and ticks_diff(ticks_ms(), t0) >= _STABLE_MS:
                    delay = lo
                wait = backoff_wait(delay, getrandbits(8))
                delay = min(delay * 2, hi)
                self._wake.clear()
                await self._pause(wait)
        finally:
            await self._teardown()
            self._run_task = None
            self._done.set()

    async def publish(self, topic, payload, retain=False, qos=0):
        """QoS 0: sent now, or OSError when down. QoS 1: queued in the
        in-flight table and sent as soon as the connection allows, in order;
        returns the packet id. OSError("inflight full") when the table holds
        max_inflight messages (messages published from on_connect, such as the
        birth, are always taken)."""
        topic = _bytes(topic)
        payload = _bytes(payload)
        # Checked here: a queued message the broker refuses would make it drop
        # every connection, for ever.
        if not topic or b"+" in topic or b"#" in topic:
            raise ValueError("bad topic to publish: %r" % (topic,))
        first = _PUBLISH | (1 if retain else 0)
        if qos == 0:
            if not self.up:
                raise OSError("not connected")
            await self._send(_packet(first, ((topic,), payload)))
            return None
        if qos != 1:
            raise ValueError("qos must be 0 or 1")
        priority = self._first_phase and asyncio.current_task() is self._run_task
        if len(self._inflight) >= self.max_inflight and not priority:
            raise OSError("inflight full")
        pid = self._new_pid()
        entry = [pid, _packet(first | 0x02, ((topic,), payload), pid), 0, 0, priority]
        if priority:
            i = 0
            while i < len(self._inflight) and self._inflight[i][_FIRST]:
                i += 1
            self._inflight.insert(i, entry)
        else:
            self._inflight.append(entry)
        try:
            await self._flush()
        except OSError:
            pass  # stays queued; sent again after the reconnect
        return pid

    async def subscribe(self, topic, qos=1):
        """Remember the subscription (re-sent after every reconnect) and send
        it now if connected. Returns the SUBSCRIBE packet id, or None."""
        topic = _bytes(topic)
        qos = 1 if qos else 0
        for s in self._subs:
            if s[0] == topic:
                if s[1] == qos and s[2] == self._conn and self.up:
                    return None  # already sent on this connection
                s[1] = qos
                break
        else:
            s = [topic, qos, 0]
            self._subs.append(s)
        if not self.up:
            return None
        try:
            return await self._subscribe(s)
        except OSError:
            return None  # remembered: sent again after the reconnect

    async def disconnect(self):
        """Clean DISCONNECT (the broker drops the Last Will) and stop run()."""
        self._stopping = True
        if self.up:
            try:
                await self._send(_DISCONNECT_PACKET)
            except OSError:
                pass
        self.up = False
        self._wake.set()
        task = self._run_task
        if task is not None and task is not asyncio.current_task():
            try:
                await asyncio.wait_for(self._done.wait(), self.timeout_ms / 1000)
            except asyncio.TimeoutError:
                pass
        else:
            await self._teardown()

    def inflight_count(self):
        return len(self._inflight)

    def acked(self, pid):
        """True once the QoS 1 message `pid` is no longer waiting for PUBACK."""
        for e in self._inflight:
            if e[_PID] == pid:
                return False
        return True

    async def wait_puback(self, pid, timeout_ms=None):
        """Wait until `pid` is PUBACKed; False if timeout_ms passes first."""
        t0 = ticks_ms()
        self._ack_waiters += 1
        try:
            while not self.acked(pid):
                ev = self._acked
                if timeout_ms is None:
                    await ev.wait()
                    continue
                left = timeout_ms - ticks_diff(ticks_ms(), t0)
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(ev.wait(), left / 1000)
                except asyncio.TimeoutError:
                    pass
            return True
        finally:
            self._ack_waiters -= 1

    # ----- one connection -----

    async def _session(self):
        self._conn += 1
        conn = self._conn
        timeout = self.timeout_ms / 1000
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.server, self.port), timeout)
        except (EOFError, asyncio.TimeoutError) as e:
            raise _closed(e)
        self._writer = writer  # for teardown; publishers wait for `up`
        try:
            writer.write(self._connect_packet())
            await asyncio.wait_for(writer.drain(), timeout)
            first, body = await asyncio.wait_for(self._read_packet(reader), timeout)
        except (EOFError, asyncio.TimeoutError) as e:
            raise _closed(e)
        if first != _CONNACK or len(body) != 2:
            raise MQTTError("expected CONNACK, got packet type 0x%02x" % first)
        rc = body[1]
        if rc:
            reason = CONNACK_REASONS[rc] if rc < len(CONNACK_REASONS) else "unknown reason"
            raise MQTTError("broker %s:%d refused the connection: %s (CONNACK %d)" % (self.server, self.port, reason, rc), rc)
        now = ticks_ms()
        self._last_rx = self._last_tx = self._last_ping = now
        self.stats["connects"] += 1
        self.stats["tx"] += 1
        self.stats["rx"] += 1
        self._wake.clear()
        self.up = True
        self._rx_task = asyncio.create_task(self._read_loop(reader, conn))
        for s in self._subs:
            if s[2] != conn:
                await self._subscribe(s)
        # on_connect (the birth, the subscriptions) goes before the backlog:
        # its QoS 1 messages jump the queue, everyone else's wait behind it.
        for e in self._inflight:
            e[_FIRST] = False
        if self.on_connect is not None:
            self._first_phase = True
            try:
                await _call(self.on_connect)
            except OSError:
                raise
            except Exception as e:  # the app's bug: count it, retry later
                raise MQTTError("on_connect failed: %r" % (e,))
            finally:
                self._first_phase = False
        await self._flush()
        await self._keep(conn)

    async def _keep(self, conn):
        """Ping, detect a dead broker, retransmit unacknowledged messages."""
        ka = self.keepalive * 1000
        while True:
            if self._stopping:
                if self.up:  # disconnect() came while we were connecting
                    await self._send(_DISCONNECT_PACKET)
                return
            if not self.up or conn != self._conn:
                return  # _lost() has counted why
            now = ticks_ms()
            nap = self.retry_ms
            if ka:
                quiet_rx = ticks_diff(now, self._last_rx)
                if quiet_rx >= ka:
                    raise OSError("keepalive: nothing from the broker for %d ms" % quiet_rx)
                # Ping when we have been quiet, and also when the broker has:
                # a board that only publishes QoS 0 hears nothing back.
                half = ka // 2
                since_ping = ticks_diff(now, self._last_ping)
                quiet = max(ticks_diff(now, self._last_tx), quiet_rx)
                if since_ping >= half and quiet >= half:
                    self._last_ping = now
                    await self._send(_PINGREQ_PACKET)
                    since_ping = quiet = 0
                nap = min(nap, max(half - since_ping, half - quiet), ka - quiet_rx)
            late = False
            for e in self._inflight:
                if e[_SENT] == conn:
                    age = ticks_diff(now, e[_AT])
                    if age >= self.retry_ms:
                        e[_SENT] = -1  # sent, but not on this round: flush resends with DUP
                        late = True
                    else:
                        nap = min(nap, self.retry_ms - age)
            if late:
                await self._flush()
            await self._pause(max(nap, 10))

    async def _teardown(self):
        was_up = self._rx_task is not None  # it starts at CONNACK
        self.up = False
        w = self._writer
        self._writer = None
        t = self._rx_task
        self._rx_task = None
        if t is not None:
            t.cancel()
        if w is not None:
            try:
                w.close()
                # MicroPython's close() is a no-op; wait_closed() closes.
                await asyncio.wait_for(w.wait_closed(), 1)
            except Exception:
                pass
        if was_up:
            self.stats["disconnects"] += 1

    async def _pause(self, ms):
        try:
            await asyncio.wait_for(self._wake.wait(), ms / 1000)
        except asyncio.TimeoutError:
            pass

    def _lost(self, e, conn):
        if conn != self._conn or not self.up:
            return
        self.up = False
        self._error(e)
        self._wake.set()

    def _error(self, e):
        self.last_error = e
        self.stats["errors"] += 1

    # ----- writing -----

    async def _send(self, pkt):
        async with self._lock:
            await self._write(pkt)

    async def _write(self, pkt):
        # Caller holds the lock: MicroPython allows one drain() per stream.
        w = self._writer
        if w is None or not self.up:
            raise OSError("not connected")
        try:
            w.write(pkt)
            await asyncio.wait_for(w.drain(), self.timeout_ms / 1000)
        except (OSError, EOFError, asyncio.TimeoutError) as e:
            e = _closed(e)
            self._lost(e, self._conn)
            raise e
        self._last_tx = ticks_ms()
        self.stats["tx"] += 1

    async def _flush(self):
        """Send every in-flight message not yet sent on this connection, oldest
        first. Whoever holds the lock sends them all, so order holds whichever
        task calls."""
        async with self._lock:
            conn = self._conn
            while self.up:
                for e in self._inflight:
                    if e[_SENT] != conn:
                        break
                else:
                    return
                if self._first_phase and not e[_FIRST]:
                    return  # the backlog waits for on_connect to finish
                if e[_SENT]:
                    # In place: a transport still holding the first copy can
                    # only see DUP set early, which the broker tolerates.
                    e[_PKT][0] |= _DUP
                    self.stats["retransmits"] += 1
                e[_SENT] = conn
                e[_AT] = ticks_ms()
                await self._write(e[_PKT])

    async def _subscribe(self, s):
        s[2] = self._conn
        pid = self._new_pid()
        await self._send(_packet(_SUBSCRIBE, (b"", (s[0],), bytes((s[1],))), pid))
        return pid

    def _new_pid(self):
        while True:
            self._pid = self._pid % 65535 + 1
            if self.acked(self._pid):
                return self._pid

    def _connect_packet(self):
        flags = 0x02 if self.clean_session else 0
        parts = [b"\x00\x04MQTT\x04", None, bytes((self.keepalive >> 8, self.keepalive & 0xFF)), (self.client_id,)]
        if self.will is not None:
            t, p, retain, qos = self.will
            flags |= 0x04 | (qos & 3) << 3 | (0x20 if retain else 0)
            parts.append((t,))
            parts.append((p,))
        if self.user is not None:
            flags |= 0x80
            parts.append((self.user,))
            if self.password is not None:
                flags |= 0x40
                parts.append((self.password,))
        parts[1] = bytes((flags,))
        return _packet(_CONNECT, parts)

    # ----- reading -----

    async def _read_packet(self, r):
        first = (await r.readexactly(1))[0]
        n = 0
        shift = 0
        for _ in range(4):
            b = (await r.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        else:
            raise MQTTError("bad packet: remaining length longer than 4 bytes")
        if n > self.max_packet:
            raise MQTTError("packet of %d bytes exceeds max_packet %d" % (n, self.max_packet))
        return first, (await r.readexactly(n) if n else b"")

    async def _read_loop(self, r, conn):
        try:
            while True:
                first, body = await self._read_packet(r)
                self._last_rx = ticks_ms()
                self.stats["rx"] += 1
                await self._dispatch(first, body)
        except Exception as e:  # not CancelledError: teardown cancels us
            self._lost(_closed(e), conn)

    async def _dispatch(self, first, body):
        kind = first & 0xF0
        if kind == _PUBLISH:
            qos = (first >> 1) & 3
            if qos > 1:
                raise MQTTError("bad packet: PUBLISH with QoS %d (we subscribe at most QoS 1)" % qos)
            if len(body) < 2:
                raise MQTTError("bad packet: PUBLISH too short")
            i = 2 + (body[0] << 8 | body[1])
            if len(body) < i + 2 * qos:
                raise MQTTError("bad packet: PUBLISH topic overruns the packet")
            topic = body[2:i]
            pid = body[i] << 8 | body[i + 1] if qos else 0
            if self.on_message is not None:
                try:
                    await _call(self.on_message, topic, body[i + 2 * qos :], bool(first & 1))
                except Exception as e:  # the app's bug must not drop the link
                    self._error(e)
            if qos:
                await self._send(bytes((_PUBACK, 2, pid >> 8, pid & 0xFF)))
            return
        if first & 0x0F:
            raise MQTTError("bad packet: flags 0x%02x" % first)
        if kind == _PUBACK and len(body) == 2:
            pid = body[0] << 8 | body[1]
            for i in range(len(self._inflight)):
                if self._inflight[i][_PID] == pid:
                    del self._inflight[i]
                    if self._ack_waiters:
                        ev = self._acked
                        self._acked = asyncio.Event()
                        ev.set()
                    break
        elif kind == _SUBACK and len(body) >= 3:
            if body[2] & 0x80:
                self._error(MQTTError("subscription refused by the broker (SUBACK %d)" % (body[0] << 8 | body[1])))
        elif kind == _PINGRESP and not body:
            pass
        elif kind == _UNSUBACK and len(body) == 2:
            pass
        else:
            raise MQTTError("bad packet: unexpected type 0x%02x, %d bytes" % (first, len(body)))
