"""admin tokens; idempotent job submission

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

``api_tokens.admin``: a token that sees and acts on every owner's jobs and schedules
(others see only their owner's). ``jobs.idempotency_key``: the ``Idempotency-Key`` a
submission carried, unique per owner, so a retried submission finds the first job
instead of queueing a second one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.create_unique_constraint("uq_jobs_owner_idempotency_key", ["owner", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_owner_idempotency_key", type_="unique")
        batch.drop_column("idempotency_key")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("admin")
