"""A service's start says what its migrations do: an upgrade's steps ahead before the first,
each step done with its time, and the end; a new database one line when made."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from structlog.testing import capture_logs

from pingtower.common import db

STEP = '''"""{title}

More about it, which the log leaves out.
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("{table}")
'''


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A migration tree of three steps for a database called 'demo'."""
    location = tmp_path / "demo" / "migrations"
    (location / "versions").mkdir(parents=True)
    (location / "env.py").write_text(
        "from pingtower.common.db import run_alembic_env\n\nrun_alembic_env(None)\n"
    )
    down = None
    for n, title in enumerate(["Demo: things.", "Demo: more things.", "Demo: the last."], 1):
        revision = f"000{n}"
        (location / "versions" / f"{revision}_step.py").write_text(
            STEP.format(title=title, revision=revision, down=down, table=f"t{n}")
        )
        down = revision
    return location


def events(logs: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [
        (e["event"], e["database"], e.get("revision"), e.get("steps"))
        for e in logs
        if str(e["event"]).startswith("database ")
    ]


def test_a_new_database_is_one_line_and_an_upgrade_says_each_step(
    tree: Path, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/demo.sqlite3"
    with capture_logs() as made:
        db.run_migrations(url, tree, "0001")
    assert events(made) == [("database created", "demo", "0001", 1)]

    with capture_logs() as upgraded:
        db.run_migrations(url, tree)
    assert events(upgraded) == [
        (
            "database upgrade started",
            "demo",
            "0001",
            ["0002: Demo: more things.", "0003: Demo: the last."],
        ),
        ("database migration step done", "demo", "0002", None),
        ("database migration step done", "demo", "0003", None),
        ("database migrated", "demo", "0003", 2),
    ]
    assert all(e["seconds"] >= 0 for e in upgraded if "seconds" in e)

    with capture_logs() as again:
        db.run_migrations(url, tree)
    assert events(again) == [], "an up-to-date database starts without a word"

    config = Config()
    config.set_main_option("script_location", str(tree))
    config.set_main_option("sqlalchemy.url", url)
    with capture_logs() as undone:
        command.downgrade(config, "0002")
    assert events(undone) == [
        ("database migration step undone", "demo", "0003", None),
        ("database migrated", "demo", "0002", 1),
    ]
