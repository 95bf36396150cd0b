"""Gateway epochs, telemetry, dropped ranges (schema version 4).

- records, rejected_records and conflicting_records are keyed by
  (school, epoch, seq): a fresh gateway database draws a new epoch and
  counts from 1 again, and its records never meet the old ones. Rows
  stored before have the epoch "" (a gateway that predates epochs).
- epochs: one row per (school, epoch): its order `n` within the school,
  its ack, the records it dropped, and since when a gap has waited.
- rooms.live_gen: the order `n` of the epoch of the record that set the
  live view (with live_seq): a fresh gateway's seq 1 is newer than the old
  one's seq 50,000.
- schools.acked is no longer written: the ack is the epoch's.
- telemetry: a room's readings aggregated per interval, kept for a
  retention period.
- dropped_ranges: seq ranges a gateway said it will never send.

SQLite cannot change a table's UNIQUE constraint: the three tables are
copied into new ones (every row kept), as SQLite's documentation says to.
PostgreSQL alters them in place.

Revision ID: r0004
"""

from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None

RECORDS = """
CREATE TABLE {name} (
    school      TEXT NOT NULL,
    epoch       TEXT NOT NULL DEFAULT '',
    seq         BIGINT NOT NULL,
    room        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    body        TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (school, epoch, seq)
)"""
REJECTED = """
CREATE TABLE {name} (
    school      TEXT NOT NULL,
    epoch       TEXT NOT NULL DEFAULT '',
    seq         BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    record      TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (school, epoch, seq)
)"""
CONFLICTING = """
CREATE TABLE {name} (
    school      TEXT NOT NULL,
    epoch       TEXT NOT NULL DEFAULT '',
    seq         BIGINT NOT NULL,
    digest      TEXT NOT NULL,
    gateway     TEXT,
    room        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    body        TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (school, epoch, seq, digest)
)"""
COLUMNS = {
    "records": "school, seq, room, kind, at, body, received_at",
    "rejected_records": "school, seq, reason, record, received_at",
    "conflicting_records": "school, seq, digest, gateway, room, kind, at, body, received_at",
}
NEW_TABLES = """
CREATE TABLE epochs (
    school      TEXT NOT NULL,
    epoch       TEXT NOT NULL,
    n           BIGINT NOT NULL,
    gateway     TEXT,
    acked       BIGINT NOT NULL DEFAULT 0,
    dropped     BIGINT NOT NULL DEFAULT 0,
    first_seen  DOUBLE PRECISION,
    last_seen   DOUBLE PRECISION,
    gap_since   DOUBLE PRECISION,
    gap_asked   DOUBLE PRECISION,
    PRIMARY KEY (school, epoch),
    UNIQUE (school, n)
);
CREATE TABLE dropped_ranges (
    school      TEXT NOT NULL,
    epoch       TEXT NOT NULL,
    first       BIGINT NOT NULL,
    last        BIGINT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (school, epoch, first, last)
);
CREATE TABLE telemetry (
    school      TEXT NOT NULL,
    epoch       TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    room        TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    interval_s  DOUBLE PRECISION,
    body        TEXT NOT NULL,
    PRIMARY KEY (school, epoch, seq)
);
CREATE INDEX telemetry_by_room ON telemetry (school, room, at);
CREATE INDEX telemetry_by_at ON telemetry (at);
ALTER TABLE rooms ADD COLUMN live_gen BIGINT NOT NULL DEFAULT 0;
UPDATE rooms SET live_gen = 1;
INSERT INTO epochs (school, epoch, n, gateway, acked, first_seen, last_seen)
    SELECT school, '', 1, gateway, acked, last_seen, last_seen FROM schools;
UPDATE epochs SET gap_since = last_seen WHERE EXISTS (SELECT 1 FROM records r
    WHERE r.school = epochs.school AND r.epoch = epochs.epoch AND r.seq > epochs.acked);
UPDATE epochs SET gap_since = last_seen WHERE EXISTS (SELECT 1 FROM rejected_records r
    WHERE r.school = epochs.school AND r.epoch = epochs.epoch AND r.seq > epochs.acked)
"""


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for table, template in (("records", RECORDS), ("rejected_records", REJECTED),
                                ("conflicting_records", CONFLICTING)):
            op.execute(template.format(name=table + "_v4"))
            op.execute(f"INSERT INTO {table}_v4 ({COLUMNS[table]}) SELECT {COLUMNS[table]} FROM {table}")
            op.execute(f"DROP TABLE {table}")
            op.execute(f"ALTER TABLE {table}_v4 RENAME TO {table}")
        op.execute("CREATE INDEX records_by_room ON records (school, room, seq)")
        op.execute("CREATE INDEX records_by_at ON records (at)")
    else:
        for table, old, new in (
            ("records", "records_school_seq_key", "records_school_epoch_seq_key"),
            ("rejected_records", "rejected_records_school_seq_key", "rejected_records_school_epoch_seq_key"),
            ("conflicting_records", "conflicting_records_school_seq_digest_key",
             "conflicting_records_school_epoch_seq_digest_key"),
        ):
            op.execute(f"ALTER TABLE {table} ADD COLUMN epoch TEXT NOT NULL DEFAULT ''")
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {old}")
            columns = "school, epoch, seq, digest" if table == "conflicting_records" else "school, epoch, seq"
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {new} UNIQUE ({columns})")
    for statement in _statements(NEW_TABLES):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the city database is never downgraded: restore a backup")
