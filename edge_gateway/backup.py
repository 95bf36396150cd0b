"""`preau gateway backup`: a copy of the gateway's database and fleet file,
taken safely while the gateway runs (the nightly `preau-backup.timer`,
edge_gateway/install.py; restore: docs/install.md).

The database is copied with SQLite's `VACUUM INTO` on a read-only
connection: one read transaction, so the copy is one consistent moment
even while the journal keeps committing (WAL lets a reader and the writer
run together), and never holds half a commit. Copying the file with `cp`
is not safe: the latest commits may live only in `gateway.sqlite-wal`, and
a copy taken during a checkpoint is torn. `VACUUM INTO` over the backup
API because its copy is compact (the pages that pruning freed are not
copied) and a plain file with no WAL beside it; SQLite does not fsync it,
so this module does, checks it (`PRAGMA quick_check`), and only then gives
it its name. The newest `--keep` copies stay.

The fleet file (the boards' keys, mode 0600) goes with it: a gateway
rebuilt on a new card without it would have to provision every board again.
The configuration in /etc/preau is the technician's to keep (docs/install.md)."""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass

from common.files import PRIVATE

PREFIX = "gateway-"
STAMP = "%Y%m%dT%H%M%SZ"  # UTC: names sort by time, and no hour is shown twice in autumn
DEFAULT_KEEP = 14


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Backup:
    database: str
    fleet: str | None
    records: int
    last_seq: int
    schema: int


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check(path: str) -> tuple[int, int, int]:
    """(records, last seq, schema version) of a database copy; BackupError when damaged."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise BackupError(f"{path}: damaged ({verdict})")
            schema = int(conn.execute("PRAGMA user_version").fetchone()[0])
            records = int(conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    except sqlite3.Error as e:
        raise BackupError(f"{path}: not a gateway database ({e})") from None
    return records, int(row[0]) if row else 0, schema


def backup(db: str, directory: str, fleet: str | None = None, keep: int = DEFAULT_KEEP,
           now: Callable[[], float] = time.time) -> Backup:
    if not os.path.exists(db):
        raise BackupError(f"{db}: no such database (has the gateway ever started?)")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    stamp = time.strftime(STAMP, time.gmtime(now()))
    target = os.path.join(directory, f"{PREFIX}{stamp}.sqlite")
    partial = target + ".partial"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)  # a copy a power cut interrupted
    try:
        old_umask = os.umask(0o077)  # the copy is 0600 from its creation
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                conn.execute("PRAGMA busy_timeout=10000")
                conn.execute("VACUUM INTO ?", (partial,))
        finally:
            os.umask(old_umask)
        _fsync(partial)
        records, last_seq, schema = check(partial)
        os.replace(partial, target)
    except sqlite3.Error as e:
        raise BackupError(f"{db}: copy failed ({e})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    fleet_copy = None
    if fleet is not None and os.path.exists(fleet):
        fleet_copy = os.path.join(directory, f"fleet-{stamp}.json")
        shutil.copyfile(fleet, fleet_copy + ".partial")
        os.chmod(fleet_copy + ".partial", PRIVATE)
        _fsync(fleet_copy + ".partial")
        os.replace(fleet_copy + ".partial", fleet_copy)
    _fsync(directory)
    _keep_newest(directory, keep)
    return Backup(target, fleet_copy, records, last_seq, schema)


def _keep_newest(directory: str, keep: int) -> None:
    for pattern in (f"{PREFIX}*.sqlite", "fleet-*.json"):
        for old in sorted(glob.glob(os.path.join(directory, pattern)))[:-keep]:
            os.unlink(old)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="preau gateway backup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the school's TOML configuration file")
    p.add_argument("--dir", required=True, help="where the copies go (best on another medium: a USB stick)")
    p.add_argument("--keep", type=int, default=DEFAULT_KEEP, help=f"copies kept (default {DEFAULT_KEEP})")
    args = p.parse_args(argv)
    from .config import Config, ConfigError

    try:
        if args.keep < 1:
            raise ConfigError("--keep: at least 1")
        config = Config.load(args.config)
        if config.db == ":memory:":
            raise ConfigError(f"{config.source}: db: in memory, nothing to back up")
        made = backup(config.db, args.dir, config.fleet_file, args.keep)
    except ConfigError as e:
        print(f"preau gateway backup: {e}", file=sys.stderr)
        return 2
    except (BackupError, OSError) as e:
        print(f"preau gateway backup: {e}", file=sys.stderr)
        return 1
    print(f"{made.database}: {made.records} records, last seq {made.last_seq}, schema {made.schema}"
          + (f"; {made.fleet}" if made.fleet else ""))
    return 0
