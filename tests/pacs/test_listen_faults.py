"""Nothing lost: a real ``medlens listen`` process killed with SIGKILL mid-series, mid-prediction and mid-send, and
started again on its spool, finishes every series exactly once (counted by SOP Instance UID in a real Orthanc).

The kills are timed by the journal the node keeps: the first while one series is ``sending`` and another is
``receiving`` with half its instances answered ("mid-send" is made certain by an Orthanc that takes 6 s over each
stored instance, its Lua ``ReceivedInstanceFilter``, so the node dies while Orthanc is storing the SEG); the second
while a series is ``predicting``. Three node starts, two kills, three series.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from orthanc_server import Orthanc
from pacs_node import journal_rows, send, wait_until

from medlens.cli.main import main

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
    flags = ["--forward", orthanc.address, "--series-timeout", "2s", "--retry-wait", "0.5s", "--send-tries", "20"]

    # kill 1, mid-send and mid-series at once: C's SEG is being stored by a slow Orthanc, and half of A is in
    node = node_process(run, spool, *flags)
    orthanc.slow(True)
    try:
        assert send(storescu, node.port, c_files).returncode == 0
        wait_until(lambda: state_of(spool, series[2]) == "sending", 90, "C being sent", every=0.01)
        half = len(a_files) // 2
        assert send(storescu, node.port, a_files[:half]).returncode == 0
        assert state_of(spool, series[2]) == "sending"  # Orthanc is still inside its slow store of C's SEG
        node.kill9()
    finally:
        orthanc.slow(False)
    rows = {r.series_uid: r for r in journal_rows(spool)}
    assert rows[series[2]].state == "sending" and rows[series[0]].state == "receiving"
    assert len(list((spool / "incoming" / str(rows[series[0]].id)).glob("*.dcm"))) == half  # every one answered
    c_seg = str(pydicom.dcmread(spool / "results" / str(rows[series[2]].id) / "seg.dcm").SOPInstanceUID)

    # kill 2, mid-prediction: the rest of A and all of B; SIGKILL while B is being predicted
    node = node_process(run, spool, *flags)
    assert send(storescu, node.port, a_files[half:]).returncode == 0
    assert send(storescu, node.port, b_files).returncode == 0
    wait_until(lambda: state_of(spool, series[1]) == "predicting", 90, "B being predicted", every=0.01)
    node.kill9()
    assert state_of(spool, series[1]) == "predicting"

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
    assert leftovers == []  # the node was stopped (SIGTERM) after the last "sent": its clean-up is done
    from medlens.pacs.journal import Journal

    journal = Journal(spool, readonly=True)
    b_row = next(r for r in journal.rows() if r.series_uid == series[1])
    history = [state for _, state, _ in journal.events(b_row.id)]
    journal.close()
    assert history == ["receiving", "received", "predicting", "received", "predicting", "predicted", "sending", "sent"]
    assert main(["listen", "--spool", str(spool), "--status"]) == 0
    queue = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\s*\d+\s+sent\s", line)]
    assert len(queue) == 3
