"""A real ``medlens serve`` process on a trained hippocampus segmenter, shared by the module's tests: every flag
takes effect; no patient identifier reaches the database, the logs or any file the service keeps; the web viewer in
a real headless Chromium draws the mask the API returned; a job survives ``kill -9`` and finishes after a restart.
"""

from __future__ import annotations

import gzip
import io
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nibabel as nib
import numpy as np
import pydicom
import pytest

from serving import Keys, Server, chromium_paths, free_port, make_keys, series_zip, start_server, zip_bytes
from suite_support import missing

HOST = "127.0.0.2"  # --host takes effect: the service is not on 127.0.0.1


@pytest.fixture(scope="module")
def setup(hippo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("service")
    keys = make_keys(folder / "keys")
    port = free_port()
    argv = [
        "serve", f"hippocampus={hippo_run / 'run'}", "--host", HOST, "--port", str(port), "--keys", str(keys.path),
        "--db", f"sqlite:///{folder / 'custom.db'}", "--max-upload-mb", "4", "--workers", "1",
    ]  # fmt: skip
    return {"argv": argv, "home": folder / "home", "log": folder / "serve.log", "keys": keys, "folder": folder,
            "url": f"http://{HOST}:{port}", "port": port}  # fmt: skip


@pytest.fixture(scope="module")
def server(setup: dict[str, Any]) -> Iterator[Server]:
    running = start_server(setup["argv"], setup["home"], setup["log"], setup["url"])
    yield running
    running.stop()


def post(server: Server, keys: Keys, data: bytes, route: str = "predict", **params: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/models/hippocampus/{route}", headers=keys.header(), files={"file": ("upload", data)},
        params=params, timeout=120,
    )  # fmt: skip


def wait_for_job(server: Server, keys: Keys, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=keys.header()).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")


# ---- flags --------------------------------------------------------------------------------------------------------
def test_serve_flags_take_effect(server: Server, setup: dict[str, Any]) -> None:
    keys: Keys = setup["keys"]
    # --host and --port: answers on 127.0.0.2 at that port, and nothing listens on 127.0.0.1 there
    assert httpx.get(f"http://{HOST}:{setup['port']}/healthz").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{setup['port']}/healthz")
    # NAME=RUN names the model; --keys: the key from that file works
    models = httpx.get(f"{server.url}/v1/models", headers=keys.header()).json()["models"]
    assert [m["name"] for m in models] == ["hippocampus"]
    # --max-upload-mb 4: a larger upload is 413, whether it says its length or is sent in chunks
    big = b"\0" * (4_300_000)
    assert post(server, keys, big).status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        for _ in range(45):
            yield b"\0" * 100_000
        yield b"\r\n--x--\r\n"

    chunked = httpx.post(
        f"{server.url}/v1/models/hippocampus/predict", content=chunks(),
        headers={**keys.header(), "content-type": "multipart/form-data; boundary=x"},
    )  # fmt: skip
    assert chunked.status_code == 413, chunked.text
    # --db: the audit rows are in that file, and no default database was made
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{setup['folder'] / 'custom.db'}")
    with engine.connect() as connection:
        statuses = [r[0] for r in connection.execute(text("SELECT status FROM audit"))]
    engine.dispose()
    assert statuses.count(413) == 2 and 200 in statuses
    assert not (setup["home"] / "serve" / "medlens.db").exists()
    # --workers 1: one compute thread
    assert "with 1 compute worker(s)" in setup["log"].read_text()


# ---- the viewer ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(setup: dict[str, Any]) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = chromium_paths()
    import medlens.serve

    if not (Path(medlens.serve.__file__).parent / "static" / "viewer.js").is_file():
        missing("the web viewer is not built (make viewer)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="medlens-chromium-")
    flags = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,1000",
        "--enable-unsafe-swiftshader", "--force-device-scale-factor=1",
    ]  # fmt: skip
    for flag in flags:
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_script_timeout(30)
    yield chrome
    chrome.quit()
    import shutil

    shutil.rmtree(profile, ignore_errors=True)


def overlay_colour(pixel: np.ndarray) -> int:
    """0 for a grey pixel (no overlay), else the class whose colour the pixel leans to (1 red, 2 green)."""
    r, g, b = (int(v) for v in pixel[:3])
    if max(r, g, b) - min(r, g, b) < 30:
        return 0
    return 1 if r > g else 2


def test_viewer_draws_the_mask_the_api_returned(
    server: Server, setup: dict[str, Any], browser: Any, hippocampus_nifti: Path, tmp_path: Path
) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    keys: Keys = setup["keys"]
    browser.get(server.url + "/")
    browser.find_element(By.ID, "key").send_keys(keys.alice)
    browser.find_element(By.ID, "sign-in").click()
    state = lambda: browser.execute_script("return document.body.dataset.state")  # noqa: E731
    deadline = time.monotonic() + 30
    while state() != "signed-in" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state() == "signed-in", browser.find_element(By.ID, "status").text
    browser.find_element(By.ID, "file").send_keys(str(hippocampus_nifti))
    deadline = time.monotonic() + 180
    while state() not in ("ready", "error") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert state() == "ready", browser.find_element(By.ID, "status").text
    browser.save_screenshot(str(tmp_path / "viewer.png"))

    # the numbers on the page are the API's
    result = browser.execute_script("return window.medlensViewer.result")
    shown = {r.find_elements(By.TAG_NAME, "td")[1].text: r.find_elements(By.TAG_NAME, "td")[2].text
             for r in browser.find_elements(By.CSS_SELECTOR, "#sizes tr")}  # fmt: skip
    direct = post(server, keys, hippocampus_nifti.read_bytes()).json()
    assert shown == {name: f"{value} mL" for name, value in direct["volumes_ml"].items()}
    assert result["volumes_ml"] == direct["volumes_ml"]

    # one axial plane through the finding; the screenshot's overlay pixels against the mask the API returned
    Select(browser.find_element(By.ID, "layout")).select_by_value("axial")
    time.sleep(0.5)
    mask_file = httpx.get(server.url + result["files"]["mask"], headers=keys.header())
    mask_image = nib.Nifti1Image.from_bytes(gzip.decompress(mask_file.content))
    mask = np.asarray(mask_image.dataobj)
    rendition = nib.Nifti1Image.from_bytes(
        gzip.decompress(httpx.get(server.url + result["files"]["viewer_mask"], headers=keys.header()).content)
    )
    assert np.allclose(rendition.affine, mask_image.affine) and rendition.shape == mask.shape
    geometry = browser.execute_script(
        "const v = window.medlensViewer; const f = (p) => v.vox2frac(p, 1);"
        "return {tile: v.tile(), cross: Array.from(v.nv.scene.crosshairPos), o: f([0,0,0]), x: f([1,0,0]),"
        " y: f([0,1,0]), z: f([0,0,1])}"
    )
    assert geometry["tile"]["axCorSag"] == 0  # axial
    origin = np.array(geometry["o"])
    steps = np.array([geometry[a] for a in "xyz"]) - origin  # frac change per voxel step along each index axis
    index = np.stack(np.meshgrid(*[np.arange(n) for n in mask.shape], indexing="ij"), -1).reshape(-1, 3)
    frac = origin + index @ steps
    on_slice = np.abs(frac[:, 2] - geometry["cross"][2]) < np.abs(steps[:, 2]).max() / 2
    # where NiiVue draws each voxel centre of that plane, in canvas pixels (its own frac -> canvas transform)
    where = browser.execute_script(
        "return arguments[0].map((f) => window.medlensViewer.nv.frac2canvasPos(f))", frac[on_slice].tolist()
    )
    scale = browser.execute_script("return window.devicePixelRatio")
    canvas = browser.find_element(By.ID, "gl")
    shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB"))
    labels = mask[tuple(index[on_slice].T)]
    xs, ys = (np.round(np.array(where, dtype=float)[:, i] / scale).astype(int) for i in (0, 1))
    seen = np.array([overlay_colour(shot[y, x]) for x, y in zip(xs, ys, strict=True)])
    assert (labels > 0).sum() >= 20  # the plane cuts through the finding
    agreement = (seen == labels).mean()
    assert agreement > 0.95, agreement
    # the opacity slider takes the overlay away
    browser.execute_script(
        "const o = document.getElementById('opacity'); o.value = 0; o.dispatchEvent(new Event('input'));"
    )
    time.sleep(0.5)
    bare = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB"))
    assert all(overlay_colour(bare[y, x]) == 0 for x, y in zip(xs, ys, strict=True))


# ---- nothing identifying is kept ----------------------------------------------------------------------------------
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "OtherPatientNames",
               "AccessionNumber", "StudyID", "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
               "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
               "AdditionalPatientHistory", "StationName", "DeviceSerialNumber")  # fmt: skip


def identifiers(files: list[Path]) -> set[str]:
    """The identifying header values of ``files``, and each part of a name, that are long enough to search for."""
    found: set[str] = set()
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in IDENTIFYING:
            value = ds.get(keyword)
            for text in [str(value), *str(value).replace("^", " ").split()] if value not in (None, "") else []:
                if len(text.strip()) >= 5:
                    found.add(text.strip())
    return found


def test_no_identifier_is_stored_or_logged(server: Server, setup: dict[str, Any], mr_crop: Path, real_data) -> None:  # type: ignore[no-untyped-def]
    keys: Keys = setup["keys"]
    cts = [real_data("dicom/deid_data/ctbrain1.dcm"), real_data("dicom/deid_data/ctbrain2.dcm")]
    series = sorted(mr_crop.glob("*.dcm"))
    secrets = identifiers(cts) | identifiers(series[:1])
    assert {"SIMPSON", "HOMER", "00007041776", "20200704", "SPRINGFIELD"} <= secrets
    name = "SIMPSON_HOMER_00007041776"
    answers = [
        post(server, keys, series_zip(mr_crop, f"{name}/")),  # a real MR series with ID, birth date, accession
        post(server, keys, series_zip(mr_crop, f"{name}/"), "jobs"),
        post(server, keys, cts[0].read_bytes()),  # a CT header full of details (3 channels: refused, 422)
        post(server, keys, cts[0].read_bytes(), "jobs"),
        post(server, keys, zip_bytes({f"{name}/{p.name}": p.read_bytes() for p in cts}), viewer="true"),
    ]
    assert [a.status_code for a in answers[:4]] == [200, 202, 422, 202], [a.text for a in answers]
    assert answers[4].status_code in (400, 422)  # two copies of one slice (and 3 channels)
    assert wait_for_job(server, keys, answers[1].json()["id"])["state"] == "done"
    failed = wait_for_job(server, keys, answers[3].json()["id"])
    assert failed["state"] == "failed" and "3 channels" in failed["error"]
    for answer in answers:
        assert not any(s in answer.text for s in secrets)
    kept = [p for p in [*setup["home"].rglob("*"), *setup["folder"].glob("custom.db*"), setup["log"]] if p.is_file()]
    assert any(p.suffix == ".db" for p in kept) and any(p.name.endswith("mask.nii.gz") for p in kept)
    for path in kept:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data += gzip.decompress(data)
        leaked = [s for s in secrets if s.encode() in data or s.encode("utf-16-le") in data]
        assert not leaked, f"{path} holds {leaked}"


# ---- jobs and kill -9 (last: it kills the module's server) ---------------------------------------------------------
def test_a_job_survives_a_kill_9_of_the_service(
    server: Server, setup: dict[str, Any], hippo_run: Path, hippocampus_root: Path
) -> None:
    """Three volumes queued; the service is killed (SIGKILL) while one runs; after a restart every job ends done,
    with the mask ``bundle.predict`` gives."""
    from medlens import load_bundle

    keys: Keys = setup["keys"]
    cases = sorted((hippocampus_root / "imagesTr").glob("hippocampus_*.nii.gz"))[-3:]
    ids = []
    for case in cases:
        answer = post(server, keys, case.read_bytes(), "jobs")
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    states: list[str] = []
    deadline = time.monotonic() + 60
    while "running" not in states and time.monotonic() < deadline:
        states = [httpx.get(f"{server.url}/v1/jobs/{i}", headers=keys.header()).json()["state"] for i in ids]
        time.sleep(0.02)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    assert "running" in states and states.count("done") < len(ids), states  # killed with work in hand
    restarted = start_server(setup["argv"], setup["home"], setup["log"], setup["url"])
    try:
        jobs = [wait_for_job(restarted, keys, i) for i in ids]
    finally:
        restarted.stop()
    assert [j["state"] for j in jobs] == ["done"] * 3, jobs
    assert max(j["attempts"] for j in jobs) == 2  # the interrupted one ran again
    bundle = load_bundle(hippo_run / "run")
    for case, job in zip(cases, jobs, strict=True):
        assert job["result"]["volumes_ml"] == bundle.predict(case).volumes_ml
    assert "queued again" in setup["log"].read_text()
    assert not list((setup["home"] / "serve" / "spool").iterdir())  # a spooled input goes when its job is over
