"""Fixtures for the PACS tests: a real Orthanc (one per module), real dcmtk tools, real cases as DICOM studies, and
``medlens listen`` nodes (in this process, or as a real subprocess for the kill -9 tests).

Fixtures:
    orthanc: an :class:`orthanc.Orthanc` started for the module (storage cleared by each test that needs it empty).
    storescu, echoscu: the dcmtk tools' paths.
    hippo_studies: ``hippo_studies(n)`` -> n real Hippocampus cases as DICOM MR studies with SEG labels (built
        once per session in a temporary folder), each ``(series files, seg file, study uid)``.
    node: ``node(run, spool, **config)`` -> a started in-process :class:`medlens.pacs.node.Node` (stopped after).
    node_process: ``node_process(run, spool, *flags)`` -> a ``medlens listen`` subprocess, ready (answers C-ECHO).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from suite_support import missing, tool

sys.path.insert(0, str(Path(__file__).parent))
from orthanc_server import Orthanc, find_binary, find_dicomweb_plugin, free_port
from pacs_cases import hippocampus_study
from pacs_node import NODE_AE, NodeProcess, wait_until


@pytest.fixture(scope="session")
def storescu() -> str:
    return tool("storescu", "dcmtk")


@pytest.fixture(scope="session")
def echoscu() -> str:
    return tool("echoscu", "dcmtk")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    if find_binary() is None or find_dicomweb_plugin() is None:
        missing("Orthanc and its DICOMweb plugin are not installed (Debian orthanc, orthanc-dicomweb; make setup)")
    server = Orthanc(tmp_path_factory.mktemp("orthanc"), slow_seconds=6).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def hippo_studies(
    hippocampus_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[int], list[tuple[list[Path], Path, str]]]:
    built: list[tuple[list[Path], Path, str]] = []
    root = tmp_path_factory.mktemp("hippo_studies")

    def make(n: int) -> list[tuple[list[Path], Path, str]]:
        while len(built) < n:
            i = len(built)
            files, seg = hippocampus_study(hippocampus_root, 100 + i, root / f"case{i}")
            assert seg is not None
            built.append((files, seg, str(pydicom.dcmread(files[0]).StudyInstanceUID)))
        return built[:n]

    return make


@pytest.fixture()
def node() -> Iterator[Callable[..., Any]]:
    from medlens.pacs.node import Node, NodeConfig
    from medlens.tasks.base import load_bundle

    started: list[Node] = []

    def start(run: Path, spool: Path, **config: Any) -> Node:
        config.setdefault("port", free_port())
        config.setdefault("series_timeout", 0.5)
        config.setdefault("ae_title", NODE_AE)
        instance = Node(load_bundle(run), NodeConfig(spool=spool, **config))
        instance.start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture()
def node_process(medlens_script: Path, echoscu: str) -> Iterator[Callable[..., NodeProcess]]:
    running: list[NodeProcess] = []

    def start(
        run: Path, spool: Path, *flags: str, port: int | None = None, host: str = "127.0.0.1", ae: str = NODE_AE
    ) -> NodeProcess:
        port = port or free_port()
        args = [str(medlens_script), "listen", str(run), "--spool", str(spool), "--port", str(port), "--ae", ae]
        process = NodeProcess([*args, "--host", host, *flags], port, spool.parent / f"{spool.name}.log")
        running.append(process)

        def ready() -> bool:
            if process.process.poll() is not None:
                raise AssertionError(f"medlens listen exited: {process.log.read_text()[-2000:]}")
            return subprocess.run([echoscu, "-aec", ae, host, str(port)], capture_output=True).returncode == 0

        wait_until(ready, 120, "medlens listen to answer C-ECHO", every=0.2)
        return process

    yield start
    for process in running:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait()
