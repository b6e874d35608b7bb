"""Benchmark: files per second of ``medlens deid`` against dicognito, same files, same machine, same run.

The real 192-slice MR series is repeated (symlinks in a temporary folder outside git) to at least 10,000
files. Each tool runs as its own command-line process; peak memory is the largest resident set of the whole
process tree (parent plus workers), sampled from /proc every 50 ms, and also sampled at each quarter of the
run to show whether memory stays flat. Inputs are read once before timing and outputs are synced to disk
between runs, so no tool pays for another's cold cache or pending writes.

    MEDLENS_DATA=../shared/data .venv/bin/python benchmarks/deid.py [--files 10000] [--workers 2]

Writes benchmarks/results/deid.json and prints a Markdown table row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from medlens.core.settings import get_settings

BIN = Path(sys.executable).parent


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total


def run_measured(cmd: list[str], out: Path, expected: int) -> dict[str, float]:
    """Run ``cmd``; return wall seconds, peak tree RSS and RSS at each quarter of the outputs written."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, quarters, stop = 0, {}, threading.Event()

    def sample() -> None:
        nonlocal peak
        tick = 0
        while not stop.is_set():
            now = _tree_rss(proc.pid)
            peak = max(peak, now)
            tick += 1
            if tick % 20 == 0:  # once a second, see how far the run is
                done = sum(1 for _ in out.rglob("*.dcm")) if out.exists() else 0
                for q in (25, 50, 75):
                    if done >= expected * q / 100 and q not in quarters:
                        quarters[q] = now
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {stderr[-2000:]}")
    return {
        "seconds": seconds,
        "peak_rss_mb": peak / 2**20,
        **{f"rss_at_{q}pct_mb": v / 2**20 for q, v in sorted(quarters.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "deid.json")
    args = parser.parse_args()

    root = get_settings().data_root
    if root is None:
        raise SystemExit("set MEDLENS_DATA to the shared data folder")
    series = sorted((root / "dicom" / "sag_anon_mr_t1_series").glob("*.dcm"))
    work = Path(tempfile.mkdtemp(prefix="medlens-deid-bench-"))
    try:
        source = work / "in"
        copies = -(-args.files // len(series))
        for c in range(copies):
            folder = source / f"copy{c:03d}"
            folder.mkdir(parents=True)
            for path in series:
                (folder / path.name).symlink_to(path)
        n_files = copies * len(series)
        key = work / "key"
        key.write_text(secrets.token_hex(32))
        env_home = work / "home"
        os.environ["MEDLENS_HOME"] = str(env_home)

        results = {}
        medlens = [str(BIN / "medlens"), "-q", "deid", str(source)]
        runs = {
            f"medlens_workers{args.workers}": [*medlens, str(work / "m"), "--key", str(key),
                                               "--workers", str(args.workers)],
            "medlens_workers1": [*medlens, str(work / "m1"), "--key", str(key), "--workers", "1"],
            # dicognito 0.19's console script is broken (main() needs argv); its module entry point works.
            "dicognito": [sys.executable, "-m", "dicognito", "--quiet", "--seed", "bench",
                          "--output-directory", str(work / "d"), str(source)],
        }  # fmt: skip
        # Same conditions for every tool: inputs in the page cache before the first timed run (otherwise
        # whichever tool runs first pays for cold reads), and earlier outputs flushed to disk between runs.
        for path in series:
            path.read_bytes()
        for name, cmd in runs.items():
            os.sync()
            out = Path(cmd[cmd.index("--output-directory") + 1]) if name == "dicognito" else Path(cmd[4])
            # dicognito names outputs by SOP Instance UID, and the repeated copies share UIDs, so its folder
            # holds 192 files at the end; progress for it is counted on the medlens scale only approximately.
            expected = len(series) if name == "dicognito" else n_files
            print(f"running {name} on {n_files} files ...", file=sys.stderr)
            results[name] = run_measured(cmd, out, expected)
            results[name]["files_per_second"] = n_files / results[name]["seconds"]
            shutil.rmtree(out, ignore_errors=True)

        best = results[f"medlens_workers{args.workers}"]
        single = results["medlens_workers1"]
        dicognito = results["dicognito"]
        summary = {
            "files": n_files,
            "workers": args.workers,
            "machine": f"{platform.machine()} {os.cpu_count()} CPU, {platform.platform()}",
            "python": platform.python_version(),
            "results": results,
            "speedup_vs_dicognito": best["files_per_second"] / dicognito["files_per_second"],
            "speedup_vs_dicognito_one_worker": single["files_per_second"] / dicognito["files_per_second"],
            "target_speedup": 2.0,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        print(
            "| deid throughput, real MR series x{} ({} files) | medlens {:.0f} files/s ({} workers), "
            "{:.0f} files/s (1 worker) | dicognito {:.0f} files/s | {:.2f}x ({:.2f}x one worker) | "
            "peak RSS medlens {:.0f} MB / {:.0f} MB, dicognito {:.0f} MB |".format(
                copies,
                n_files,
                best["files_per_second"],
                args.workers,
                single["files_per_second"],
                dicognito["files_per_second"],
                summary["speedup_vs_dicognito"],
                summary["speedup_vs_dicognito_one_worker"],
                best["peak_rss_mb"],
                single["peak_rss_mb"],
                dicognito["peak_rss_mb"],
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
