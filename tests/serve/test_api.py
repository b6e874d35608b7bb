"""The API on a real trained classifier: keys, every bad input a 4xx naming the problem, the audit trail (on SQLite
and on a real PostgreSQL server), metrics, and answers equal to ``bundle.predict``'s."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, select

from serving import Keys, app_client, make_keys, postgres_server, zip_bytes


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database URL: a SQLite file, or a fresh database on a PostgreSQL server started for this module."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'audit.db'}"
        return
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def client(pneumonia_run: Path, database: str, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with app_client(pneumonia_run / "run", tmp_path_factory.mktemp("home"), keys, "xray", db=database) as c:
        yield c


def audit_rows(client: Any, database: str) -> list[dict[str, Any]]:
    from medlens.serve.database import audit, database_url

    engine = create_engine(database_url(database, Path()))
    with engine.connect() as connection:
        rows = [dict(r) for r in connection.execute(select(audit).order_by(audit.c.id)).mappings()]
    engine.dispose()
    return rows


def post(client: Any, data: bytes, keys: Keys, path: str = "/v1/models/xray/predict", name: str = "x") -> Any:
    return client.post(path, headers=keys.header(), files={"file": (name, data)})


# ---- keys -----------------------------------------------------------------------------------------------------------
def test_health_needs_no_key_and_v1_needs_a_live_one(client: Any, keys: Keys) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    missing = client.get("/v1/models")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in missing.json()["detail"]
    assert client.get("/v1/models", headers=keys.header("mlk_not-a-key")).status_code == 401
    revoked = client.get("/v1/models", headers=keys.header(keys.mallory))
    assert revoked.status_code == 403 and "revoked" in revoked.json()["detail"]
    (model,) = client.get("/v1/models", headers=keys.header()).json()["models"]
    assert model["name"] == "xray" and model["task"] == "classification" and model["classes"] == ["normal", "pneumonia"]
    assert len(model["version"]) == 12 and "png" in model["input_kinds"]
    assert any("Ensemble of 2" in line for line in model["model_card"])


def test_openapi_describes_the_routes(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/healthz",
        "/v1/models",
        "/v1/models/{name}/predict",
        "/v1/models/{name}/jobs",
        "/v1/jobs/{job_id}",
    } <= set(paths)
    body = paths["/v1/models/{name}/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    form = schemas[body["$ref"].rsplit("/", 1)[-1]] if "$ref" in body else body
    assert form["required"] == ["file"] and "file" in form["properties"], form
    assert client.get("/docs").status_code == 200


def test_a_key_revoked_while_the_service_runs_is_refused_from_the_next_call(client: Any, keys: Keys) -> None:
    from medlens.serve.keys import add_key, revoke_key

    name = f"bob-{client.app.state.service.engine.dialect.name}"
    bob = add_key(keys.path, name)
    assert client.get("/v1/models", headers=keys.header(bob)).status_code == 200
    revoke_key(keys.path, name)
    assert client.get("/v1/models", headers=keys.header(bob)).status_code == 403


# ---- predictions ----------------------------------------------------------------------------------------------------
def test_png_prediction_is_the_bundles_own(
    client: Any, keys: Keys, pneumonia_png: bytes, pneumonia_run: Path, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from medlens import load_bundle

    answer = post(client, pneumonia_png, keys, name="SIMPSON_HOMER.png")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (tmp_path / "x.png").write_bytes(pneumonia_png)
    direct = load_bundle(pneumonia_run / "run").predict(tmp_path / "x.png").to_dict()
    assert body["probabilities"] == direct["probabilities"] and body["label"] == direct["label"]
    assert body["source"] == "sha256:" + hashlib.sha256(pneumonia_png).hexdigest()  # never the file name
    assert body["model_version"] and "files" not in body  # a classifier writes nothing but its JSON


@pytest.mark.parametrize("kind", ["jpeg", "tiff", "dicom"])
def test_other_picture_kinds(client: Any, keys: Keys, pneumonia_png: bytes, real_data, kind: str) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    if kind == "dicom":
        data = real_data("dicom/pydicom_testdata/CT_small.dcm").read_bytes()
    else:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(pneumonia_png)).save(buffer, "JPEG" if kind == "jpeg" else "TIFF")
        data = buffer.getvalue()
    answer = post(client, data, keys)
    assert answer.status_code == 200, answer.text
    assert sum(answer.json()["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", 8) as archive:
        archive.writestr("a.dcm", b"\0" * (50 * 2**20))  # 50 MB of zeros pack into about 50 kB
    return buffer.getvalue()


def _nifti_bomb() -> bytes:
    import gzip

    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape((4096, 4096, 4096))  # 64 G voxels of float32, packed into a few bytes
    header.set_data_dtype(np.float32)
    return gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 1000)


BAD = {
    "text": (b"patient notes, not an image", 415, "not an image this service reads"),
    "empty": (b"", 400, "empty"),
    "broken png": (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 400, "unreadable"),
    "broken gzip": (b"\x1f\x8b" + b"\1" * 64, 415, "not an image"),
    "broken zip": (b"PK\x03\x04broken", 400, "zip"),
    "zip traversal": (zip_bytes({"../../etc/evil.dcm": b"x"}), 400, "outside the archive"),
    "zip of text": (zip_bytes({"a.txt": b"hello"}), 400, ""),
    "zip bomb": (_bomb(), 413, "zip bomb"),
    "nifti bomb": (_nifti_bomb(), 413, "declares more than"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_uploads_are_4xx_naming_the_problem(client: Any, keys: Keys, case: str) -> None:
    data, status, words = BAD[case]
    answer = post(client, data, keys)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "detail"} and words in body["detail"]
    assert "Traceback" not in answer.text and "/tmp" not in body["detail"]  # neither a traceback nor a server path


def test_wrong_shape_unknown_model_missing_field_and_extras(
    client: Any, keys: Keys, hippocampus_nifti: Path, pneumonia_png: bytes
) -> None:
    volume = post(client, hippocampus_nifti.read_bytes(), keys)
    assert volume.status_code == 422 and "3D image given to a 2D model" in volume.json()["detail"]
    assert post(client, pneumonia_png, keys, "/v1/models/nope/predict").status_code == 404
    missing = client.post("/v1/models/xray/predict", headers=keys.header())
    assert missing.status_code == 400 and missing.json()["detail"].startswith("file")


def test_explain_and_report_come_back_as_files(client: Any, keys: Keys, pneumonia_png: bytes) -> None:
    """?explain=true&report=true: the bundle's default explanation and the clinical report, as links that serve
    the files; the report's numbers are the answer's and it names the explanation picture."""
    import json

    answer = post(client, pneumonia_png, keys, "/v1/models/xray/predict?explain=true&report=true")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    links = body["files"]
    assert {"explanation", "explanation_map", "report", "report_en", "report_zh"} <= set(links), links
    picture = client.get(links["explanation"], headers=keys.header())
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    report = json.loads(client.get(links["report"], headers=keys.header()).content)
    probabilities = {f["class"]: f["probability"] for f in report["findings"] if f["kind"] == "probability"}
    assert probabilities == {k: round(v, 4) for k, v in body["probabilities"].items()}
    explained = report["explanation"]
    assert explained["method"] == explained["default"] and explained["images"]
    assert links["explanation"].rsplit("/", 1)[-1] in explained["images"]
    english = client.get(links["report_en"], headers=keys.header()).text
    assert english.startswith("DECISION SUPPORT ONLY") and "sha256:" in english  # the upload by hash, no file name
    plain = post(client, pneumonia_png, keys)
    assert not any(role.startswith(("explanation", "report")) for role in plain.json().get("files", {}))


# ---- the audit trail and metrics ------------------------------------------------------------------------------------
def test_every_call_leaves_an_audit_row(client: Any, keys: Keys, database: str, pneumonia_png: bytes) -> None:
    before = len(audit_rows(client, database))
    client.get("/healthz")  # not a /v1 call: no row
    client.get("/v1/models")
    client.get("/v1/models", headers=keys.header(keys.mallory))
    ok = post(client, pneumonia_png, keys)
    post(client, b"not an image", keys)
    rows = audit_rows(client, database)[before:]
    assert [(r["route"], r["status"], r["key_name"]) for r in rows] == [
        ("/v1/models", 401, None),
        ("/v1/models", 403, "mallory"),
        ("/v1/models/{name}/predict", 200, "alice"),
        ("/v1/models/{name}/predict", 415, "alice"),
    ]
    predicted, refused = rows[2], rows[3]
    assert predicted["upload_sha256"] == hashlib.sha256(pneumonia_png).hexdigest()
    assert predicted["model"] == "xray" and predicted["model_version"] == ok.json()["model_version"]
    assert predicted["request_id"] == ok.headers["x-request-id"] == ok.json()["request_id"]
    summary = json.loads(predicted["summary"])
    assert summary["label"] == ok.json()["label"] and "source" not in summary
    assert refused["upload_sha256"] == hashlib.sha256(b"not an image").hexdigest() and refused["summary"] is None
    assert all(r["latency_ms"] > 0 and r["time"] is not None for r in rows)


def test_a_failure_inside_is_a_500_without_detail_and_an_unwritable_audit_a_503(
    client: Any, keys: Keys, database: str, pneumonia_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(model: Any, images: list[Any]) -> list[Any]:
        raise RuntimeError("/secret/path in a library's own message")

    monkeypatch.setattr("medlens.serve.compute._predict_together", broken)
    failed = post(client, pneumonia_png, keys)
    assert failed.status_code == 500 and failed.json()["detail"].startswith("internal error (request ")
    assert "secret" not in failed.text and "Traceback" not in failed.text
    assert audit_rows(client, database)[-1]["status"] == 500 and failed.headers["x-request-id"] in failed.text
    monkeypatch.undo()
    assert post(client, pneumonia_png, keys).status_code == 200  # the service goes on

    async def refused(row: dict[str, Any]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(client.app.state.service.audit, "write", refused)
    unaudited = client.get("/v1/models", headers=keys.header())
    assert unaudited.status_code == 503 and "audit trail" in unaudited.json()["detail"]
    assert "models" not in unaudited.json() and unaudited.headers["x-request-id"]


def test_metrics_count_requests_latency_queue_and_compute(client: Any, keys: Keys, pneumonia_png: bytes) -> None:
    for _ in range(3):
        assert post(client, pneumonia_png, keys).status_code == 200
    text = client.get("/metrics").text
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(text)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    ok = ("medlens_requests_total", (("method", "POST"), ("route", "/v1/models/{name}/predict"), ("status", "200")))
    assert samples[ok] >= 3
    assert samples[("medlens_request_seconds_count", (("method", "POST"), ("route", "/v1/models/{name}/predict")))] >= 3
    assert samples[("medlens_model_compute_seconds_count", (("model", "xray"),))] >= 3
    assert ("medlens_queue_length", ()) in samples
    assert samples[("medlens_jobs", (("state", "queued"),))] >= 0


def test_a_job_on_a_picture_finishes_with_the_same_answer(client: Any, keys: Keys, pneumonia_png: bytes) -> None:
    import time

    submitted = post(client, pneumonia_png, keys, "/v1/models/xray/jobs")
    assert submitted.status_code == 202 and submitted.headers["location"] == f"/v1/jobs/{submitted.json()['id']}"
    for _ in range(300):
        job = client.get(submitted.headers["location"], headers=keys.header()).json()
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["state"] == "done", job
    assert job["result"]["probabilities"] == post(client, pneumonia_png, keys).json()["probabilities"]
    other = make_keys_for(client)
    assert client.get(submitted.headers["location"], headers={"Authorization": f"Bearer {other}"}).status_code == 404


def make_keys_for(client: Any) -> str:
    """Another live key in the same key file (jobs are visible to the key that made them only)."""
    from medlens.serve.keys import add_key

    service = client.app.state.service
    return add_key(service.config.keys, f"other-{np.random.default_rng().integers(1 << 30)}")


def test_the_service_removes_only_its_own_upload_folders(pneumonia_run: Path, keys: Keys, tmp_path: Path) -> None:
    """Starting the service clears the upload folders a killed run left in HOME/tmp, and nothing a user put there;
    remove_upload refuses any other path."""
    from medlens.serve.service import UPLOAD_PREFIX

    home = tmp_path / "home"
    stale = home / "tmp" / f"{UPLOAD_PREFIX}x1y2"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "scan.png").write_bytes(b"half an upload")
    mine = home / "tmp" / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    (home / "tmp" / "notes.txt").write_text("keep")
    outside = tmp_path / f"{UPLOAD_PREFIX}elsewhere"
    outside.mkdir()
    with app_client(pneumonia_run / "run", home, keys, "xray") as client:
        assert not stale.exists()
        assert (mine / "notes.txt").read_text() == "keep" and (home / "tmp" / "notes.txt").read_text() == "keep"
        service = client.app.state.service
        service.remove_upload(outside)  # the prefix, but not in the service's tmp folder
        service.remove_upload(mine)  # in the tmp folder, but not an upload
        assert outside.is_dir() and (mine / "notes.txt").is_file()
        assert post(client, b"not an image", keys).status_code == 415  # a refused upload's folder is removed
        assert sorted(p.name for p in (home / "tmp").iterdir()) == ["mine", "notes.txt"]
