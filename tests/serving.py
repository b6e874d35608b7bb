"""Helpers of the service tests (tests/serve): keys, an in-process app, a real service process, uploads, Chromium."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from suite_support import missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Keys:
    """A key file with a live key (``alice``) and a revoked one (``mallory``)."""

    path: Path
    alice: str
    mallory: str

    def header(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.alice}"}


def make_keys(folder: Path) -> Keys:
    from medlens.serve.keys import add_key, revoke_key

    path = folder / "keys.json"
    alice, mallory = add_key(path, "alice"), add_key(path, "mallory")
    revoke_key(path, "mallory")
    return Keys(path, alice, mallory)


@contextmanager
def app_client(run: Path, home: Path, keys: Keys, name: str = "model", **config: Any) -> Iterator[Any]:
    """A TestClient on an app serving ``run`` as ``name`` (its lifespan started and stopped)."""
    from fastapi.testclient import TestClient

    from medlens.serve import ServiceConfig, create_app

    app = create_app(ServiceConfig(models={name: run}, keys=keys.path, home=home, **config))
    with TestClient(app) as client:
        yield client


# ---- uploads built from the real data ---------------------------------------------------------------------------
def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def series_zip(folder: Path, prefix: str = "") -> bytes:
    """The DICOM files of ``folder`` as a zip (member names under ``prefix``)."""
    return zip_bytes({f"{prefix}{p.name}": p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()})


# ---- a real service process -------------------------------------------------------------------------------------
@dataclass
class Server:
    """A ``medlens serve`` process on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(argv: list[str], home: Path, log: Path, url: str, timeout: float = 240) -> Server:
    """Start ``medlens ARGV`` (a ``serve`` command) with ``MEDLENS_HOME=home``; return once ``url/healthz`` answers.

    The timeout is long because importing torch and MONAI takes a while on a busy 2-core machine.
    """
    import httpx

    env = {**os.environ, "MEDLENS_HOME": str(home), "OMP_NUM_THREADS": "1"}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "medlens.cli.main", *argv], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"medlens serve exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return Server(process, url, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise AssertionError(f"medlens serve did not answer within {timeout} s: {log.read_text()[-2000:]}")


def chromium_paths() -> tuple[str, str]:
    """Debian's chromium and chromedriver (a test fails in CI without them)."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing("chromium and chromedriver are not installed (Debian chromium, chromium-driver; make system-packages)")
    assert browser is not None and driver is not None
    return browser, driver


# ---- a real PostgreSQL server -------------------------------------------------------------------------------------
def postgres_binaries() -> tuple[str, str]:
    """initdb and pg_ctl: on the path, or in Debian's /usr/lib/postgresql/VERSION/bin."""
    import glob
    import shutil

    found = [shutil.which("initdb"), shutil.which("pg_ctl")]
    if None in found:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        if versions:
            found = [f"{versions[-1]}/initdb", f"{versions[-1]}/pg_ctl"]
    if None in found or not all(Path(str(p)).is_file() for p in found):
        missing("PostgreSQL is not installed (Debian postgresql; make system-packages)")
    return str(found[0]), str(found[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of its own on 127.0.0.1 (initdb into a temporary folder, pg_ctl on a free port); yields
    the URL of a fresh database; stopped and removed afterwards. As root, the server runs as the ``postgres`` user
    (initdb refuses root)."""
    import pwd
    import shutil
    import tempfile

    initdb, pg_ctl = postgres_binaries()
    folder = Path(tempfile.mkdtemp(prefix="medlens-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            missing("running as root, and there is no 'postgres' user to run PostgreSQL as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    run = lambda *args: subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)  # noqa: E731
    try:
        run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as connection:
            connection.execute("CREATE DATABASE medlens")
        yield f"postgresql://postgres@127.0.0.1:{port}/medlens"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
