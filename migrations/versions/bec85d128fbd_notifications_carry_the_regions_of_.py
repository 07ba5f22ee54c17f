"""notifications carry the regions of their request or trip

A coordinator's outbox shows the messages of requests and trips leaving from or going to their
region. Messages written before have no region: only an admin's outbox shows them.

Revision ID: bec85d128fbd
Revises: 90bdde3d8626
Create Date: 2026-11-28 00:33:08.072468

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'bec85d128fbd'
down_revision = '90bdde3d8626'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin_region_code', sa.String(length=6), nullable=True))
        batch_op.add_column(sa.Column('destination_region_code', sa.String(length=6), nullable=True))


def downgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('destination_region_code')
        batch_op.drop_column('origin_region_code')
