# PJLink class 1 over TCP (port 4352) for firmware/projector.py: one
# connection per exchange (the projector closes one left idle for 30 s), the
# greeting, and MD5 authentication when the projector asks for it. Imported
# only for a PJLink projector (projector.open_link).
import asyncio


class TcpLink:
    """The link (see firmware/projector.py) to a PJLink projector."""

    def __init__(self, host, port, password):
        self.host = host
        self.port = port
        self.password = password

    async def exchange(self, frame, timeout_ms, end):
        try:
            return await asyncio.wait_for(self._exchange(frame, end), timeout_ms / 1000)
        except asyncio.TimeoutError:  # not an OSError on MicroPython
            raise OSError("no reply")
        except EOFError:
            raise OSError("closed")

    async def _exchange(self, frame, end):
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            buf = b""
            while True:
                chunk = await reader.read(64)
                if not chunk:
                    raise OSError("closed")
                buf += chunk
                if frame is None:  # sent: the reply, up to `end`
                    if end in buf:
                        return buf
                elif b"\r" in buf:  # the greeting
                    if buf[:8] not in (b"PJLINK 0", b"PJLINK 1"):
                        return buf  # PJLINK ERRA, or garbage: the table decides
                    if buf.startswith(b"PJLINK 1 "):
                        frame = md5_hex(buf[9:17] + (self.password or "").encode()) + frame
                    writer.write(frame)
                    await writer.drain()
                    frame = None
                    buf = b""
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, EOFError):
                pass


# hashlib.md5 exists on the ESP32 port but not in every build (not in the
# WebAssembly VM the tests use; it is a build option), and PJLink needs
# nothing else: a plain RFC 1321 MD5, slow with 32-bit ints but run once per
# exchange on a 40-byte message.
_KS = (  # the 64 sines (u32 little-endian each)
    b"\x78\xa4\x6a\xd7\x56\xb7\xc7\xe8\xdb\x70\x20\x24\xee\xce\xbd\xc1\xaf\x0f\x7c\xf5\x2a\xc6\x87\x47"
    b"\x13\x46\x30\xa8\x01\x95\x46\xfd\xd8\x98\x80\x69\xaf\xf7\x44\x8b\xb1\x5b\xff\xff\xbe\xd7\x5c\x89"
    b"\x22\x11\x90\x6b\x93\x71\x98\xfd\x8e\x43\x79\xa6\x21\x08\xb4\x49\x62\x25\x1e\xf6\x40\xb3\x40\xc0"
    b"\x51\x5a\x5e\x26\xaa\xc7\xb6\xe9\x5d\x10\x2f\xd6\x53\x14\x44\x02\x81\xe6\xa1\xd8\xc8\xfb\xd3\xe7"
    b"\xe6\xcd\xe1\x21\xd6\x07\x37\xc3\x87\x0d\xd5\xf4\xed\x14\x5a\x45\x05\xe9\xe3\xa9\xf8\xa3\xef\xfc"
    b"\xd9\x02\x6f\x67\x8a\x4c\x2a\x8d\x42\x39\xfa\xff\x81\xf6\x71\x87\x22\x61\x9d\x6d\x0c\x38\xe5\xfd"
    b"\x44\xea\xbe\xa4\xa9\xcf\xde\x4b\x60\x4b\xbb\xf6\x70\xbc\xbf\xbe\xc6\x7e\x9b\x28\xfa\x27\xa1\xea"
    b"\x85\x30\xef\xd4\x05\x1d\x88\x04\x39\xd0\xd4\xd9\xe5\x99\xdb\xe6\xf8\x7c\xa2\x1f\x65\x56\xac\xc4"
    b"\x44\x22\x29\xf4\x97\xff\x2a\x43\xa7\x23\x94\xab\x39\xa0\x93\xfc\xc3\x59\x5b\x65\x92\xcc\x0c\x8f"
    b"\x7d\xf4\xef\xff\xd1\x5d\x84\x85\x4f\x7e\xa8\x6f\xe0\xe6\x2c\xfe\x14\x43\x01\xa3\xa1\x11\x08\x4e"
    b"\x82\x7e\x53\xf7\x35\xf2\x3a\xbd\xbb\xd2\xd7\x2a\x91\xd3\x86\xeb"
    # then the 16 shift amounts: 4 per round
    b"\x07\x0c\x11\x16\x05\x09\x0e\x14\x04\x0b\x10\x17\x06\x0a\x0f\x15"
)


def md5_hex(data):
    """MD5 as lowercase hex bytes: PJLink's challenge answer."""
    import hashlib
    import struct

    md5 = getattr(hashlib, "md5", None)
    if md5 is not None:
        digest = md5(data).digest()
    else:
        M = 0xFFFFFFFF
        n = len(data)
        msg = bytes(data) + b"\x80" + bytes((55 - n) % 64) + struct.pack("<II", (n << 3) & M, n >> 29)
        K = struct.unpack_from("<64I", _KS)
        h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
        for off in range(0, len(msg), 64):
            X = struct.unpack("<16I", msg[off:off + 64])
            a, b, c, d = h
            for i in range(64):
                r = i >> 4  # the round: its function of b, c, d and its word of X
                f = (b & c | ~b & d, d & b | ~d & c, b ^ c ^ d, c ^ (b | ~d & M))[r]
                f = (f + a + K[i] + X[(i, 5 * i + 1, 3 * i + 5, 7 * i)[r] & 15]) & M
                s = _KS[256 + (r << 2 | i & 3)]
                a, d, c = d, c, b
                b = (b + (f << s | f >> 32 - s)) & M
            h = [(h[0] + a) & M, (h[1] + b) & M, (h[2] + c) & M, (h[3] + d) & M]
        digest = struct.pack("<4I", *h)
    out = ""
    for x in digest:
        out += "%02x" % x
    return out.encode()
