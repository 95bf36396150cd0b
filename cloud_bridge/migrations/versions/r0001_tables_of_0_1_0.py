"""The city's tables as of 0.1.0 (schema version 1).

Every statement is IF NOT EXISTS, so a database that 0.1.0 wrote (it left
PRAGMA user_version at 0 and had no version table) is recognised as it is.

Revision ID: r0001
"""

from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS schools (
    school      TEXT PRIMARY KEY,
    gateway     TEXT,
    online      INTEGER,
    last_seen   DOUBLE PRECISION,
    acked       BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS records (
    school      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    room        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    body        TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (school, seq)
);
CREATE INDEX IF NOT EXISTS records_by_room ON records (school, room, seq);
CREATE INDEX IF NOT EXISTS records_by_at ON records (at);
CREATE TABLE IF NOT EXISTS rejected_records (
    school      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    record      TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (school, seq)
);
CREATE TABLE IF NOT EXISTS rooms (
    school      TEXT NOT NULL,
    room        TEXT NOT NULL,
    online      INTEGER,
    boot        BIGINT,
    last_seen   DOUBLE PRECISION,
    session     TEXT,
    ap          INTEGER,
    fw          TEXT,
    board       TEXT,
    live_seq    BIGINT NOT NULL DEFAULT 0,
    live_uptime BIGINT,
    PRIMARY KEY (school, room)
);
CREATE TABLE IF NOT EXISTS kits (
    kit         TEXT PRIMARY KEY,
    school      TEXT NOT NULL,
    room        TEXT NOT NULL,
    attached    INTEGER NOT NULL,
    sensors     TEXT NOT NULL,
    since       DOUBLE PRECISION NOT NULL,
    last_seen   DOUBLE PRECISION NOT NULL,
    boot        BIGINT
);
CREATE INDEX IF NOT EXISTS kits_by_room ON kits (school, room);
"""


def upgrade() -> None:
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the city database is never downgraded: restore a backup")
