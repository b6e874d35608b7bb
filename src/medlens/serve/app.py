"""The FastAPI app of ``medlens serve``: routes, authentication, the audit and metrics middleware, the viewer.

Routes (OpenAPI at ``/docs``)::

    GET  /healthz                          no key
    GET  /metrics                          no key; Prometheus text format
    GET  /v1/models                        the served models
    POST /v1/models/{name}/predict         multipart field "file"; ?explain=&report=&viewer=
    POST /v1/models/{name}/jobs            the same upload, answered 202 with a job id
    GET  /v1/jobs/{id}                     a job's state and result
    GET  /v1/results/{id}/{file}           a file a prediction wrote (mask, overlay, ...)
    GET  /                                 the web viewer

Every ``/v1`` call needs ``Authorization: Bearer KEY`` and leaves one audit row. The handlers only adapt: they
read the upload (:mod:`.uploads`), hand the image to the compute pool (:mod:`.compute`), which calls
``bundle.predict_many``, and save the answer with ``Prediction.save`` (:mod:`.results`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medlens import __version__
from medlens.core.errors import MedlensError
from medlens.serve.errors import ServiceError, from_medlens
from medlens.serve.service import Service, ServiceConfig

FILE_PUNCTUATION = str.maketrans("", "", "._-")  # what a result file name may hold besides letters and digits

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")


def create_app(config: ServiceConfig) -> FastAPI:
    """The app serving ``config``'s models (bundles loaded and database migrated now)."""
    service = Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="medlens",
        version=__version__,
        description="Predictions of medlens models, with an audit trail. Every /v1 call needs "
        "`Authorization: Bearer KEY` (`medlens keys add NAME`).",
        lifespan=lifespan,
    )
    app.state.service = service
    _add_error_handlers(app)
    _add_routes(app, service)
    app.add_middleware(LimitBody, limit=config.max_upload_bytes + 2**20)  # the multipart framing on top
    app.add_middleware(Observe, service=service)
    return app


# ---- middleware -----------------------------------------------------------------------------------------------------
class LimitBody:
    """Refuse request bodies past ``limit`` bytes: by Content-Length up front, or by counting a chunked body."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            state["too_large"] = True
            await _send_error(send, ServiceError(413, f"file: the request is larger than {self.limit / 2**20:g} MB"))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                state["too_large"] = True
                raise ServiceError(413, "file: the request body is larger than the limit")
            return message

        await self.app(scope, counted, send)


async def _send_error(send: Send, error: ServiceError, request_id: str | None = None) -> None:
    response = _error_response(error)
    headers = response.raw_headers + ([(b"x-request-id", request_id.encode())] if request_id else [])
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


class Observe:
    """Time each call, count it, and write its audit row (``/v1``) before the answer goes out.

    A plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` runs each call through a task group and memory
    streams, a measurable share of a small request's time): it holds back the start of the answer until the audit
    row is committed, and answers 503 instead when the row cannot be written.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = scope.setdefault("state", {})
        request_id = state["request_id"] = self.service.new_id()
        state["audit"] = {}
        started = replaced = False

        async def observed(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] != "http.response.start":
                if not replaced:
                    await send(message)
                return
            started = True
            error = await self._record(scope, int(message["status"]), time.perf_counter() - start)
            if error is not None:  # the answer is this error instead; the rest of the original is dropped
                replaced = True
                await _send_error(send, error, request_id)
                return
            headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send({**message, "headers": headers})

        try:
            await self.app(scope, receive, observed)
        except Exception:
            log.exception("unexpected failure on %s %s", scope["method"], scope["path"])
            if not started:
                error = _error_response(ServiceError(500, f"internal error (request {request_id})"))
                await observed({"type": "http.response.start", "status": 500, "headers": error.raw_headers})
                await observed({"type": "http.response.body", "body": error.body})

    async def _record(self, scope: Scope, status: int, seconds: float) -> ServiceError | None:
        """Count the call and write its audit row; the error to answer instead, if any."""
        from medlens.serve.audit import audit_row

        state = scope["state"]
        error = None
        if state.get("too_large") and status != 413:
            error = ServiceError(413, "file: the upload is larger than the limit (--max-upload-mb)")
            status = 413
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.service.metrics.observe_request(scope["method"], route, status, seconds)
        if scope["path"].startswith("/v1"):
            row = audit_row(
                request_id=state["request_id"], method=scope["method"], route=route, status=status, seconds=seconds,
                **state["audit"],
            )  # fmt: skip
            try:
                await self.service.audit.write(row)
            except Exception:
                return ServiceError(503, "the audit trail cannot be written; try again later")
        return error


# ---- errors ---------------------------------------------------------------------------------------------------------
def _error_response(error: ServiceError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}" for e in exc.errors()
        ]
        status = 400 if any(e.get("type") == "missing" for e in exc.errors()) else 422
        return _error_response(ServiceError(status, "; ".join(problems)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(ServiceError(exc.status_code, str(exc.detail)))


# ---- routes ---------------------------------------------------------------------------------------------------------
def _add_routes(app: FastAPI, service: Service) -> None:
    from medlens.serve.audit import summarize
    from medlens.serve.extras import Extras
    from medlens.serve.results import publish
    from medlens.serve.uploads import read_upload, receive

    def caller(request: Request) -> str:
        """The name of the key the call carries (401 without a known key, 403 for a revoked one)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ServiceError(401, "Authorization: Bearer KEY is missing")
        record = service.keys.lookup(token.strip())
        if record is None:
            raise ServiceError(401, "the key is not known to this service")
        request.state.audit["key_name"] = record.name
        if record.revoked:
            raise ServiceError(403, f"the key {record.name!r} was revoked on {record.revoked}")
        return record.name

    def served(name: str, request: Request) -> Any:
        model = service.models.get(name)
        if model is None:
            raise ServiceError(404, f"no model named {name!r} (GET /v1/models lists them)")
        request.state.audit.update(model=model.name, model_version=model.version)
        return model

    async def take_upload(request: Request, file: UploadFile) -> Any:
        """Receive and read the upload in a thread, in a private folder (removed when this fails): (folder, upload,
        image with pixels and geometry only)."""

        def work() -> Any:
            folder = service.new_folder()
            try:
                upload = receive(file.file, folder, service.config.max_upload_bytes)
                request.state.audit["upload_sha256"] = upload.sha256
                return folder, upload, read_upload(upload, service.config.max_upload_bytes)
            except BaseException:
                service.remove_upload(folder)
                raise

        return await run_in_threadpool(work)

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness: answers without a key."""
        return {"status": "ok", "models": len(service.models), "version": __version__}

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics (text format)."""
        body = await run_in_threadpool(service.metrics.text)
        return Response(body, media_type=service.metrics.content_type)

    @app.get("/v1/models", tags=["models"])
    async def models(key: str = Depends(caller)) -> dict[str, Any]:
        """The served models: name, task, classes, input kinds, version and model-card summary."""
        return {"models": [m.describe() for m in service.models.values()]}

    @app.post("/v1/models/{name}/predict", tags=["models"])
    async def predict(
        name: str,
        request: Request,
        file: UploadFile = File(
            ..., description="PNG/JPEG/TIFF, a DICOM file, NIfTI/NRRD/MHA, or a .zip of a DICOM series"
        ),
        explain: bool = Query(
            False, description="Also an explanation (heatmap) by the model's default method, the most faithful one."
        ),
        report: bool = Query(False, description="Also the clinical report (JSON) and its plain-language texts."),
        viewer: bool = Query(False, description="Also NIfTI renditions of the input and overlays for the viewer."),
        key: str = Depends(caller),
    ) -> JSONResponse:
        """Predict one upload; the answer is the prediction's ``to_dict()`` with links to its files."""
        model = served(name, request)
        extras = Extras(explain=explain, report=report)
        folder, _, image = await take_upload(request, file)
        result_id = request.state.request_id

        def finish(prediction: Any) -> dict[str, Any]:
            try:
                return publish(prediction, image, service.results, result_id, viewer, model.bundle, extras)
            finally:
                service.remove_upload(folder)

        try:
            try:
                prediction = await service.pool.predict(model, image)
            except BaseException:
                await run_in_threadpool(service.remove_upload, folder)
                raise
            result = await run_in_threadpool(finish, prediction)  # the result saved and the upload removed at once
        except MedlensError as exc:
            raise from_medlens(exc, 422, hide=str(folder)) from None
        request.state.audit["summary"] = summarize(result)
        return JSONResponse(result | {"model_version": model.version, "request_id": result_id})

    @app.post("/v1/models/{name}/jobs", tags=["jobs"], status_code=202)
    async def submit_job(
        name: str,
        request: Request,
        file: UploadFile = File(..., description="The same uploads as predict; for long 3D work."),
        explain: bool = Query(False, description="Also an explanation by the model's default method."),
        report: bool = Query(False, description="Also the clinical report (JSON) and its plain-language texts."),
        key: str = Depends(caller),
    ) -> JSONResponse:
        """Queue a prediction; ``202`` with the job's id. It survives a restart of the service."""
        model = served(name, request)
        folder, upload, image = await take_upload(request, file)
        try:
            job_id = service.new_id()
            options = {"explain": explain, "report": report}
            await run_in_threadpool(service.jobs.submit, job_id, model, key, upload.sha256, image, options)
        finally:
            await run_in_threadpool(service.remove_upload, folder)
        request.state.audit["summary"] = f'{{"job":"{job_id}"}}'
        link = f"/v1/jobs/{job_id}"
        return JSONResponse({"id": job_id, "state": "queued", "links": {"self": link}}, 202, {"Location": link})

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    async def job(job_id: str, request: Request, key: str = Depends(caller)) -> dict[str, Any]:
        """A job's state (queued, running, done, failed) and, when done, its result."""
        found = await run_in_threadpool(service.jobs.get, job_id) if job_id.isalnum() and len(job_id) == 32 else None
        if found is None or found.pop("key_name") != key:  # a key sees its own jobs only
            raise ServiceError(404, f"no job {job_id!r} for this key")
        request.state.audit.update(model=found["model"], model_version=found["model_version"])
        request.state.audit["summary"] = f'{{"job":"{job_id}","state":"{found["state"]}"}}'
        return found

    @app.get("/v1/results/{result_id}/{filename:path}", tags=["models"])
    async def result_file(result_id: str, filename: str, key: str = Depends(caller)) -> FileResponse:
        """A file a prediction wrote (mask, overlay, explanation, report, viewer renditions, ...)."""
        parts = filename.split("/")
        plain = all(p and not p.startswith(".") and p.translate(FILE_PUNCTUATION).isalnum() for p in parts)
        path = service.results / result_id / filename
        if not (result_id.isalnum() and len(parts) <= 2 and plain and path.is_file()):  # reports/<file> at most
            raise ServiceError(404, f"no file {filename!r} in result {result_id!r}")
        return FileResponse(path)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def viewer() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
