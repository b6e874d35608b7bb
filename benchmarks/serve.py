"""`medlens serve` under load, a job through `kill -9`, and a screenshot of the viewer.

1. Load: PneumoniaMNIST test images as PNG files posted to `POST /v1/models/{name}/predict` by 1, 4 and 16
   concurrent clients (an httpx loop on 127.0.0.1, bounded in time and count) for `--seconds` each: requests per
   second, p50 and p99 latency, status counts; against the bundle's own `predict_many` over the same PNG files
   (images per second, measured in a process of its own before and after the load, averaged). Target: ratio >= 0.8
   at 16 clients, no 5xx, one audit row per call (counted in the service's database afterwards).
2. A job on a Hippocampus volume: the service is killed with SIGKILL while the job runs; after a restart the job
   finishes, with the answer `bundle.predict` gives.
3. `--screenshot PATH`: the viewer in headless Chromium with that volume's segmentation overlay.

    MEDLENS_DATA=../shared/data .venv/bin/python benchmarks/serve.py [--seconds 60] [--clients 1 4 16]
        [--classifier RUN] [--segmenter RUN] [--screenshot docs/images/viewer-segmentation.png]
        [--parts load kill] [--out benchmarks/results/serve.json]

Without `--classifier`, a PneumoniaMNIST classifier is trained with the default plan for one minute (the network is
what matters for speed); without `--segmenter`, a small Hippocampus segmenter is trained in about two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "serve.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def medlens(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "medlens.cli.main", "-q", *args], check=True)


def train_classifier(work: Path, data: Path) -> Path:
    run = work / "pneumonia_run"
    if (run / "bundle" / "bundle.yaml").is_file():
        return run
    medlens("import", "medmnist", str(data / "medmnist/pneumoniamnist.npz"), "--out", str(work / "pneumonia_ds"))
    medlens("plan", str(work / "pneumonia_ds"))
    medlens("train", str(work / "pneumonia_ds"), "--out", str(run), "--set", "train.budget_minutes=1")
    return run


def train_segmenter(work: Path, data: Path) -> Path:
    run = work / "hippo_run"
    if (run / "bundle" / "bundle.yaml").is_file():
        return run
    msd = work / "hippo_msd"
    raw = json.loads((data / "Task04_Hippocampus/dataset.json").read_text())
    for sub in ("imagesTr", "labelsTr"):
        (msd / sub).mkdir(parents=True, exist_ok=True)
    raw["training"] = raw["training"][:12]
    raw["numTraining"] = 12
    for entry in raw["training"]:
        for key in ("image", "label"):
            if not (msd / entry[key]).exists():
                os.symlink((data / "Task04_Hippocampus" / entry[key]).resolve(), msd / entry[key])
    (msd / "dataset.json").write_text(json.dumps(raw))
    medlens("import", "msd", str(msd), "--out", str(work / "hippo_ds"))
    medlens("plan", str(work / "hippo_ds"))
    medlens("train", str(work / "hippo_ds"), "--out", str(run), "--set", "train.budget_minutes=2",
            "--set", "segmentation.iterations_per_epoch=20")  # fmt: skip
    return run


def write_pngs(data: Path, folder: Path, n: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with np.load(data / "medmnist/pneumoniamnist.npz") as archive:
        images = archive["test_images"][:n]
    paths = []
    for i, image in enumerate(images):
        path = folder / f"test_{i:04d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


BASELINE = """
import sys, time
from pathlib import Path
from medlens import load_bundle
bundle = load_bundle(sys.argv[1]); paths = [Path(p) for p in sys.argv[3:]]; seconds = float(sys.argv[2])
list(bundle.predict_many(paths[:64]))  # warm up
done, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    done += sum(1 for _ in bundle.predict_many(paths))
print(done / (time.perf_counter() - start))
"""


def predict_many_rate(run: Path, paths: list[Path], seconds: float) -> float:
    """Images per second of ``bundle.predict_many`` over the PNG files, in a process of its own."""
    out = subprocess.run(
        [sys.executable, "-c", BASELINE, str(run), str(seconds), *map(str, paths)], check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


class Service:
    """A `medlens serve` process."""

    def __init__(self, args: list[str], home: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MEDLENS_HOME": str(home)}
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "medlens.cli.main", "serve", *args, "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"medlens serve exited: see {log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise SystemExit(f"medlens serve did not start: see {log}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=120)


async def load(url: str, key: str, bodies: list[bytes], clients: int, seconds: float, cap: int) -> dict[str, Any]:
    """``clients`` concurrent loops posting PNGs for ``seconds`` (at most ``cap`` requests in all)."""
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = 0
    stop_at = time.perf_counter() + seconds

    async def client(worker: int) -> None:
        nonlocal sent
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            i = worker
            while time.perf_counter() < stop_at and sent < cap:
                sent += 1
                body = bodies[i % len(bodies)]
                i += clients
                t0 = time.perf_counter()
                answer = await http.post("/v1/models/pneumonia/predict", files={"file": ("x.png", body)})
                latencies.append(time.perf_counter() - t0)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(clients)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def batch_totals(url: str) -> tuple[float, float]:
    """(images, batches) the service's compute pool has predicted so far, from ``GET /metrics``."""
    import httpx

    totals = {"medlens_batch_size_sum": 0.0, "medlens_batch_size_count": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals["medlens_batch_size_sum"], totals["medlens_batch_size_count"]


def others(limit: int = 6) -> list[str]:
    """The processes using the most CPU over the last second (``top``), other than this benchmark and its service."""
    mine = {os.getpid(), *(int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == os.getpid())}
    out = subprocess.run(
        ["top", "-b", "-n", "2", "-d", "1", "-o", "%CPU", "-c", "-w", "200"], capture_output=True, text=True
    ).stdout
    second = out[out.rfind("\ntop - ") :].splitlines()
    rows = []
    for line in second[second.index(next(x for x in second if x.lstrip().startswith("PID"))) + 1 :]:
        fields = line.split(None, 11)
        busy = len(fields) == 12 and float(fields[8]) >= 5
        if busy and int(fields[0]) not in mine and not fields[11].startswith("top "):
            rows.append(f"{fields[8]}% {fields[11][:100]}")
    return rows[:limit]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def audit_count(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT count(*) FROM audit WHERE route LIKE '%predict'").fetchone()[0])


def load_test(run: Path, data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from medlens.serve.keys import add_key

    paths = write_pngs(data, work / "pngs", 256)
    bodies = [p.read_bytes() for p in paths]
    home = work / "home_load"
    keys = home / "keys.json"
    keys.unlink(missing_ok=True)
    (home / "serve" / "medlens.db").unlink(missing_ok=True)
    key = add_key(keys, "load-test")
    before = predict_many_rate(run, paths, args.baseline_seconds)
    print(f"predict_many before: {before:.1f} img/s", flush=True)
    service = Service([f"pneumonia={run}", "--keys", str(keys)], home, work / "serve_load.log")
    rows = []
    try:
        for clients in args.clients:
            images, batches = batch_totals(service.url)
            row = asyncio.run(load(service.url, key, bodies, clients, args.seconds, cap=200_000))
            images_after, batches_after = batch_totals(service.url)
            row["mean_batch_size"] = round((images_after - images) / max(batches_after - batches, 1), 1)
            row["load_average_after"] = round(os.getloadavg()[0], 2)
            row["others_running"] = others()
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        service.stop()
    after = predict_many_rate(run, paths, args.baseline_seconds)
    print(f"predict_many after: {after:.1f} img/s", flush=True)
    baseline = (before + after) / 2
    for row in rows:
        row["ratio_to_predict_many"] = round(row["requests_per_second"] / baseline, 3)
    sent = sum(r["requests"] for r in rows)
    audited = audit_count(home / "serve" / "medlens.db")
    return {
        "model": str(run),
        "predict_many_images_per_second": {"before": round(before, 1), "after": round(after, 1)},
        "rows": rows,
        "requests": sent,
        "audit_rows": audited,
        "every_call_audited": audited == sent,
        "five_xx": sum(v for r in rows for k, v in r["statuses"].items() if k.startswith("5")),
    }


def kill_test(run: Path, data: Path, work: Path, case: str) -> dict[str, Any]:
    import httpx

    from medlens import load_bundle
    from medlens.serve.keys import add_key

    home = work / "home_kill"
    keys = home / "keys.json"
    keys.unlink(missing_ok=True)
    key = add_key(keys, "kill-test")
    headers = {"Authorization": f"Bearer {key}"}
    volume = data / "Task04_Hippocampus/imagesTr" / f"{case}.nii.gz"
    log = work / "serve_kill.log"
    args = [f"hippo={run}", "--keys", str(keys)]
    service = Service(args, home, log)
    job = httpx.post(f"{service.url}/v1/models/hippo/jobs", headers=headers, files={"file": ("v", volume.read_bytes())})
    job_id = job.json()["id"]
    state = ""
    while state != "running":
        state = httpx.get(f"{service.url}/v1/jobs/{job_id}", headers=headers).json()["state"]
        if state in ("done", "failed"):
            raise SystemExit(f"the job ended ({state}) before it could be killed")
        time.sleep(0.01)
    service.stop(signal.SIGKILL)
    killed_at = time.perf_counter()
    service = Service(args, home, log)
    try:
        while True:
            found = httpx.get(f"{service.url}/v1/jobs/{job_id}", headers=headers).json()
            if found["state"] in ("done", "failed"):
                break
            time.sleep(0.2)
    finally:
        service.stop()
    direct = load_bundle(run).predict(volume).volumes_ml
    return {
        "volume": volume.name,
        "model": str(run),
        "state_when_killed": state,
        "state_after_restart": found["state"],
        "attempts": found["attempts"],
        "seconds_from_kill_to_done": round(time.perf_counter() - killed_at, 1),
        "same_answer_as_bundle_predict": found.get("result", {}).get("volumes_ml") == direct,
    }


def screenshot(run: Path, data: Path, work: Path, target: Path, case: str) -> None:
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as Driver
    from selenium.webdriver.common.by import By

    from medlens.serve.keys import add_key

    home = work / "home_shot"
    keys = home / "keys.json"
    keys.unlink(missing_ok=True)
    key = add_key(keys, "screenshot")
    service = Service([f"hippocampus={run}", "--keys", str(keys)], home, work / "serve_shot.log")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    flags = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={tempfile.mkdtemp()}",
        "--window-size=1400,820", "--enable-unsafe-swiftshader", "--force-device-scale-factor=1",
    ]  # fmt: skip
    for flag in flags:
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Driver("/usr/bin/chromedriver"), options=options)
    try:
        browser.get(service.url + "/")
        browser.find_element(By.ID, "key").send_keys(key)
        browser.find_element(By.ID, "sign-in").click()
        while browser.execute_script("return document.body.dataset.state") != "signed-in":
            time.sleep(0.2)
        volume = data / "Task04_Hippocampus/imagesTr" / f"{case}.nii.gz"
        browser.find_element(By.ID, "file").send_keys(str(volume))
        while browser.execute_script("return document.body.dataset.state") not in ("ready", "error"):
            time.sleep(0.3)
        time.sleep(1)
        target.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(target))
        from PIL import Image

        if target.stat().st_size > 250_000:  # keep the repository small: a palette of 256 colours
            Image.open(target).convert("RGB").quantize(256).save(target, optimize=True)
    finally:
        browser.quit()
        service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="load per client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--baseline-seconds", type=float, default=20, help="predict_many, before and after")
    parser.add_argument("--classifier", type=Path, help="a PneumoniaMNIST run (default: train one for 1 min)")
    parser.add_argument("--segmenter", type=Path, help="a Hippocampus run (default: train one for 2 min)")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the viewer here")
    parser.add_argument(
        "--case", default="hippocampus_393", help="the Hippocampus volume of the job and the screenshot"
    )  # fmt: skip
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "serve")
    parser.add_argument("--out", type=Path, default=OUT, help="the results JSON")
    parser.add_argument(
        "--parts", nargs="+", choices=["load", "kill"], default=["load", "kill"],
        help="load: the timed load test (run it under flock); kill: the job through kill -9 (not timed)",
    )  # fmt: skip
    args = parser.parse_args()
    if not os.environ.get("MEDLENS_DATA"):
        sys.exit("MEDLENS_DATA is not set")
    data = Path(os.environ["MEDLENS_DATA"])
    args.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    others_before = others()
    classifier = args.classifier or train_classifier(args.work, data)
    segmenter = args.segmenter or train_segmenter(args.work, data)
    result: dict[str, Any] = {"command": " ".join(["benchmarks/serve.py", *sys.argv[1:]])}
    if "load" in args.parts:
        result["load"] = load_test(classifier, data, args.work, args)
    if "kill" in args.parts:
        result["kill_9_job"] = kill_test(segmenter, data, args.work, args.case)
        print(json.dumps(result["kill_9_job"]), flush=True)
    if args.screenshot:
        screenshot(segmenter, data, args.work, args.screenshot, args.case)
    result["machine"] = {
        "cores": os.cpu_count(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "others_running_before": others_before,
        "others_running_after": others(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
