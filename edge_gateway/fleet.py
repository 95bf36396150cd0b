"""The school's fleet: who may talk on the school broker (docs/security.md).

One JSON file (`fleet.json`, mode 0600, beside the gateway's database)
holds every identity: the gateway's own (its broker password) and, per
board, its MQTT username, the hash of its MQTT password in Mosquitto's
format, and the key it signs its messages with (protocol/mac.py). A board's
password is shown once, when it is made (`preau provision add/rekey/
replace`), and never kept in clear: the broker checks it against the hash.
The gateway keeps the board keys, since it checks every message's MAC.

A board's username is `<room>.<6 hex>`: a new board for a room (replace)
gets a new username, so the revoked one stays refused even if its password
leaked. Revoked boards stay in the file, marked, for the list and the audit.

Written by `preau provision` (edge_gateway/provision.py) under an exclusive
lock, atomically (temporary file, fsync, rename); read by the gateway at
start and whenever the file changes."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

from common.files import write_private
from protocol.codec import valid_name
from protocol.mac import KEY_BYTES, parse_key

FORMAT = 1
ACTIVE, REVOKED = "active", "revoked"
# Mosquitto's PBKDF2-SHA512 password hash ($7$, what mosquitto_passwd writes).
# Its default of 101 rounds is kept: every password here is 24 random bytes,
# which no stretching could make stronger, and each CONNECT costs the broker
# one hash, so more rounds would only help a client flooding it with CONNECTs.
HASH_ROUNDS = 101
SALT_BYTES = 12
PASSWORD_BYTES = 24


class FleetError(ValueError):
    """The fleet file is unreadable or wrong, or an operation makes no sense
    (an unknown room, a second board for a room)."""


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def mosquitto_hash(password: str, salt: bytes | None = None, rounds: int = HASH_ROUNDS) -> str:
    """The password file's hash field, as `mosquitto_passwd` writes it."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return "$7$%d$%s$%s" % (rounds, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def check_password(password: str, hashed: str) -> bool:
    try:
        _, kind, rounds, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        ours = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(rounds))
    except (ValueError, TypeError):
        return False
    return secrets.compare_digest(base64.b64encode(ours).decode(), digest)


@dataclass(frozen=True)
class Board:
    username: str
    room: str
    password_hash: str = field(repr=False)
    key: str = field(repr=False)  # 64 hex characters: the board's message key (secret)
    created: float
    state: str = ACTIVE
    revoked_at: float | None = None
    rekeyed_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    @property
    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key)


@dataclass(frozen=True)
class Credentials:
    """What a board is flashed with: shown once, never stored in clear."""

    school: str
    room: str
    username: str
    password: str
    key: str

    def __repr__(self) -> str:  # never a secret in a log line or a traceback
        return f"Credentials(school={self.school!r}, room={self.room!r}, username={self.username!r}, ***)"

    def board_config(self) -> dict:
        """The keys of the board's config.json that identify it (firmware/config.py)."""
        return {"school": self.school, "room": self.room, "user": self.username, "password": self.password,
                "key": self.key}


@dataclass
class Fleet:
    school: str
    gateway_username: str
    gateway_password: str = field(repr=False)  # the gateway needs it in clear to connect
    boards: list[Board] = field(default_factory=list)

    # ------------------------------------------------------------ queries

    def board_of(self, room: str) -> Board | None:
        """The room's active board, if any."""
        return next((b for b in self.boards if b.room == room and b.active), None)

    def find(self, who: str) -> Board:
        """An active board by room or username."""
        for b in self.boards:
            if b.active and who in (b.room, b.username):
                return b
        raise FleetError(f"no active board for {who!r} (see `preau provision list`)")

    def keys(self) -> dict[str, bytes]:
        """room -> the active board's message key."""
        return {b.room: b.key_bytes for b in self.boards if b.active}

    def active(self) -> list[Board]:
        return [b for b in self.boards if b.active]

    # ------------------------------------------------------------ changes

    def _new_board(self, room: str, now: float) -> tuple[Board, Credentials]:
        if not valid_name(room):
            raise FleetError(f"room {room!r}: 1-32 characters of a-z, 0-9 and '-'")
        taken = {b.username for b in self.boards}
        while True:
            username = f"{room}.{secrets.token_hex(3)}"
            if username not in taken:
                break
        password = new_password()
        key = secrets.token_hex(KEY_BYTES)
        board = Board(username, room, mosquitto_hash(password), key, now)
        return board, Credentials(self.school, room, username, password, key)

    def add(self, room: str, now: float | None = None) -> Credentials:
        if self.board_of(room) is not None:
            raise FleetError(f"room {room} already has a board ({self.board_of(room).username}); "  # type: ignore[union-attr]
                             "use `preau provision replace` for a new one")
        board, creds = self._new_board(room, time.time() if now is None else now)
        self.boards.append(board)
        return creds

    def revoke(self, who: str, now: float | None = None) -> Board:
        board = self.find(who)
        revoked = replace(board, state=REVOKED, revoked_at=time.time() if now is None else now)
        self.boards[self.boards.index(board)] = revoked
        return revoked

    def rekey(self, who: str, now: float | None = None) -> Credentials:
        """A new password and key for the same board (a leaked config.json)."""
        board = self.find(who)
        password, key = new_password(), secrets.token_hex(KEY_BYTES)
        self.boards[self.boards.index(board)] = replace(board, password_hash=mosquitto_hash(password), key=key,
                                                        rekeyed_at=time.time() if now is None else now)
        return Credentials(self.school, board.room, board.username, password, key)

    def rekey_gateway(self) -> None:
        """A new broker password for the gateway; the running gateway takes it
        from the file before the broker's reload drops its connection."""
        self.gateway_password = new_password()

    def replace_board(self, room: str, now: float | None = None) -> tuple[Board, Credentials]:
        """A dead or stolen board's room gets a new board: the old identity is revoked."""
        now = time.time() if now is None else now
        old = self.revoke(room, now)
        return old, self.add(room, now)

    # ------------------------------------------------------------ file

    def to_json(self) -> dict:
        return {"format": FORMAT, "school": self.school,
                "gateway": {"username": self.gateway_username, "password": self.gateway_password},
                "boards": [asdict(b) for b in self.boards]}

    @classmethod
    def new(cls, school: str, gateway_id: str) -> Fleet:
        return cls(school, f"gateway.{gateway_id}", new_password())

    @classmethod
    def from_json(cls, data: object, where: str) -> Fleet:
        def bad(what: str) -> FleetError:
            return FleetError(f"{where}: {what}")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f"not a Préau fleet file (format {FORMAT})")
        gw = data.get("gateway")
        if not isinstance(gw, dict) or not all(isinstance(gw.get(k), str) and gw.get(k)
                                               for k in ("username", "password")):
            raise bad("gateway: expected a username and a password")
        if not valid_name(data.get("school")):
            raise bad("school: expected a school name")
        boards = []
        rows = data.get("boards")
        if not isinstance(rows, list):
            raise bad("boards: expected a list")
        names = set()
        for i, row in enumerate(rows):
            try:
                board = Board(**row)
                parse_key(board.key)
                if not (valid_name(board.room) and isinstance(board.username, str)
                        and board.username.startswith(board.room + ".")
                        and board.state in (ACTIVE, REVOKED)
                        and isinstance(board.password_hash, str) and board.password_hash.startswith("$7$")):
                    raise ValueError("room, username, state or password hash")
            except (TypeError, ValueError) as e:
                raise bad(f"boards[{i}]: {e}") from None
            if board.username in names:
                raise bad(f"boards[{i}]: username {board.username} twice")
            names.add(board.username)
            boards.append(board)
        fleet = cls(data["school"], gw["username"], gw["password"], boards)
        rooms = [b.room for b in fleet.active()]
        if len(rooms) != len(set(rooms)):
            raise bad("two active boards for one room")
        return fleet


def load(path: str) -> Fleet:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise FleetError(f"{path}: no fleet file yet (run `preau provision add <room>`)") from None
    except OSError as e:
        raise FleetError(f"{path}: cannot read ({e.strerror})") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise FleetError(f"{path}: not valid JSON ({e})") from None
    return Fleet.from_json(data, path)


def save(fleet: Fleet, path: str) -> None:
    write_private(path, json.dumps(fleet.to_json(), indent=1, sort_keys=True) + "\n")


@contextlib.contextmanager
def editing(path: str, school: str, gateway_id: str) -> Iterator[Fleet]:
    """Load (or start) the fleet under an exclusive lock, and save it if the
    block ends without an error: two technicians never lose each other's change."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if os.path.exists(path):
            fleet = load(path)
            if fleet.school != school:
                raise FleetError(f"{path} is school {fleet.school}'s, not {school}'s")
        else:
            fleet = Fleet.new(school, gateway_id)
        yield fleet
        save(fleet, path)
    finally:
        os.close(lock_fd)
