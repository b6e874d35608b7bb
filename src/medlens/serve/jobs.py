"""Jobs: long predictions (3D) that outlive the request and a restart of the service.

A job is a database row and its input in the spool folder: the upload's pixels and geometry as a medlens ``.npz``
(read once when the job is submitted, so a bad upload is refused at once and no DICOM header is ever spooled).
One runner thread takes queued jobs oldest first, predicts them in the compute pool, keeps the result in the row
and the files beside the other results. A job found ``running`` when the service starts was cut short (the
service was killed): it is queued again, up to :data:`MAX_ATTEMPTS` tries, and finishes after the restart.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, insert, select, update

from medlens.core.errors import MedlensError
from medlens.serve.database import jobs

if TYPE_CHECKING:
    from medlens.core.image import Image
    from medlens.core.prediction import Prediction
    from medlens.serve.catalog import ServedModel

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
STATES = ("queued", "running", "done", "failed")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class JobRunner:
    """Queued jobs, run one at a time by a thread.

    Args:
        engine: the service database.
        spool: folder of the jobs' inputs.
        models: the served models by name.
        predict: predicts an image with a model (the compute pool's ``predict_now``).
        finish: turns a prediction into the result kept in the row (saves its files, returns its JSON).
    """

    def __init__(
        self,
        engine: Engine,
        spool: Path,
        models: dict[str, ServedModel],
        predict: Callable[[ServedModel, Image], Prediction],
        finish: Callable[[str, ServedModel, Prediction, Image, dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.engine, self.spool, self.models = engine, spool, models
        self._predict, self._finish = predict, finish
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="medlens-jobs", daemon=True)

    def start(self) -> None:
        """Queue again the jobs a previous service left running, and start the runner."""
        with self.engine.begin() as connection:
            again = connection.execute(
                update(jobs).where(jobs.c.state == "running").values(state="queued", started=None)
            ).rowcount
        if again:
            log.info("%d job(s) interrupted by a stop of the service are queued again", again)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=120)

    def submit(self, job_id: str, model: ServedModel, key_name: str, sha256: str, image: Image, options: dict) -> None:
        """Spool ``image`` and queue the job (the spool file is whole before the row exists)."""
        from medlens.io import write_image

        write_image(image, self.spool / f"{job_id}.npz")
        with self.engine.begin() as connection:
            connection.execute(
                insert(jobs).values(
                    id=job_id, model=model.name, model_version=model.version, key_name=key_name,
                    upload_sha256=sha256, state="queued", options=json.dumps(options), created=_now(), attempts=0,
                )
            )  # fmt: skip
        self._wake.set()

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's row as the API shows it, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            return None
        out = {k: row[k] for k in ("id", "model", "model_version", "state", "attempts", "error")}
        out["key_name"] = row["key_name"]
        for stamp in ("created", "started", "finished"):
            out[stamp] = row[stamp].isoformat() if row[stamp] is not None else None
        out["result"] = json.loads(row["result"]) if row["result"] else None
        return out

    def counts(self) -> dict[str, int]:
        """Jobs by state."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all()
        found = {str(state): int(n) for state, n in rows}
        return {state: found.get(state, 0) for state in STATES}

    # ---- the runner ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            job = self._claim()
            if job is None:
                self._wake.wait(timeout=2.0)
                self._wake.clear()
                continue
            try:
                self._execute(job)
            except Exception:
                log.exception("job %s failed", job["id"])
                self._end(job["id"], "failed", error="internal error while running the job")

    def _claim(self) -> dict[str, Any] | None:
        with self.engine.begin() as connection:
            row = (
                connection.execute(select(jobs).where(jobs.c.state == "queued").order_by(jobs.c.created).limit(1))
                .mappings()
                .first()
            )
            if row is None:
                return None
            claimed = connection.execute(
                update(jobs)
                .where(jobs.c.id == row["id"], jobs.c.state == "queued")
                .values(state="running", started=_now(), attempts=jobs.c.attempts + 1)
            ).rowcount
        return dict(row) | {"attempts": row["attempts"] + 1} if claimed else None

    def _execute(self, job: dict[str, Any]) -> None:
        from medlens.io import read_image

        job_id, spooled = job["id"], self.spool / f"{job['id']}.npz"
        model = self.models.get(job["model"])
        if model is None:
            self._end(job_id, "failed", error=f"model {job['model']!r} is not served by this service any more")
            return
        if job["attempts"] > MAX_ATTEMPTS:
            self._end(job_id, "failed", error=f"stopped after {MAX_ATTEMPTS} attempts (each interrupted)")
            return
        if not spooled.is_file():
            self._end(job_id, "failed", error="the job's spooled input is missing")
            return
        image = read_image(spooled)
        image.meta["source"] = f"sha256:{job['upload_sha256']}"
        try:
            prediction = self._predict(model, image)
            result = self._finish(job_id, model, prediction, image, json.loads(job["options"]))
        except MedlensError as exc:
            self._end(job_id, "failed", error=str(exc).replace(str(spooled), "upload"))
            return
        self._end(job_id, "done", result=json.dumps(result))
        log.info("job %s done", job_id)

    def _end(self, job_id: str, state: str, *, result: str | None = None, error: str | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(jobs).where(jobs.c.id == job_id).values(state=state, finished=_now(), result=result, error=error)
            )
        (self.spool / f"{job_id}.npz").unlink(missing_ok=True)
