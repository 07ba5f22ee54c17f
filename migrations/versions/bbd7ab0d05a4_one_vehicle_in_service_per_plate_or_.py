"""one vehicle in service per plate or flight number

A coach plate or a flight number is one physical vehicle, whoever registers it: among the
vehicles in service, (kind, identifier) is unique for coaches and aircraft. Trains are left
out: several operators reserve different carriages of one train number (the service refuses
overlapping carriages).

A database may already hold one plate in service under two operators (the bug this closes).
The upgrade does not stop on it: the earliest registration stays in service and the later
ones are taken out of service, each with an audit entry (vehicle.taken_out_of_service, naming
the vehicle kept) and a warning in the upgrade's log. Their trips still run (a trip keeps its
vehicle) and no new trip can overlap them on the record kept; a coordinator who finds the
wrong record kept takes that one out of service and puts the other back.

Revision ID: bbd7ab0d05a4
Revises: c23322d52948
Create Date: 2026-11-28 11:25:58.625081

"""
import logging
from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'bbd7ab0d05a4'
down_revision = 'c23322d52948'
branch_labels = None
depends_on = None

log = logging.getLogger('alembic.runtime.migration')

IN_SERVICE_NOT_TRAIN = "active AND kind <> 'train'"

vehicles = sa.table(
    'vehicles',
    sa.column('id', sa.Integer),
    sa.column('kind', sa.String),
    sa.column('identifier', sa.String),
    sa.column('active', sa.Boolean),
)
audit_entries = sa.table(
    'audit_entries',
    sa.column('occurred_at', sa.DateTime(timezone=True)),
    sa.column('action', sa.String),
    sa.column('object_type', sa.String),
    sa.column('object_id', sa.Integer),
    sa.column('details', sa.JSON),
)


def _take_later_duplicates_out_of_service():
    kept = vehicles.alias('kept')
    later = (
        sa.select(vehicles.c.id, vehicles.c.identifier, sa.func.min(kept.c.id))
        .join(
            kept,
            sa.and_(
                kept.c.active,
                kept.c.kind == vehicles.c.kind,
                kept.c.identifier == vehicles.c.identifier,
                kept.c.id < vehicles.c.id,
            ),
        )
        .where(vehicles.c.active, vehicles.c.kind != 'train')
        .group_by(vehicles.c.id, vehicles.c.identifier)
        .order_by(vehicles.c.id)
    )
    connection = op.get_bind()
    duplicates = connection.execute(later).all()
    if not duplicates:
        return
    connection.execute(
        sa.update(vehicles)
        .where(vehicles.c.id.in_([vehicle_id for vehicle_id, _, _ in duplicates]))
        .values(active=False)
    )
    now = datetime.now(UTC)
    connection.execute(
        sa.insert(audit_entries),
        [
            {
                'occurred_at': now,
                'action': 'vehicle.taken_out_of_service',
                'object_type': 'vehicles',
                'object_id': vehicle_id,
                'details': {'reason': 'identifier.in_service_elsewhere', 'kept_vehicle_id': kept_id},
            }
            for vehicle_id, _, kept_id in duplicates
        ],
    )
    for vehicle_id, identifier, kept_id in duplicates:
        log.warning(
            'vehicle %s (%s) taken out of service: vehicle %s has the same number in service',
            vehicle_id,
            identifier,
            kept_id,
        )


def upgrade():
    _take_later_duplicates_out_of_service()
    with op.batch_alter_table('vehicles', schema=None) as batch_op:
        batch_op.create_index('uq_vehicles_in_service_identifier', ['kind', 'identifier'], unique=True, postgresql_where=sa.text(IN_SERVICE_NOT_TRAIN), sqlite_where=sa.text(IN_SERVICE_NOT_TRAIN))


def downgrade():
    # The vehicles taken out of service by the upgrade stay out of service.
    with op.batch_alter_table('vehicles', schema=None) as batch_op:
        batch_op.drop_index('uq_vehicles_in_service_identifier', postgresql_where=sa.text(IN_SERVICE_NOT_TRAIN), sqlite_where=sa.text(IN_SERVICE_NOT_TRAIN))
