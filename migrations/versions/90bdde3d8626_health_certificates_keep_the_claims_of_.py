"""health certificates keep the claims of a verified pass

A recheck judges these instead of decrypting the token and verifying its signature again.
Existing passes have none: the next check of each reads its token and fills them in.

Revision ID: 90bdde3d8626
Revises: 5d1f0c2a9b7e
Create Date: 2026-11-27 23:13:53.122050

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '90bdde3d8626'
down_revision = '5d1f0c2a9b7e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('health_certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature_valid', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('pass_issuer', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('subject_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('name_hash', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('health_certificates', schema=None) as batch_op:
        batch_op.drop_column('name_hash')
        batch_op.drop_column('subject_hash')
        batch_op.drop_column('pass_issuer')
        batch_op.drop_column('signature_valid')
