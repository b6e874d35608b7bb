"""A real Orthanc PACS (Debian's ``orthanc`` with ``orthanc-dicomweb``) on free 127.0.0.1 ports, for tests and
benchmarks.

:class:`Orthanc` writes a temporary configuration (HTTP and DICOM ports, storage folder, the DICOMweb plugin, the
medlens node as a known modality), starts the ``Orthanc`` binary, waits until its REST API answers, and stops it.
It can be stopped and started again on the same ports and storage (the "PACS down, then up" tests).

HTTP access is guarded by a Lua filter (Orthanc's ``IncomingHttpRequestFilter``) that lets a request through with
``Authorization: Bearer <token>`` or with HTTP basic ``<user>:<password>``; with neither Orthanc answers ``403``.
An optional slow mode (a file ``slow`` in the work folder) makes every received instance take ``slow_seconds``
before Orthanc answers (``ReceivedInstanceFilter``): a destination that is mid-store when the sender is killed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

TOKEN = "medlens-test-token"
USER, PASSWORD = "radiology", "s3cret"
LUA = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  local auth = httpHeaders['authorization']
  if auth == 'Bearer {token}' or auth == 'Basic {basic}' then return true end
  return false
end
"""
SLOW_FILTER = """
function ReceivedInstanceFilter(dicom, origin, info)
  local f = io.open('{slow}', 'r')
  if f ~= nil then
    f:close()
    local t = os.clock()
    while os.clock() - t < {seconds} do end
  end
  return true
end
"""


def find_binary() -> str | None:
    """The Orthanc server binary (Debian installs it in /usr/sbin)."""
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc",) if os.access(p, os.X_OK)), None)


def find_dicomweb_plugin() -> str | None:
    """The DICOMweb plugin of Debian's orthanc-dicomweb."""
    for path in ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",):
        if Path(path).is_file():
            return path
    found = sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*")) if Path("/usr/lib/orthanc").is_dir() else []
    return str(found[0]) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """One Orthanc server in ``work`` (configuration, storage, log)."""

    def __init__(
        self,
        work: Path,
        *,
        modalities: dict[str, tuple[str, int]] | None = None,
        slow_seconds: float = 3,
        can_be_slowed: bool = True,
    ) -> None:
        """``can_be_slowed``: install the Lua ``ReceivedInstanceFilter`` that :meth:`slow` switches on (it runs for
        every received instance, so a throughput benchmark goes without it)."""
        binary, plugin = find_binary(), find_dicomweb_plugin()
        if binary is None or plugin is None:
            raise FileNotFoundError("Orthanc or its DICOMweb plugin is not installed (make system-packages)")
        self.binary, self.plugin = binary, plugin
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.aet = "ORTHANC"
        self.modalities = dict(modalities or {})
        self.slow_seconds = slow_seconds
        self.can_be_slowed = can_be_slowed
        self.process: subprocess.Popen[bytes] | None = None
        self.auth = (USER, PASSWORD)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def address(self) -> str:
        """Orthanc as a C-STORE destination: ``AE@HOST:PORT``."""
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    def _write_config(self) -> Path:
        basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        lua = self.work / "filter.lua"
        lua.write_text(
            (LUA + (SLOW_FILTER if self.can_be_slowed else ""))
            .replace("{token}", TOKEN)
            .replace("{basic}", basic)
            .replace("{slow}", str(self.work / "slow"))
            .replace("{seconds}", str(self.slow_seconds))
        )
        config = {
            "Name": "medlens-test",
            "StorageDirectory": str(self.work / "storage"),
            "IndexDirectory": str(self.work / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "HttpBindAddress": "127.0.0.1",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,  # the Lua filter checks bearer tokens and basic credentials
            "Plugins": [self.plugin],
            "LuaScripts": [str(lua)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
            "DicomModalities": {name: [aet, "127.0.0.1", port] for name, (aet, port) in self.modalities.items()},
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "StableAge": 1,
            "ConcurrentJobs": 1,
            "HttpTimeout": 60,
        }
        path = self.work / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout: float = 30) -> Orthanc:
        config = self._write_config()
        log = open(self.work / "orthanc.log", "ab")
        self.process = subprocess.Popen([self.binary, str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}; see {self.work / 'orthanc.log'}")
            try:
                if requests.get(f"{self.url}/system", auth=self.auth, timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout} s; see {self.work / 'orthanc.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def slow(self, on: bool) -> None:
        """Make every received instance take ``slow_seconds`` (or stop doing so)."""
        if on and not self.can_be_slowed:
            raise RuntimeError("this Orthanc was started without its slowing filter (can_be_slowed=False)")
        flag = self.work / "slow"
        if on:
            flag.write_text("slow")
        else:
            flag.unlink(missing_ok=True)

    # ---- the REST API ------------------------------------------------------------------------------------------
    def get(self, path: str) -> Any:
        response = requests.get(f"{self.url}{path}", auth=self.auth, timeout=30)
        response.raise_for_status()
        return response.json()

    def text(self, path: str) -> str:
        response = requests.get(f"{self.url}{path}", auth=self.auth, timeout=30)
        response.raise_for_status()
        return response.text

    def clear(self) -> None:
        """Delete every patient (and so every study, series, instance)."""
        for patient in self.get("/patients"):
            requests.delete(f"{self.url}/patients/{patient}", auth=self.auth, timeout=30).raise_for_status()

    def upload(self, files: list[Path]) -> None:
        for path in files:
            response = requests.post(f"{self.url}/instances", data=path.read_bytes(), auth=self.auth, timeout=30)
            response.raise_for_status()

    def instances_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        """Every instance of a study (by StudyInstanceUID): SOP Instance UID, series UID, modality, description."""
        found = requests.post(
            f"{self.url}/tools/find",
            json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
            auth=self.auth,
            timeout=30,
        )
        found.raise_for_status()
        out = []
        for instance in found.json():
            series = self.get(f"/series/{instance['ParentSeries']}")
            out.append(
                {
                    "sop": instance["MainDicomTags"]["SOPInstanceUID"],
                    "series": series["MainDicomTags"]["SeriesInstanceUID"],
                    "modality": series["MainDicomTags"].get("Modality", ""),
                    "description": series["MainDicomTags"].get("SeriesDescription", ""),
                    "id": instance["ID"],
                }
            )
        return out

    def all_instances(self) -> list[str]:
        """Orthanc ids of every instance stored."""
        return list(self.get("/instances"))

    def file_of(self, instance_id: str) -> bytes:
        response = requests.get(f"{self.url}/instances/{instance_id}/file", auth=self.auth, timeout=30)
        response.raise_for_status()
        return response.content
