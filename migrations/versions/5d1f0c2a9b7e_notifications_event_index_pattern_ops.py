"""notifications event index with pattern operators

Reminders are taken back by event prefix (LIKE 'reminder.24h:t12:e345:%'). On PostgreSQL a
plain btree index serves such a LIKE only under the C collation; with varchar_pattern_ops it
does under any collation. SQLite keeps a plain index.

Revision ID: 5d1f0c2a9b7e
Revises: c3620b7e37f2
Create Date: 2026-11-27 21:10:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5d1f0c2a9b7e'
down_revision = 'c3620b7e37f2'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('ix_notifications_event', table_name='notifications')
    op.create_index(
        'ix_notifications_event',
        'notifications',
        ['event'],
        unique=False,
        postgresql_ops={'event': 'varchar_pattern_ops'},
    )


def downgrade():
    op.drop_index('ix_notifications_event', table_name='notifications')
    op.create_index('ix_notifications_event', 'notifications', ['event'], unique=False)
