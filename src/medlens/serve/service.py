"""A running service's parts and their lifetime: models, keys, database, audit writer, compute pool, job runner.

:class:`ServiceConfig` is what ``medlens serve`` parses; :class:`Service` builds everything that can fail (bundles
loaded, database migrated, key file read) when it is made, so a bad flag stops the command with one line before
the service listens, and starts and stops its threads with the web app.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlens.core.settings import get_settings

if TYPE_CHECKING:
    from medlens.core.image import Image
    from medlens.core.prediction import Prediction

log = logging.getLogger(__name__)


#: the name every upload folder in ``HOME/tmp`` starts with: only such folders are ever removed there
UPLOAD_PREFIX = "upload-"


def service_home() -> Path:
    """The service's own folder: ``MEDLENS_HOME/serve`` (database, keys, spool, results)."""
    return get_settings().home / "serve"


@dataclass
class ServiceConfig:
    """What ``medlens serve`` was told.

    Attributes:
        models: model name to run (or bundle) folder.
        keys: the key file (``medlens keys add``).
        db: a database URL (``postgresql://...`` or ``sqlite:///...``); None for SQLite under ``home``.
        home: where the spool, results and the default database live.
        max_upload_mb: the largest upload accepted.
        workers: compute threads (None: the machine's cores).
    """

    models: dict[str, Path]
    keys: Path = field(default_factory=lambda: service_home() / "keys.json")
    db: str | None = None
    home: Path = field(default_factory=service_home)
    max_upload_mb: float = 512
    workers: int | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class Service:
    """Everything a running service holds (built now; threads started by :meth:`start`)."""

    def __init__(self, config: ServiceConfig) -> None:
        from medlens.core.errors import ConfigError
        from medlens.serve.catalog import load_models
        from medlens.serve.database import connect, database_url, migrate
        from medlens.serve.keys import KeyRing

        if config.max_upload_mb <= 0:
            raise ConfigError("--max-upload-mb", f"{config.max_upload_mb} is not a positive size")
        if config.workers is not None and config.workers < 1:
            raise ConfigError("--workers", f"{config.workers} is not at least 1")
        self.config = config
        self.keys = KeyRing(config.keys)
        if not len(self.keys):
            log.warning("no keys in %s: every /v1 call will be refused (medlens keys add NAME)", config.keys)
        self.models = load_models(config.models)
        self.spool, self.results, self.tmp = (config.home / "spool", config.home / "results", config.home / "tmp")
        for folder in (self.spool, self.results, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
        for stale in self.tmp.glob(f"{UPLOAD_PREFIX}*"):  # uploads of a previous run that died mid-request
            self.remove_upload(stale)
        self.engine = connect(database_url(config.db, config.home))
        self.revision = migrate(self.engine)
        self.pool: Any = None
        self.audit: Any = None
        self.jobs: Any = None
        from medlens.serve.jobs import JobRunner
        from medlens.serve.metrics import Metrics

        self.metrics = Metrics(lambda: self.pool.queued if self.pool else 0, self._job_counts)
        self.jobs = JobRunner(self.engine, self.spool, self.models, self._predict_now, self.finish_job)

    def _job_counts(self) -> dict[str, int]:
        return self.jobs.counts()

    def _predict_now(self, model: Any, image: Image) -> Prediction:
        return self.pool.predict_now(model, image)

    def start(self) -> None:
        """Start the compute pool, the audit writer and the job runner."""
        from medlens.serve.audit import AuditWriter
        from medlens.serve.compute import ComputePool

        self.pool = ComputePool(self.config.workers, on_batch=self.metrics.observe_batch)
        self.audit = AuditWriter(self.engine)
        self.jobs.start()
        log.info(
            "serving %s with %d compute worker(s); database %s", ", ".join(self.models), self.pool.workers,
            self.engine.url.render_as_string(hide_password=True),
        )  # fmt: skip

    def stop(self) -> None:
        """Let running work finish, then stop the threads."""
        self.jobs.stop()
        if self.pool is not None:
            self.pool.close()
        if self.audit is not None:
            self.audit.close()
        self.engine.dispose()

    def new_folder(self) -> Path:
        """A private temporary folder for one upload (removed by the caller with :meth:`remove_upload`)."""
        import tempfile

        return Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX, dir=self.tmp))

    def remove_upload(self, folder: Path) -> None:
        """Remove an upload folder :meth:`new_folder` made, and nothing else: a path that is not directly in the
        service's ``tmp`` folder with the upload prefix is left where it is (and logged)."""
        if folder.parent.resolve() != self.tmp.resolve() or not folder.name.startswith(UPLOAD_PREFIX):
            log.error("not removing %s: not an upload folder of this service", folder)
            return
        shutil.rmtree(folder, ignore_errors=True)

    def finish_job(
        self, job_id: str, model: Any, prediction: Prediction, image: Image, options: dict[str, Any]
    ) -> dict[str, Any]:
        """A finished job's result: saved beside the other results (with what it asked for), its files linked."""
        from medlens.serve.extras import Extras
        from medlens.serve.results import publish

        extras = Extras(**{k: bool(options.get(k)) for k in ("explain", "report")})
        return publish(prediction, image, self.results, job_id, True, model.bundle, extras)

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex
