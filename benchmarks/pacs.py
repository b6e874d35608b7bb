"""medlens in a PACS, on one machine, against a real Orthanc (Debian's orthanc + orthanc-dicomweb) and dcmtk.

1. The whole loop, each stage timed: real Hippocampus cases stored in Orthanc as DICOM MR series with their labels
   as DICOM SEG; ``medlens import dicomweb --labels seg --deid`` builds the dataset; ``plan``, ``train`` (a time
   budget) and ``evaluate`` (held-out Dice); then a new case sent by ``storescu`` to ``medlens listen`` comes back
   into its study in Orthanc as a SEG (and an SR where medlens has one).
2. ``medlens pacs run --push`` on a stored series: the SEG lands in the same study (Orthanc's REST API lists it) and
   passes ``dciodvfy``.
3. Latency: ``storescu`` sends 20 series to ``medlens listen`` (one after another, each once the previous one's
   results are stored); per series, the time from the last instance received to the results stored in Orthanc
   (the node's journal: last instance received, and Orthanc's C-STORE success), with ``--series-timeout`` in it.
4. Throughput: instances per second received from ``storescu`` over a loop of 1,000 instances, by the node and by
   Orthanc (both fsync what they store), alternating, in the same run; the ratio node / Orthanc.

5. Faults: the kill -9 and Orthanc-down tests of tests/pacs, run by pytest, their outcome recorded.

    .venv/bin/python benchmarks/pacs.py [--parts loop,push,latency,throughput,faults] [--run RUN] [--cases 80]
        [--budget 4m] [--latency-series 20] [--instances 1000] [--out benchmarks/results/pacs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests" / "pacs"))  # the Orthanc harness and the case builder of the tests

from orthanc_server import TOKEN, Orthanc, free_port  # noqa: E402
from pacs_cases import hippocampus_entries, hippocampus_study  # noqa: E402

MEDLENS = str(Path(sys.executable).with_name("medlens"))


def run(*args: str, **kwargs: Any) -> float:
    """Run a command, fail loudly, return its wall time."""
    started = time.perf_counter()
    done = subprocess.run(list(args), capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... failed ({done.returncode}): {done.stderr[-3000:]}")
    return time.perf_counter() - started


def wait_until(check: Any, timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}")


def start_node(
    run_dir: Path, spool: Path, forward: str, timeout: str, log: Path
) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    started = time.perf_counter()
    args = [MEDLENS, "listen", str(run_dir), "--spool", str(spool), "--port", str(port), "--forward", forward,
            "--series-timeout", timeout]  # fmt: skip
    with open(log, "ab") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"medlens listen exited: {log.read_text()[-2000:]}")
        echo = subprocess.run(["echoscu", "-aec", "MEDLENS", "127.0.0.1", str(port)], capture_output=True)
        return echo.returncode == 0

    wait_until(ready, 300, "the node", every=0.2)
    return process, port, time.perf_counter() - started


def journal(spool: Path) -> list[Any]:
    from medlens.pacs.journal import Journal

    j = Journal(spool, readonly=True)
    try:
        return j.rows()
    finally:
        j.close()


def results_of(orthanc: Orthanc, study: str) -> list[dict[str, str]]:
    return [i for i in orthanc.instances_of_study(study) if i["modality"] in ("SEG", "SR") and "v" in i["description"]]


def whole_loop(args: argparse.Namespace, work: Path, data: Path, orthanc: Orthanc) -> dict[str, Any]:
    import pydicom

    out: dict[str, Any] = {"cases_stored": args.cases}
    started = time.perf_counter()
    for i in range(args.cases):
        files, seg = hippocampus_study(data, i, work / "cases" / f"{i:03d}")
        orthanc.upload([*files, seg])  # type: ignore[list-item]
    out["store_seconds"] = time.perf_counter() - started
    key = work / "site.key"
    key.write_bytes(os.urandom(32))
    ds, run_dir = work / "dataset", work / "run"
    out["import_seconds"] = run(
        MEDLENS, "import", "dicomweb", orthanc.dicomweb, "--query", "ModalitiesInStudy=MR", "--labels", "seg",
        "--deid", "--key", str(key), "--token", TOKEN, "--out", str(ds),
    )  # fmt: skip
    out["plan_seconds"] = run(MEDLENS, "plan", str(ds))
    out["train_seconds"] = run(MEDLENS, "train", str(ds), "--out", str(run_dir), "--budget", args.budget)
    out["evaluate_seconds"] = run(MEDLENS, "evaluate", str(run_dir), "--split", "test", "--out", str(work / "eval"))
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    out["held_out_cases"] = metrics.get("n_cases")
    out["held_out_dice"] = metrics.get("dice", {}).get("value") if isinstance(metrics.get("dice"), dict) else None
    out["held_out_dice_ci95"] = metrics.get("dice", {}).get("ci95") if isinstance(metrics.get("dice"), dict) else None
    per_class = metrics.get("dice_per_class", {})
    out["held_out_dice_per_class"] = {name: entry.get("value") for name, entry in per_class.items()}
    out["metrics_keys"] = sorted(k for k, v in metrics.items() if isinstance(v, dict) and "value" in v)
    # a new case, never stored in Orthanc: storescu -> medlens listen -> Orthanc
    new_index = len(hippocampus_entries(data)) - 1
    files, _ = hippocampus_study(data, new_index, work / "new_case", with_seg=False)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    node, port, out["node_start_seconds"] = start_node(run_dir, work / "spool_loop", orthanc.address, "2s",
                                                       work / "node_loop.log")  # fmt: skip
    try:
        started = time.perf_counter()
        run("storescu", "-aec", "MEDLENS", "127.0.0.1", str(port), *map(str, files))
        stored = wait_until(lambda: results_of(orthanc, study), 300, "the new case's results in Orthanc", every=0.1)
        out["new_case_send_to_results_seconds"] = time.perf_counter() - started
        out["new_case_results"] = sorted(i["modality"] for i in stored)
    finally:
        node.terminate()
        node.wait(60)
    return out


def pacs_run_push(work: Path, data: Path, orthanc: Orthanc, run_dir: Path) -> dict[str, Any]:
    import pydicom

    files, _ = hippocampus_study(data, len(hippocampus_entries(data)) - 2, work / "push_case", with_seg=False)
    orthanc.upload(files)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    seconds = run(MEDLENS, "pacs", "run", str(run_dir), "--dicomweb", orthanc.dicomweb, "--study", study, "--push",
                  "--token", TOKEN)  # fmt: skip
    stored = results_of(orthanc, study)
    seg = next(i for i in stored if i["modality"] == "SEG")
    path = work / "pushed_seg.dcm"
    path.write_bytes(orthanc.file_of(seg["id"]))
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    lines = (checked.stdout + checked.stderr).splitlines()
    return {
        "seconds": seconds,
        "results_in_study": sorted(i["modality"] for i in stored),
        "seg_series_description": seg["description"],
        "same_study": pydicom.dcmread(path).StudyInstanceUID == study,
        "dciodvfy_errors": [line for line in lines if line.startswith("Error")],
        "dciodvfy_warnings": len([line for line in lines if line.startswith("Warning")]),
    }


def latency(args: argparse.Namespace, work: Path, data: Path, orthanc: Orthanc, run_dir: Path) -> dict[str, Any]:
    import pydicom

    spool = work / "spool_latency"
    node, port, _ = start_node(run_dir, spool, orthanc.address, args.latency_timeout, work / "node_latency.log")
    try:
        for n in range(args.latency_series):
            files, _ = hippocampus_study(data, 150 + n, work / "latency" / f"{n:02d}", with_seg=False)
            study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
            run("storescu", "-aec", "MEDLENS", "127.0.0.1", str(port), *map(str, files))
            wait_until(lambda s=study: results_of(orthanc, s), 300, "results in Orthanc", every=0.05)
        rows = wait_until(lambda: _all_sent(spool), 60, "every series sent")
    finally:
        node.terminate()
        node.wait(60)
    seconds = [r.finished - r.last_received for r in rows]
    uids = [r.series_uid for r in rows]
    timeout = float(args.latency_timeout.rstrip("s"))
    return {
        "series": len(rows),
        "series_sent": len(set(uids)),
        "series_split_in_two_or_more": sorted({u for u in uids if uids.count(u) > 1}),
        "series_timeout_seconds": timeout,
        "last_instance_to_stored_seconds": {
            "median": statistics.median(seconds),
            "max": max(seconds),
            "min": min(seconds),
            "all": seconds,
        },
        "beyond_timeout_seconds": {"median": statistics.median(seconds) - timeout, "max": max(seconds) - timeout},
    }


def _all_sent(spool: Path) -> list[Any] | None:
    rows = journal(spool)
    return rows if rows and all(r.state == "sent" for r in rows) else None


def throughput(args: argparse.Namespace, work: Path, data: Path, orthanc: Orthanc, run_dir: Path) -> dict[str, Any]:
    folder = work / "throughput"
    files: list[Path] = []
    case = 0
    while len(files) < args.instances:
        built, _ = hippocampus_study(data, 100 + case, folder / f"{case:03d}", with_seg=False)
        files += built
        case += 1
    files = files[: args.instances]
    listing = work / "throughput_files"
    listing.mkdir()
    for i, path in enumerate(files):  # one folder, so storescu sends them all in one association
        os.link(path, listing / f"{i:05d}.dcm")
    # a long series timeout: the node only receives while it is measured (predictions start after)
    node, port, _ = start_node(run_dir, work / "spool_throughput", orthanc.address, "600s", work / "node_tp.log")
    rounds = []
    try:
        for _ in range(args.rounds):
            orthanc.clear()
            to_orthanc = run("storescu", "+sd", "-aec", orthanc.aet, "127.0.0.1", str(orthanc.dicom_port), str(listing))
            to_node = run("storescu", "+sd", "-aec", "MEDLENS", "127.0.0.1", str(port), str(listing))
            rounds.append({"node_seconds": to_node, "orthanc_seconds": to_orthanc})
    finally:
        node.kill()  # the 1,000 instances need no prediction
        node.wait()
    node_rate = [len(files) / r["node_seconds"] for r in rounds]
    orthanc_rate = [len(files) / r["orthanc_seconds"] for r in rounds]
    ratio = statistics.median(n / o for n, o in zip(node_rate, orthanc_rate, strict=True))
    return {
        "instances": len(files),
        "bytes_per_instance": int(statistics.mean(p.stat().st_size for p in files)),
        "rounds": rounds,
        "node_instances_per_second": statistics.median(node_rate),
        "orthanc_instances_per_second": statistics.median(orthanc_rate),
        "ratio_node_to_orthanc": ratio,
        "target": 0.8,
        "met": ratio >= 0.8,
    }


def faults(work: Path) -> dict[str, Any]:
    """The fault tests of tests/pacs, run by pytest against their own real Orthanc and ``medlens listen`` processes:
    kill -9 mid-series, mid-prediction and mid-send then restart (3 series, 2 kills); Orthanc stopped while the node
    sends, then started. Each asserts one SEG per series in Orthanc (counted by SOP Instance UID) and nothing but the
    journal left in the spool."""
    import xml.etree.ElementTree as ET

    report = work / "faults.xml"
    tests = [
        "tests/pacs/test_listen_faults.py",
        "tests/pacs/test_listen.py::test_orthanc_down_then_up_gets_the_results_exactly_once",
    ]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=ROOT.parent, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        failure = case.find("failure")
        cases.append({
            "test": case.get("name"),
            "seconds": float(case.get("time", 0)),
            "passed": failure is None and case.find("error") is None and case.find("skipped") is None,
            "failure": None if failure is None else (failure.get("message") or "")[:500],
        })  # fmt: skip
    return {
        "command": f"python -m pytest {' '.join(tests)}",
        "seconds_with_setup": seconds,
        "exit_code": done.returncode,
        "tests": cases,
        "checked": {
            "kill_9": "3 series, 2 kills (mid-send and mid-series at once; mid-prediction), 3 starts: each study has "
            "exactly 1 SEG in Orthanc (by SOP Instance UID), the one cut mid-send keeps its SOP Instance UID, "
            "no MR copied, nothing but the journal left in the spool, journal history of the series cut "
            "mid-prediction: receiving, received, predicting, received, predicting, predicted, sending, sent",
            "orthanc_down_then_up": "the node retries with backoff while Orthanc is stopped; once it is started: "
            "exactly 1 SEG in the study, nothing but the journal left in the spool",
        },
    }


PARTS = ("loop", "push", "latency", "throughput", "faults")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--run", type=Path, default=None,
                        help="a trained Hippocampus run for push/latency/throughput without the loop")  # fmt: skip
    parser.add_argument("--cases", type=int, default=80, help="Hippocampus cases stored in Orthanc for the dataset")
    parser.add_argument("--budget", default="4m", help="training budget")
    parser.add_argument("--latency-series", type=int, default=20)
    parser.add_argument("--latency-timeout", default="1s", help="the node's --series-timeout in the latency run")
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating node/Orthanc throughput rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "pacs.json")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {PARTS}")
    if "loop" not in parts and args.run is None and set(parts) & {"push", "latency", "throughput"}:
        parser.error("push, latency and throughput need the loop's run, or --run RUN")
    data = Path(os.environ.get("MEDLENS_DATA", ROOT.parent.parent / "shared" / "data")) / "Task04_Hippocampus"
    work = args.keep or Path(tempfile.mkdtemp(prefix="medlens-pacs-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # no Lua filter on received instances (the tests' "slow Orthanc"): Orthanc receives at its own speed
    orthanc = Orthanc(work / "orthanc", can_be_slowed=False).start()
    results: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/pacs.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "orthanc": subprocess.run([orthanc.binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0],
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "other_load_average_at_start": os.getloadavg()[0],
    }
    run_dir = args.run or work / "run"
    steps = [
        ("whole_loop", "loop", lambda: whole_loop(args, work, data, orthanc)),
        ("pacs_run_push", "push", lambda: pacs_run_push(work, data, orthanc, run_dir)),
        ("latency", "latency", lambda: latency(args, work, data, orthanc, run_dir)),
        ("throughput", "throughput", lambda: throughput(args, work, data, orthanc, run_dir)),
        ("faults", "faults", lambda: faults(work)),
    ]
    try:
        for key, part, step in steps:
            if part in parts:
                started = time.perf_counter()
                results[key] = step()
                results[key]["part_seconds"] = time.perf_counter() - started
                print(json.dumps({key: results[key]}, indent=1), flush=True)
    finally:
        orthanc.stop()
        results["load_average_at_end"] = os.getloadavg()[0]
        results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
