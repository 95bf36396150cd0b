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
# the connection), clean sessions, no unsubscribe, no TLS. The broker is the
# school gateway on the local network.
#
# RAM: this module is the board's biggest. Every function, distinct name and
# string constant costs heap once the .mpy is loaded, so small helpers are
# merged into their callers and messages are short: a string of up to 10
# characters is interned, a longer one is a heap object (16 bytes and more);
# a ValueError carries the bad value instead of a message
# (bench/module_heap.py measures it).
#
# Given the board's key, the client signs every message it publishes, its
# Last Will included (protocol/mac.py): the outbox's records are signed as
# they leave, so what flash keeps is unchanged.
import asyncio
from hashlib import sha256
from random import getrandbits  # in every port the board runs on

from .compat import const, ticks_diff, ticks_ms

try:  # the built-in: the VM freezes a Python binascii over it (7 KB of heap)
    from ubinascii import hexlify, unhexlify
except ImportError:  # CPython
    from binascii import hexlify, unhexlify

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
_TIMEOUT = const(10)  # seconds for TCP connect, CONNACK, and each write

# In-flight entry fields. An entry is a list, not an object: 5 slots, one
# allocation besides the packet itself.
_PID = const(0)
_PKT = const(1)  # the whole PUBLISH packet, ready to write; DUP set in place
_SENT = const(2)  # connection number it was last sent on; 0 = never sent
_AT = const(3)  # ticks_ms when last sent
_FIRST = const(4)  # published by on_connect: goes before the backlog


class MQTTError(OSError):
    # The broker refused or broke the protocol. `rc` is the CONNACK return
    # code when the broker refused the connection, None otherwise.
    rc: "int | None" = None


def encode_length(n):
    # MQTT remaining length: 7 bits a byte, little end first, 1 to 4 bytes.
    if not 0 <= n <= _MAX_LENGTH:
        raise ValueError(n)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def backoff_wait(delay, r8):
    # Equal jitter: a wait in [delay/2, delay] from 8 random bits, so a whole
    # school's boards that lost the gateway together do not come back in step.
    return delay // 2 + (r8 * (delay - delay // 2) >> 8)


def _bytes(x):
    return x.encode() if isinstance(x, str) else bytes(x)


async def _wait(ev, ms):
    # Wait for the event at most `ms`; a timeout is no error.
    try:
        await asyncio.wait_for(ev.wait(), ms / 1000)
    except asyncio.TimeoutError:
        pass


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
        max_packet=4096,
        retry_ms=5000,
        key=None,
    ):
        # `key`: the board's key in hexadecimal, as config.json holds it, or
        # None (unsigned). HMAC-SHA256 is written here: MicroPython has
        # hashlib.sha256, but the board's build ships no hmac module (the
        # field's micropython-lib one is not on the board). The key's inner
        # and outer pads are made once (RFC 2104: a key longer than a block
        # is hashed first); self.key holds them, 2 x 64 bytes. (`key`, not a
        # new name: MicroPython knows this one, and the qstr pool of the
        # school day is full, docs/board.md.)
        if key is not None:
            key = unhexlify(key)
            if len(key) > 64:
                key = sha256(key).digest()
            key += bytes(64 - len(key))
            key = bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)
        self.key = key
        self.server = server
        self.port = port
        self.keepalive = keepalive
        self.on_message = on_message
        self.on_connect = on_connect
        self.backoff_ms = backoff_ms
        self.max_inflight = max_inflight
        self.max_packet = max_packet
        self.retry_ms = retry_ms
        # The CONNECT packet is the same at every connection: built once, it
        # holds the identity, the credentials and the Last Will. Clean session.
        flags = 0x02
        parts = [b"\x00\x04MQTT\x04", b"", bytes((keepalive >> 8, keepalive & 0xFF)), (_bytes(client_id),)]
        if will is not None:
            t, p, retain, qos = will
            flags |= 0x04 | (qos & 3) << 3 | (0x20 if retain else 0)
            t = _bytes(t)
            parts += ((t,), (self.sign(t, _bytes(p)),))
        if user is not None:
            flags |= 0x80
            parts.append((_bytes(user),))
            if password is not None:
                flags |= 0x40
                parts.append((_bytes(password),))
        parts[1] = bytes((flags,))
        self._hello = self._packet(_CONNECT, parts, 0)
        self.up = False
        self.last_error = None  # the latest failure, for the app to show or log
        # Counters, for diagnostics and the tests.
        self.connects = self.disconnects = self.errors = self.retransmits = 0
        self._inflight = []  # oldest first: the order the broker must see
        self._subs = []  # [topic, qos, connection number it was sent on]
        self._pid = 0
        self._conn = 0  # connection number, bumped at every attempt
        self._writer = None  # the open stream, from connect to teardown; usable while `up`
        self._rx_task = None
        self._first_task = None  # run()'s task while on_connect runs
        self._stopping = False
        self._last_rx = 0
        self._lock = asyncio.Lock()  # one packet at a time on the stream
        self._wake = asyncio.Event()  # connection lost, or disconnect() called
        # Set (never cleared) and replaced at every PUBACK: a set()+clear()
        # pulse is lost when the waiter's wait_for task has not started yet,
        # on both CPython and MicroPython.
        self._acked = asyncio.Event()
        self._done = asyncio.Event()  # run() is not running
        self._done.set()

    # ----- public API -----

    async def run(self):
        # Connect, serve, and reconnect with backoff after any connection
        # failure, until disconnect() or cancellation.
        self._stopping = False
        self._done.clear()
        lo, hi = self.backoff_ms
        delay = lo
        try:
            while not self._stopping:
                t0 = ticks_ms()
                connects = self.connects
                try:
                    await self._session()
                except (OSError, EOFError, asyncio.TimeoutError) as e:  # MQTTError included
                    if e is not self.last_error:  # _error() counted it already
                        self._error(e, 0)
                finally:
                    # Teardown, also when cancelled.
                    self.up = False
                    t = self._rx_task
                    if t is not None:  # it starts at CONNACK
                        t.cancel()
                        self.disconnects += 1
                    w = self._writer
                    self._writer = self._rx_task = None
                    if w is not None:
                        try:
                            w.close()
                            # MicroPython's close() is a no-op; wait_closed() closes.
                            await asyncio.wait_for(w.wait_closed(), 1)
                        except Exception:
                            pass
                if self._stopping:
                    break
                if self.connects != connects and ticks_diff(ticks_ms(), t0) >= _STABLE_MS:
                    delay = lo
                wait = backoff_wait(delay, getrandbits(8))
                delay = min(delay * 2, hi)
                self._wake.clear()
                await self._pause(wait)
        finally:
            self._done.set()

    async def publish(self, topic, payload, retain=False, qos=0):
        # QoS 0: sent now, or OSError when down. QoS 1: queued in the
        # in-flight table and sent as soon as the connection allows, in order;
        # returns the packet id. OSError("inflight full") when the table holds
        # max_inflight messages (messages published from on_connect, such as
        # the birth, are always taken).
        topic = _bytes(topic)
        # Checked here: a queued message the broker refuses would make it drop
        # every connection, for ever.
        if not topic or 43 in topic or 35 in topic:  # "+" or "#"
            raise ValueError(topic)
        first = _PUBLISH | (1 if retain else 0)
        parts = ((topic,), self.sign(topic, _bytes(payload)))
        if qos == 0:
            return await self._send(self._packet(first, parts, 0))
        if qos != 1:
            raise ValueError(qos)
        q = self._inflight
        priority = self._first_task is asyncio.current_task()
        if len(q) >= self.max_inflight and not priority:
            raise OSError("inflight full")
        pkt = self._packet(first | 0x02, parts, 1)
        pid = self._pid
        i = 0
        while i < len(q) and (q[i][_FIRST] or not priority):
            i += 1
        q.insert(i, [pid, pkt, 0, 0, priority])
        try:
            await self._send()
        except OSError:
            pass  # stays queued; sent again after the reconnect
        return pid

    async def subscribe(self, topic, qos=1):
        # Remember the subscription (re-sent after every reconnect) and send
        # it now if connected. Returns the SUBSCRIBE packet id, or None.
        topic = _bytes(topic)
        qos = 1 if qos else 0
        for s in self._subs:
            if s[0] == topic:
                break
        else:
            s = [topic, qos, 0]
            self._subs.append(s)
        if s[1] != qos:
            s[1] = qos
            s[2] = 0  # not sent at this QoS
        if not self.up or s[2] == self._conn:
            return None  # sent at connect, or already on this connection
        s[2] = self._conn
        try:
            await self._send(self._packet(_SUBSCRIBE, (b"", (topic,), bytes((qos,))), 1))
        except OSError:
            return None  # remembered: sent again after the reconnect
        return self._pid

    async def disconnect(self):
        # Clean DISCONNECT (the broker drops the Last Will) and stop run().
        self._stopping = True
        try:
            await self._send(b"\xe0\x00")
        except OSError:
            pass  # not connected
        self.up = False
        self._wake.set()
        if self._first_task is not asyncio.current_task():  # else on_connect called us
            await _wait(self._done, _TIMEOUT * 1000)

    def sign(self, topic, payload):
        # `payload`, a JSON object's text, as it goes out on `topic` (bytes):
        # with a key, its closing brace becomes `,"mac":"<32 hex>"}`, the
        # first 16 bytes of HMAC-SHA256(key, topic "\n" payload).
        k = self.key
        if k is None:
            return payload  # an unprovisioned board: development only
        h = sha256(k[0])
        h.update(topic)
        h.update(b"\n")
        h.update(payload)
        h = sha256(k[1] + h.digest())
        return payload[:-1] + b',"mac":"' + hexlify(h.digest()[:16]) + b'"}'

    def acked(self, pid):
        # True once the QoS 1 message `pid` is no longer waiting for PUBACK.
        for e in self._inflight:
            if e[_PID] == pid:
                return False
        return True

    async def wait_puback(self, pid, timeout_ms):
        # Wait until `pid` is PUBACKed; False if timeout_ms passes first.
        t0 = ticks_ms()
        while not self.acked(pid):
            left = timeout_ms - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                return False
            await _wait(self._acked, left)
        return True

    # ----- one connection -----

    async def _session(self):
        self._conn += 1
        conn = self._conn
        # EOFError and asyncio.TimeoutError from here reach run() as they are.
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.server, self.port), _TIMEOUT)
        self._writer = writer  # for teardown; publishers wait for `up`
        writer.write(self._hello)
        await asyncio.wait_for(writer.drain(), _TIMEOUT)
        # CONNACK is 4 bytes; whatever else comes first is as wrong, cut or not.
        ack = await asyncio.wait_for(reader.readexactly(4), _TIMEOUT)
        if ack[0] != _CONNACK or ack[1] != 2:
            raise MQTTError("no CONNACK")
        if ack[3]:
            e = MQTTError("connection refused (CONNACK %d)" % ack[3])
            e.rc = ack[3]
            raise e
        self._last_rx = pinged = ticks_ms()
        self.connects += 1
        self.up = True
        self._rx_task = asyncio.create_task(self._read_loop(reader, conn))
        for s in self._subs:
            if s[2] != conn:
                await self.subscribe(s[0], s[1])
        # on_connect (the birth, the subscriptions) goes before the backlog:
        # its QoS 1 messages jump the queue, everyone else's wait behind it.
        for e in self._inflight:
            e[_FIRST] = False
        if self.on_connect is not None:
            self._first_task = asyncio.current_task()
            try:
                r = self.on_connect()
                if hasattr(r, "send"):  # a coroutine or MicroPython generator
                    await r
            except Exception as e:  # the app's bug: count it, retry later
                raise e if isinstance(e, OSError) else MQTTError("on_connect: %r" % (e,))
            finally:
                self._first_task = None
        await self._send()
        # Keepalive: ping, detect a dead broker, retransmit unacknowledged
        # messages, until the connection is lost (_error() has counted why).
        ka = self.keepalive * 1000
        while self.up:
            if self._stopping:  # disconnect() came while we were connecting
                await self._send(b"\xe0\x00")
                return
            now = ticks_ms()
            nap = self.retry_ms
            if ka:
                quiet_rx = ticks_diff(now, self._last_rx)
                if quiet_rx >= ka:
                    raise OSError("keepalive")  # the broker went silent
                # Ping every half keepalive, whatever else flows: a board that
                # only publishes QoS 0 hears nothing back otherwise, and
                # tracking both directions costs more code than the 2 bytes.
                ping_in = ka // 2 - ticks_diff(now, pinged)
                if ping_in <= 0:
                    pinged = now
                    await self._send(b"\xc0\x00")
                    ping_in = ka // 2
                nap = min(nap, ping_in, ka - quiet_rx)
            for e in self._inflight:
                if e[_SENT] == conn:
                    age = ticks_diff(now, e[_AT])
                    if age >= self.retry_ms:
                        e[_SENT] = -1  # sent, but not on this round: _send() resends it with DUP
                    else:
                        nap = min(nap, self.retry_ms - age)
            await self._send()
            await self._pause(max(nap, 10))

    def _pause(self, ms):
        # The one place run() waits between attempts: the tests replace it.
        return _wait(self._wake, ms)

    def _error(self, e, conn):
        # Record a connection failure and return it as an OSError. With
        # `conn` (not 0), it ends that connection if it is still the current one and
        # up (else it was counted already).
        # CPython's readexactly raises IncompleteReadError (an EOFError),
        # MicroPython's raises EOFError; asyncio.TimeoutError is not an OSError
        # on MicroPython. Everything that means "this connection is gone"
        # becomes an OSError, the one failure the robust loop handles.
        if isinstance(e, EOFError):
            e = OSError("closed")
        elif isinstance(e, asyncio.TimeoutError):
            e = OSError("timed out")
        elif not isinstance(e, OSError):
            e = MQTTError("bad packet (%r)" % (e,))
        if conn:
            if conn != self._conn or not self.up:
                return e
            self.up = False
            self._wake.set()
        self.last_error = e
        self.errors += 1
        return e

    # ----- writing -----

    async def _send(self, pkt=None):
        # Write `pkt`; without one, flush: send every in-flight message not
        # yet sent on this connection, oldest first. One writer at a time
        # (MicroPython allows one drain() per stream), and the flusher sends
        # the whole backlog, so order holds whichever task calls.
        async with self._lock:
            conn = self._conn
            while True:
                if pkt is None:
                    for e in self._inflight:
                        if e[_SENT] != conn:
                            break
                    else:
                        return
                    if not self.up or self._first_task and not e[_FIRST]:
                        return  # stays queued; the backlog waits for on_connect
                    if e[_SENT]:
                        # In place: a transport still holding the first copy
                        # can only see DUP set early, which the broker tolerates.
                        e[_PKT][0] |= _DUP
                        self.retransmits += 1
                    e[_SENT] = conn
                    e[_AT] = ticks_ms()
                    data = e[_PKT]
                else:
                    data = pkt
                w = self._writer
                if w is None or not self.up:
                    raise OSError("offline")
                try:
                    w.write(data)
                    await asyncio.wait_for(w.drain(), _TIMEOUT)
                except (OSError, EOFError, asyncio.TimeoutError) as x:
                    raise self._error(x, conn)
                if pkt is not None:
                    return

    def _packet(self, first, parts, pid):
        # One packet in one bytearray: header, then each part as-is (bytes) or
        # with a 2-byte length prefix (a 1-tuple). With `pid` true, a new packet
        # id (self._pid, not in flight) goes after the first part.
        if pid:
            while True:
                pid = self._pid = self._pid % 65535 + 1
                if self.acked(pid):
                    break
        n = 2 if pid else 0
        for p in parts:
            n += len(p[0]) + 2 if isinstance(p, tuple) else len(p)
        head = encode_length(n)
        i = 1 + len(head)
        pkt = bytearray(i + n)
        pkt[0] = first
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

    # ----- reading -----

    async def _read_loop(self, r, conn):
        # Packet types are compared with their flags: flags other than
        # PUBLISH's are fixed, so a wrong one is an unexpected packet.
        try:
            while True:
                first = (await r.readexactly(1))[0]
                n = shift = 0
                for _ in range(4):
                    b = (await r.readexactly(1))[0]
                    n |= (b & 0x7F) << shift
                    if not b & 0x80:
                        break
                    shift += 7
                else:
                    raise MQTTError("length > 4 bytes")
                if n > self.max_packet:
                    raise MQTTError("%d > max_packet" % n)
                body = await r.readexactly(n) if n else b""
                self._last_rx = ticks_ms()
                if first & 0xF0 == _PUBLISH:
                    qos = first >> 1 & 3
                    if qos > 1:
                        raise MQTTError("PUBLISH QoS %d" % qos)  # we subscribe at most QoS 1
                    if n < 2 or n < (i := 2 + (body[0] << 8 | body[1])) + 2 * qos:
                        raise MQTTError("topic overruns")
                    if self.on_message is not None:
                        try:
                            x = self.on_message(body[2:i], body[i + 2 * qos :], bool(first & 1))
                            if hasattr(x, "send"):  # a coroutine or MicroPython generator
                                await x
                        except Exception as e:  # the app's bug must not drop the link
                            self.last_error = e
                            self.errors += 1
                    if qos:
                        await self._send(bytes((_PUBACK, 2, body[i], body[i + 1])))
                elif first == _PUBACK and n == 2:
                    pid = body[0] << 8 | body[1]
                    for e in self._inflight:
                        if e[_PID] == pid:
                            self._inflight.remove(e)
                            ev = self._acked
                            self._acked = asyncio.Event()
                            ev.set()
                            break
                elif first == _SUBACK and n >= 3:
                    if body[2] & 0x80:
                        self._error(MQTTError("SUBACK %d refused" % (body[0] << 8 | body[1])), 0)
                elif not (first == _PINGRESP and n == 0 or first == _UNSUBACK and n == 2):
                    raise MQTTError("unexpected type 0x%02x" % first)
        except Exception as e:  # not CancelledError: teardown cancels us
            self._error(e, conn)
