"""schedule timezone, catch-up policy, warm start; schedule firings; front comparisons

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

``schedule_runs`` has one row per (schedule, fire time): its unique constraint is what
makes two schedulers racing on the same due schedule enqueue one job, not two.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=False, server_default="UTC"))
        batch.add_column(sa.Column("catch_up", sa.String(length=16), nullable=False, server_default="once"))
        batch.add_column(sa.Column("warm_start", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("reseed", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("fire_time", sa.DateTime(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(), nullable=False),
        sa.Column("enqueued_by", sa.String(length=200), nullable=False),
        sa.Column("missed", sa.Integer(), nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule_id", "fire_time", name="uq_schedule_runs_schedule_fire"),
    )
    op.create_table(
        "front_comparisons",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("previous_job_id", sa.Integer(), nullable=True),
        sa.Column("warm_started", sa.Boolean(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("hypervolume", sa.Float(), nullable=False),
        sa.Column("previous_hypervolume", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("relative_delta", sa.Float(), nullable=True),
        sa.Column("reference", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["previous_job_id"], ["jobs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", name="uq_front_comparisons_job"),
    )


def downgrade() -> None:
    op.drop_table("front_comparisons")
    op.drop_table("schedule_runs")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("reseed")
        batch.drop_column("warm_start")
        batch.drop_column("catch_up")
        batch.drop_column("timezone")
