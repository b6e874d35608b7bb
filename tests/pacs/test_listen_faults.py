"""Nothing lost: a real ``medlens listen`` process killed with SIGKILL mid-series, mid-prediction and mid-send, and
started again on its spool, finishes every series exactly once (counted by SOP Instance UID in a real Orthanc).

The kills are timed by the journal the node keeps (a series seen ``receiving`` with half its instances stored,
then ``predicting``, then ``sending``); "mid-send" is made certain by an Orthanc that takes 3 s over each stored
instance (its Lua ``ReceivedInstanceFilter``), so the node is killed while Orthanc is storing the SEG.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import journal_rows, send, wait_until
from medlens.cli.main import main
from orthanc_server import Orthanc

pytestmark = pytest.mark.integration
Studies = Callable[[int], list[tuple[list[Path], Path, str]]]


def state_of(spool: Path, series: str) -> str | None:
    return next((r.state for r in journal_rows(spool) if r.series_uid == series), None)


def test_kill_9_at_any_point_then_restart_finishes_every_series_exactly_once(
    hippo_run: Path, orthanc: Orthanc, hippo_studies: Studies, storescu: str, node_process: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import pydicom

    orthanc.clear()
    orthanc.slow(False)
    run, spool = hippo_run / "run", tmp_path / "spool"
    studies = hippo_studies(3)
    series = [str(pydicom.dcmread(files[0]).SeriesInstanceUID) for files, _, _ in studies]
    (a_files, _, _), (b_files, _, _), (c_files, _, _) = studies
    flags = ["--forward", orthanc.address, "--series-timeout", "1s", "--retry-wait", "0.5s", "--send-tries", "20"]

    # mid-series: half of A acknowledged, then SIGKILL; every acknowledged instance is in the spool
    node = node_process(run, spool, *flags)
    half = len(a_files) // 2
    assert send(storescu, node.port, a_files[:half]).returncode == 0
    node.kill9()
    (row,) = journal_rows(spool)
    assert row.state == "receiving" and len(list((spool / "incoming" / str(row.id)).glob("*.dcm"))) == half

    # mid-prediction: the rest of A and all of B; SIGKILL while B is being predicted
    node = node_process(run, spool, *flags)
    assert send(storescu, node.port, a_files[half:]).returncode == 0
    assert send(storescu, node.port, b_files).returncode == 0
    wait_until(lambda: state_of(spool, series[1]) == "predicting", 90, "B being predicted", every=0.01)
    node.kill9()
    assert state_of(spool, series[1]) == "predicting"

    # mid-send: C's SEG is being stored by a slow Orthanc when the node is killed
    node = node_process(run, spool, *flags)
    orthanc.slow(True)
    try:
        assert send(storescu, node.port, c_files).returncode == 0
        wait_until(lambda: state_of(spool, series[2]) == "sending", 90, "C being sent", every=0.01)
        time.sleep(1.0)  # Orthanc is inside its 3 s store of C's SEG
        node.kill9()
        assert state_of(spool, series[2]) == "sending"
        pending = sorted((spool / "results").glob("*/seg.dcm"))
        c_seg = str(pydicom.dcmread(pending[-1]).SOPInstanceUID)
    finally:
        orthanc.slow(False)

    node = node_process(run, spool, *flags)
    wait_until(lambda: [r.state for r in journal_rows(spool)] == ["sent"] * 3, 120, "every series sent")
    assert node.stop() == 143
    for (_, _, study), uid in zip(studies, series, strict=True):
        ours = [i for i in orthanc.instances_of_study(study) if i["modality"] == "SEG"]
        assert len(ours) == 1, (uid, ours)  # exactly once, by SOP Instance UID
    c_study = studies[2][2]
    assert [i["sop"] for i in orthanc.instances_of_study(c_study) if i["modality"] == "SEG"] == [c_seg]
    assert [i["modality"] for i in orthanc.instances_of_study(studies[0][2])].count("MR") == 0  # results only
    leftovers = [p for p in spool.rglob("*") if p.is_file() and not p.name.startswith("journal.sqlite3")]
    assert leftovers == []
    from medlens.pacs.journal import Journal

    journal = Journal(spool, readonly=True)
    b_row = next(r for r in journal.rows() if r.series_uid == series[1])
    history = [state for _, state, _ in journal.events(b_row.id)]
    journal.close()
    assert history == ["receiving", "received", "predicting", "received", "predicting", "predicted", "sending", "sent"]
    assert main(["listen", "--spool", str(spool), "--status"]) == 0
    assert capsys.readouterr().out.count(" sent ") == 3
