# Board message authentication (docs/protocol.md, "Message authentication").
#
# Every message a provisioned board publishes (state, evt, tele, ack, and
# its Last Will) ends with a MAC member: the JSON object's closing brace is
# replaced by `,"mac":"<32 hex>"}`. The MAC is HMAC-SHA256 under the board's
# own 32-byte key, over `topic + "\n" + body`, where body is the object
# without the member (its text up to the comma, then "}"); the first 16
# bytes of the digest, in lowercase hex. The topic is inside the MAC, so a
# message signed for one room cannot be replayed as another's.
#
# The broker's ACL already keeps one board off another's topics; the MAC
# makes the gateway's own check independent of the broker's configuration:
# a message for a room that is not signed with that room's current board key
# is refused (edge_gateway/intake.py), even if a broker let it through.
#
# The board computes the same with hashlib.sha256 (firmware/mqtt.py).
import hashlib
import hmac

from .wire import _fault

KEY_BYTES = 32
MAC_HEX = 32  # 16 bytes of the digest: 128 bits
_PREFIX = b',"mac":"'
SUFFIX_LEN = len(_PREFIX) + MAC_HEX + 2  # ,"mac":"<hex>"}


def mac_of(key: bytes, topic: str, body: bytes) -> bytes:
    return hmac.new(key, topic.encode() + b"\n" + body, hashlib.sha256).hexdigest()[:MAC_HEX].encode()


def sign(key: bytes, topic: str, body: bytes) -> bytes:
    """The payload a board publishes: `body` (a JSON object's text) with its MAC."""
    if len(body) <= 2 or not body.startswith(b"{") or not body.endswith(b"}"):
        raise ValueError("a signed body is a non-empty JSON object's text")
    return body[:-1] + _PREFIX + mac_of(key, topic, body) + b'"}'


def split(payload: bytes) -> tuple[bytes, bytes] | None:
    """(body, mac) when the payload ends with a MAC member, else None."""
    if len(payload) < SUFFIX_LEN + 2 or not payload.endswith(b'"}'):
        return None
    cut = len(payload) - SUFFIX_LEN
    if payload[cut:cut + len(_PREFIX)] != _PREFIX:
        return None
    mac = payload[cut + len(_PREFIX):-2]
    if any(c not in b"0123456789abcdef" for c in mac):
        return None
    return payload[:cut] + b"}", mac


def verify(key: bytes, topic: str, payload: bytes) -> bytes:
    """The body of a signed payload; a ProtocolError of kind "mac" when it
    is not signed, or not signed with `key` for this topic."""
    parts = split(payload)
    if parts is None:
        raise _fault("not signed (no MAC member at the end)", "mac")
    body, mac = parts
    if not hmac.compare_digest(mac, mac_of(key, topic, body)):
        raise _fault("MAC does not match this room's board key", "mac")
    return body


def parse_key(text: object) -> bytes:
    """A board key as provisioned: 64 hex characters."""
    if not isinstance(text, str) or len(text) != 2 * KEY_BYTES:
        raise ValueError("a board key is 64 hexadecimal characters")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError("a board key is 64 hexadecimal characters") from None
    if len(key) != KEY_BYTES:  # fromhex skips spaces
        raise ValueError("a board key is 64 hexadecimal characters")
    return key
