"""rooms.live_uptime, for databases made before it (schema version 2).

Plain ALTER TABLE ... ADD COLUMN, no default: SQLite and PostgreSQL alike
add it without rewriting the table. A database made by revision r0001 has
it already.

Revision ID: r0002
"""

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = [c["name"] for c in sa.inspect(op.get_bind()).get_columns("rooms")]
    if "live_uptime" not in columns:
        op.execute("ALTER TABLE rooms ADD COLUMN live_uptime BIGINT")


def downgrade() -> None:
    raise NotImplementedError("the city database is never downgraded: restore a backup")
