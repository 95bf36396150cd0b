"""conflicting_records: other contents of a (school, seq) already stored
(schema version 3).

Revision ID: r0003
"""

from alembic import op

revision = "r0003"
down_revision = "r0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE IF NOT EXISTS conflicting_records (
    school      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    digest      TEXT NOT NULL,
    gateway     TEXT,
    room        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    body        TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    UNIQUE (school, seq, digest)
)""")


def downgrade() -> None:
    raise NotImplementedError("the city database is never downgraded: restore a backup")
