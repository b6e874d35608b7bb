"""The service's database: one audit row per call and one row per job, through SQLAlchemy, migrated by Alembic.

An embedded SQLite file (the default, under ``MEDLENS_HOME``) or a PostgreSQL server (``postgresql://...``) hold
the same two tables, created and upgraded by the Alembic migrations in ``migrations/`` when the service starts.
Nothing identifying a patient is ever written here: uploads are named by their SHA-256, never by their file name
or header (see :mod:`medlens.serve.uploads`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)

from medlens.core.errors import ConfigError

log = logging.getLogger(__name__)

metadata = MetaData()

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False, index=True),
    Column("request_id", String(32), nullable=False),
    Column("key_name", String(200)),
    Column("method", String(10), nullable=False),
    Column("route", String(200), nullable=False),
    Column("model", String(200)),
    Column("model_version", String(64)),
    Column("upload_sha256", String(64)),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("summary", Text),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("model_version", String(64)),
    Column("key_name", String(200)),
    Column("upload_sha256", String(64), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("options", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True)),
    Column("finished", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("result", Text),
    Column("error", Text),
)


def database_url(url: str | None, home: Path) -> str:
    """The SQLAlchemy URL: ``url`` as given (``postgresql://`` uses psycopg 3), or a SQLite file under ``home``."""
    if not url:
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{home / 'medlens.db'}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("sqlite:", "postgresql+psycopg:")):
        return url
    raise ConfigError(
        "--db", f"{url.split('://')[0]!r} is not a database this service uses (sqlite:/// or postgresql://)"
    )


def connect(url: str) -> Engine:
    """An engine for ``url``; SQLite runs in WAL mode (readers never wait for the writer) and waits for locks."""
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

    return engine


def migrate(engine: Engine) -> str:
    """Bring the database to the newest schema with the package's Alembic migrations; return the revision."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    log.debug("database at revision %s", revision)
    return str(revision)
