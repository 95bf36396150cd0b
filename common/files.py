"""Files written whole or not at all: a temporary file in the same folder,
fsync, rename, fsync of the folder. A reader (Mosquitto reloading its ACL,
a worker reading the CA's index) never sees half a file, and a power cut
leaves the old one or the new one.

A file holding a secret (a private key) is mode 0600 from its creation
(mkstemp creates it so), never readable by others even for an instant."""

from __future__ import annotations

import contextlib
import os
import tempfile

PRIVATE = 0o600
PUBLIC = 0o644


def write_atomic(path: str, data: str | bytes, mode: int = PUBLIC) -> None:
    """Replace `path` with `data`, atomically, with `mode`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself, durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_private(path: str, data: str | bytes) -> None:
    """A file holding a secret: 0600 from its creation, atomically."""
    write_atomic(path, data, PRIVATE)
