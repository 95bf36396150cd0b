"""Schema migrations for the services' SQLite databases: numbered steps,
applied in order, each in its own transaction, the database's
`PRAGMA user_version` recording the last one applied. A database written by
an older version is upgraded in place at start; one written by a newer
version is refused with a sentence that says so (a downgrade would lose
what the newer schema knows).

A step is SQL (run with executescript's statements inside the step's
transaction) or a function of the connection. Steps are never edited once
released: a change is a new step."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


class MigrationError(RuntimeError):
    """The database cannot be brought to this version's schema."""


@dataclass(frozen=True)
class Step:
    version: int  # 1, 2, 3...: the user_version once applied
    what: str  # one line, for the log
    sql: str | Callable[[sqlite3.Connection], None]


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, steps: Sequence[Step], *, name: str = "database") -> int:
    """Apply the steps the database lacks; returns the version reached.
    `conn` must be in autocommit mode (isolation_level=None) or have no
    transaction open."""
    numbers = [s.version for s in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise MigrationError(f"{name}: migration steps must be numbered 1..{len(steps)}, got {numbers}")
    current = schema_version(conn)
    latest = len(steps)
    if current > latest:
        raise MigrationError(
            f"{name}: schema version {current} was written by a newer Préau (this one knows up to {latest}); "
            "upgrade this program, or restore a backup made by this version")
    for step in steps[current:]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Read again under the write lock: two processes opening one
            # database at once must not both run a step.
            if schema_version(conn) >= step.version:
                conn.execute("COMMIT")
                continue
            if callable(step.sql):
                step.sql(conn)
            else:
                for statement in _statements(step.sql):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step.version}")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(f"{name}: migration step {step.version} ({step.what}) failed: {e}") from e
        if current:
            log.info("%s: schema upgraded to version %d: %s", name, step.version, step.what)
    return latest


def _statements(script: str) -> list[str]:
    """Split a script into statements (sqlite3.complete_statement decides
    where one ends, so semicolons in strings and triggers are safe)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip().strip(";").strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
