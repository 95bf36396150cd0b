# The board's outbox: events and telemetry kept in flash until the broker has
# them, so they survive resets and power cuts and go out in order after a
# reconnection. Format, power-loss argument and limits: docs/outbox.md.
#
# Files in `directory`:
#   e1 e2 ...  event segments, t1 t2 ... telemetry segments: append-only
#              records; a new segment once one holds `segment` bytes.
#   sent       replaced by write-then-rename at every pop (as the boot
#              counter): id of the last record sent, the two drop counters,
#              CRC-32 of those (u32 each). A cut during a pop sends that
#              one record again at most (the gateway de-duplicates by
#              (boot, seq)); a popped record never comes back.
# A record: 0xA5, kind (0 event, 1 telemetry), payload length (u16), record
# id (u32, one counter for both kinds), payload, CRC-32 of all that (u32),
# little-endian, written with one write(). Reopening scans every segment; a
# record that fails its CRC is skipped and the scan resyncs on the next 0xA5
# whose record checks, so a torn or corrupt record loses itself only.
#
# Events and telemetry live in separate segments so that "drop the oldest
# telemetry first" deletes a file and never rewrites one: over the cap the
# oldest telemetry segment goes, then the oldest event segment (drops come
# by segment, counted by record). peek() merges the two kinds by record id.
#
# RAM: one small int per unsent record (segment << 16 | offset; payloads stay
# in flash) and one record-sized buffer. Heap: every method and distinct name
# costs some once loaded (bench/module_heap.py), hence few, larger methods.
import os
import struct

from .compat import const

try:  # the built-in: the VM freezes a Python binascii over it (7 KB of heap)
    from ubinascii import crc32
except ImportError:  # CPython
    from binascii import crc32

EVENT = "evt"  # the kinds peek() returns: the topic leaves they go to
TELEMETRY = "tele"
MAX_PAYLOAD = const(1024)  # the protocol's MAX_BOARD_PAYLOAD (protocol/wire.py)
_HEAD = const(8)  # magic, kind, length, id
_OVER = const(12)  # head and CRC


def replace_file(path, data):
    """Write then rename: a power cut leaves the old file whole, never a torn
    one. Raises OSError. (The outbox's marker, the boot counter.)"""
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.rename(path + ".new", path)


class Outbox:
    def __init__(self, directory, cap=65536, segment=0, log=None):
        self.dir = directory = directory.rstrip("/")
        self.cap = cap
        self.segment = min(segment or cap // 8, 32768)  # offsets fit 16 bits
        self.log = log
        self.bytes_used = 0
        buf = bytearray(MAX_PAYLOAD + _OVER)  # for the scan only: freed after it
        # Per kind: the unsent records (segment << 16 | offset), oldest first,
        # which also give the segments in use (a kind with none starts again
        # at segment 1), and the size of its newest segment (-1: torn or
        # refused, start a new one).
        self._recs = ([], [])
        self._tail = [0, 0]
        self._peeked = None
        self.sent = self.dropped = self.dropped_tele = 0
        try:
            os.mkdir(directory)
        except OSError:
            pass  # there already
        try:
            with open(directory + "/sent", "rb") as f:
                raw = f.read(16)
            if len(raw) == 16 and crc32(raw[:12]) == struct.unpack("<I", raw[12:])[0]:
                self.sent, self.dropped, self.dropped_tele = struct.unpack("<III", raw[:12])
            else:  # resend rather than lose
                self._say("damaged", "sent")
        except OSError:
            pass  # a new outbox
        found = ([], [])
        try:
            for name in os.listdir(directory):
                k = "et".find(name[0])
                if k >= 0 and name[1:].isdigit():
                    found[k].append(int(name[1:]))
        except OSError as e:
            self._say(e, directory)
        self._id = self.sent  # the last record id used
        for k in range(2):
            recs = self._recs[k]
            for n in sorted(found[k]):  # e9 before e10
                path = "%s/%s%d" % (directory, "et"[k], n)
                first = len(recs)
                pos = end = size = 0
                try:
                    size = os.stat(path)[6]
                    with open(path, "rb") as f:
                        while pos < size:
                            got = self._check(f, pos, k, size)
                            if got:
                                if got[1] > self.sent:
                                    recs.append(n << 16 | pos)
                                self._id = max(self._id, got[1])
                                pos = end = pos + got[0] + _OVER
                                continue
                            if pos == end:
                                self._say("damaged", path)
                            # resync on the next magic byte; its record must check too
                            f.seek(pos + 1)
                            got = f.readinto(buf)
                            i = buf.find(b"\xa5", 0, got)
                            pos += 1 + (got if i < 0 else i)
                except OSError as e:
                    self._say(e, path)
                    size = end
                if len(recs) == first:  # all sent, or nothing readable
                    self._remove(k, n)
                else:
                    self.bytes_used += size
                    self._tail[k] = size if end == size else -1  # torn tail: append to a new segment

    def __len__(self):
        return len(self._recs[0]) + len(self._recs[1])

    def _say(self, e, path):
        if self.log:
            self.log("outbox: %s: %s" % (path, e))

    def _check(self, f, pos, k, size):
        # (payload length, id, payload and CRC) of a good record of kind k at
        # pos. Read into fresh buffers: a 1 KB buffer held for ever would cost
        # the board more than the garbage of a read now and then.
        f.seek(pos)
        if size - pos < _OVER:
            return None
        head = f.read(_HEAD)
        if len(head) != _HEAD:
            return None
        magic, kind, n, rid = struct.unpack("<BBHI", head)
        if magic != 0xA5 or kind != k or n > MAX_PAYLOAD or size - pos < _OVER + n or not rid:
            return None
        body = f.read(n + 4)
        if len(body) != n + 4 or crc32(memoryview(body)[:n], crc32(head)) != struct.unpack_from("<I", body, n)[0]:
            return None
        return n, rid, body

    def _remove(self, k, n):
        # Segment n of kind k goes: all sent, dropped at the cap, or unreadable.
        path = "%s/%s%d" % (self.dir, "et"[k], n)
        try:
            size = os.stat(path)[6]
            os.remove(path)
            self.bytes_used -= size
        except OSError:
            pass

    def _save(self):
        # Write then rename: a cut mid-write keeps the old marker, so at most
        # the last record popped goes out again (the gateway de-duplicates).
        buf = bytearray(16)
        mv = memoryview(buf)
        struct.pack_into("<III", buf, 0, self.sent, self.dropped, self.dropped_tele)
        struct.pack_into("<I", buf, 12, crc32(mv[:12]))
        try:
            replace_file(self.dir + "/sent", buf)
        except OSError as e:
            self._say(e, "sent")

    def append(self, payload, telemetry=False):
        """Keep one encoded message; False if flash refused it (counted as dropped)."""
        n = len(payload)
        if n > MAX_PAYLOAD:
            raise ValueError(n)  # longer than MAX_PAYLOAD
        k = 1 if telemetry else 0
        size = n + _OVER
        while self.bytes_used + size > self.cap:
            # over the cap: the oldest telemetry segment goes, then the oldest events
            j = 1 if self._recs[1] else 0
            recs = self._recs[j]
            if not recs:
                break
            seg = recs[0] >> 16
            i = 0
            while i < len(recs) and recs[i] >> 16 == seg:
                i += 1
            del recs[:i]
            self.dropped += i
            self.dropped_tele += i * j
            p = self._peeked
            if p and p[0] == j and p[1] >> 16 == seg:
                self._peeked = None  # pop() must not take the next record for it
            self._remove(j, seg)
            self._save()  # the drop counters survive a reset
        recs = self._recs[k]
        seg = recs[-1] >> 16 if recs else 0
        tail = self._tail[k]
        if not recs or tail < 0 or tail + size > self.segment:
            seg += 1
            tail = 0
        self._id += 1
        buf = bytearray(size)
        mv = memoryview(buf)
        struct.pack_into("<BBHI", buf, 0, 0xA5, k, n, self._id)
        buf[_HEAD : _HEAD + n] = payload
        struct.pack_into("<I", buf, _HEAD + n, crc32(mv[: _HEAD + n]))
        path = "%s/%s%d" % (self.dir, "et"[k], seg)
        try:
            # one write; "wb" on a new segment clears a leftover file
            with open(path, "ab" if tail else "wb") as f:
                f.write(mv[:size])
        except OSError as e:
            self._tail[k] = -1
            self.dropped += 1
            self.dropped_tele += k
            self._say(e, path)
            return False
        recs.append(seg << 16 | tail)
        self._tail[k] = tail + size
        self.bytes_used += size
        return True

    def peek(self):
        """(EVENT or TELEMETRY, payload bytes) of the oldest unsent record, or None."""
        ids = [0, 0]  # per kind: id of the oldest unsent record, 0 if none
        n = 0
        body = b""  # the record read last: the one returned
        # Telemetry, then events (the buffer then holds the event), then the
        # telemetry again if it goes first.
        for k in (1, 0, 2):
            if k > 1:
                if not ids[1] or ids[0] and ids[0] < ids[1]:
                    break
                k = 1
            recs = self._recs[k]
            while recs:
                path = "%s/%s%d" % (self.dir, "et"[k], recs[0] >> 16)
                got = None
                try:
                    with open(path, "rb") as f:
                        got = self._check(f, recs[0] & 0xFFFF, k, 0xFFFFFF)  # size: no limit
                except OSError:
                    pass
                if got:
                    n, ids[k], body = got
                    break
                # changed under us since the scan (a flash fault): skip it
                self._say("damaged", path)
                seg = recs.pop(0) >> 16
                if not recs or recs[0] >> 16 != seg:  # that segment is done
                    self._remove(k, seg)
        e, t = ids
        if not (e or t):
            self._peeked = None
            return None
        k = 0 if e and (not t or e < t) else 1
        self._peeked = (k, self._recs[k][0], ids[k])
        return (TELEMETRY if k else EVENT), body[:n]

    def pop(self):
        """Mark the record the last peek() returned as sent; False if the cap dropped it since."""
        p = self._peeked
        self._peeked = None
        if not p:
            return False
        k = p[0]
        self.sent = p[2]
        self._save()
        recs = self._recs[k]
        seg = recs.pop(0) >> 16
        if not recs or recs[0] >> 16 != seg:  # that segment is all sent
            self._remove(k, seg)
        return True
