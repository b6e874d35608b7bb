"""``medlens listen``: dcmtk's storescu sends real series to the node, which forwards the results to a real Orthanc.

What it proves: a series sent by storescu comes back into its study in Orthanc as a SEG, and the spool then holds
nothing but the journal; C-ECHO answers; a malformed dataset, a refused modality and an unknown calling AE are
refused with a DIMSE failure (or a rejected association) while the node goes on; without --forward the results
are kept in SPOOL/out; a pause longer than --series-timeout inside an open association does not split a series; a
destination that stays down sends the series to failed/ with its reason after --send-tries; Orthanc stopped while
the node sends, then started, gets the results exactly once; --status.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from orthanc_server import Orthanc, free_port
from pacs_node import NODE_AE, journal_rows, send, wait_until

from medlens.cli.main import main

pytestmark = pytest.mark.integration
Studies = Callable[[int], list[tuple[list[Path], Path, str]]]


def states(spool: Path) -> list[str]:
    return [row.state for row in journal_rows(spool)]


def only_journal_left(spool: Path) -> bool:
    leftovers = [p for p in spool.rglob("*") if p.is_file() and not p.name.startswith("journal.sqlite3")]
    return not leftovers


def logged(log: Path) -> str:
    """A node's log as one line of words (Rich wraps long lines when the log is a file)."""
    return " ".join(log.read_text().split())


def segs(orthanc: Orthanc, study: str) -> list[str]:
    return [i["sop"] for i in orthanc.instances_of_study(study) if i["modality"] == "SEG"]


def test_a_series_from_storescu_comes_back_to_orthanc_as_seg(
    hippo_run: Path, orthanc: Orthanc, hippo_studies: Studies, storescu: str, echoscu: str, node: Any,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from medlens.pacs.sender import Destination

    orthanc.clear()
    (files, _, study), (files2, _, study2) = hippo_studies(2)
    spool = tmp_path / "spool"
    running = node(hippo_run / "run", spool, forward=Destination.parse(orthanc.address))
    port = running.config.port
    assert subprocess.run([echoscu, "-aec", NODE_AE, "127.0.0.1", str(port)], capture_output=True).returncode == 0
    assert send(storescu, port, files).returncode == 0
    assert send(storescu, port, files2).returncode == 0
    wait_until(lambda: states(spool) == ["sent", "sent"], 60, "both series sent")
    assert len(segs(orthanc, study)) == 1 and len(segs(orthanc, study2)) == 1
    wait_until(lambda: only_journal_left(spool), 10, "the sent series removed from the spool")
    rows = journal_rows(spool)
    assert [r.instances for r in rows] == [len(files), len(files2)] and all(r.results == 2 for r in rows)  # SEG, SR
    for one in (study, study2):  # the SR went back too, into the same study
        assert len([i for i in orthanc.instances_of_study(one) if i["modality"] == "SR"]) == 1
    assert main(["listen", "--spool", str(spool), "--status"]) == 0
    shown = capsys.readouterr().out
    queue = [line for line in shown.splitlines() if re.match(r"\s*\d+\s+sent\s", line)]  # one line per series
    assert len(queue) == 2 and str(pydicom.dcmread(files[0]).SeriesInstanceUID) in queue[0]


def test_refusals_do_not_stop_the_node(hippo_run: Path, hippo_studies: Studies, node: Any, tmp_path: Path) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import MRImageStorage

    spool = tmp_path / "spool"
    running = node(hippo_run / "run", spool, accept=["MR"], series_timeout=2)  # no --forward: kept in SPOOL/out
    port = running.config.port
    files, _, _ = hippo_studies(1)[0]
    no_series = pydicom.dcmread(files[0])
    del no_series.SeriesInstanceUID  # a Type 1 attribute missing: the dataset cannot be filed
    bad_uid = pydicom.dcmread(files[0])
    bad_uid.SeriesInstanceUID = "../../etc"  # not a UID (and a path, were it used as one)
    ct = tmp_path / "ct.dcm"
    ds = pydicom.dcmread(files[1])
    ds.Modality = "CT"
    ds.save_as(ct)

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    assert assoc.is_established
    for malformed in (no_series, bad_uid):
        status = assoc.send_c_store(malformed)
        assert 0xC000 <= status.Status <= 0xCFFF and status.ErrorComment  # cannot understand, and why
    status = assoc.send_c_store(ct)
    assert status.Status == 0xA900 and "CT" in status.ErrorComment  # modality not accepted
    for path in files:
        assert assoc.send_c_store(path).Status == 0x0000  # the node goes on
    assoc.release()
    wait_until(lambda: states(spool) == ["stored"], 60, f"the series predicted and kept: {journal_rows(spool)}")
    (row,) = journal_rows(spool)
    assert row.instances == len(files)  # the refused datasets were not written
    assert sorted(p.name for p in (spool / "out" / str(row.id)).iterdir()) == ["seg.dcm", "sr.dcm"]
    assert not list((spool / "incoming").iterdir())


def test_a_pause_inside_an_open_association_does_not_split_the_series(
    hippo_run: Path, hippo_studies: Studies, node: Any, tmp_path: Path
) -> None:
    """A sender that pauses mid-series for longer than --series-timeout (a slow disk, a busy machine) while its
    association stays open gets one series and one result, made from every instance."""
    from pynetdicom import AE
    from pynetdicom.sop_class import MRImageStorage

    spool = tmp_path / "spool"
    running = node(hippo_run / "run", spool, series_timeout=0.3)  # no --forward: kept in SPOOL/out
    files, _, _ = hippo_studies(1)[0]
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", running.config.port, ae_title=NODE_AE)
    assert assoc.is_established
    half = len(files) // 2
    for path in files[:half]:
        assert assoc.send_c_store(path).Status == 0x0000
    time.sleep(1.5)  # five series timeouts of silence, the association still open
    assert states(spool) == ["receiving"]
    for path in files[half:]:
        assert assoc.send_c_store(path).Status == 0x0000
    assoc.release()
    wait_until(lambda: states(spool) == ["stored"], 60, f"the series predicted and kept: {journal_rows(spool)}")
    (row,) = journal_rows(spool)
    assert row.instances == len(files) and row.results == 2  # one SEG and one SR: the series was not split


def test_a_destination_that_stays_down_sends_the_series_to_failed(
    hippo_run: Path, hippo_studies: Studies, storescu: str, node: Any, tmp_path: Path
) -> None:
    from medlens.pacs.sender import Destination

    spool = tmp_path / "spool"
    nowhere = Destination("NOBODY", "127.0.0.1", free_port())
    running = node(hippo_run / "run", spool, forward=nowhere, send_tries=3, retry_wait=0.2)
    files, _, _ = hippo_studies(1)[0]
    started = time.monotonic()
    assert send(storescu, running.config.port, files).returncode == 0
    wait_until(lambda: states(spool) == ["failed"], 60, "the series to fail")
    assert time.monotonic() - started >= 0.2 + 0.4  # two waits between three tries
    (row,) = journal_rows(spool)
    reason = (spool / "failed" / str(row.id) / "reason.txt").read_text()
    assert "not sent after 3 tries" in reason and str(nowhere) in reason and "\n" not in reason.strip()
    assert row.tries == 3 and len(list((spool / "failed" / str(row.id) / "instances").glob("*.dcm"))) == len(files)
    assert (spool / "failed" / str(row.id) / "results" / "seg.dcm").is_file()


def test_orthanc_down_then_up_gets_the_results_exactly_once(
    hippo_run: Path, orthanc: Orthanc, hippo_studies: Studies, storescu: str, node: Any, tmp_path: Path
) -> None:
    from medlens.pacs.sender import Destination

    orthanc.clear()
    spool = tmp_path / "spool"
    running = node(hippo_run / "run", spool, forward=Destination.parse(orthanc.address), retry_wait=0.3)
    files, _, study = hippo_studies(1)[0]
    orthanc.stop()
    try:
        assert send(storescu, running.config.port, files).returncode == 0
        wait_until(lambda: any(r.tries >= 2 for r in journal_rows(spool)), 60, "two failed tries")
        (row,) = journal_rows(spool)
        assert row.state == "sending" and "no connection (connection refused" in row.reason
    finally:
        orthanc.start()
    wait_until(lambda: states(spool) == ["sent"], 60, "the series sent once Orthanc is back")
    assert len(segs(orthanc, study)) == 1
    wait_until(lambda: only_journal_left(spool), 10, "the sent series removed from the spool")


def test_listen_flags_in_a_real_process(
    hippo_run: Path, orthanc: Orthanc, hippo_studies: Studies, storescu: str, echoscu: str, node_process: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """--host, --ae, --accept, --calling-aes, --max-associations of ``medlens listen``, each by its effect."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    orthanc.clear()
    allowed = tmp_path / "calling_aes.txt"
    allowed.write_text("# who may send\nECHOSCU\nSTORESCU\n\nTESTSCU  # the test's own association\n")
    spool = tmp_path / "spool"
    flags = ["--forward", orthanc.address, "--series-timeout", "1s", "--accept", "mr,ct", "--calling-aes", str(allowed),
             "--max-associations", "1"]  # fmt: skip
    node = node_process(hippo_run / "run", spool, *flags, host="127.0.0.2", ae="NODE2")

    def echo(host: str, calling: str = "ECHOSCU") -> int:
        called = ["-aet", calling, "-aec", "NODE2", host, str(node.port)]
        return subprocess.run([echoscu, *called], capture_output=True).returncode

    assert echo("127.0.0.2") == 0 and echo("127.0.0.1") != 0  # --host: listening on 127.0.0.2 only
    assert echo("127.0.0.2", calling="INTRUDER") != 0  # --calling-aes
    wait_until(lambda: "rejected (calling AE title not recognised)" in logged(node.log), 10, "the rejection logged")
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    held = ae.associate("127.0.0.2", node.port, ae_title="NODE2")
    assert held.is_established
    try:
        assert echo("127.0.0.2") != 0  # --max-associations 1: a second one is refused while the first is open
        wait_until(lambda: "local limit exceeded" in logged(node.log), 10, "the limit logged")
    finally:
        held.release()
    files, _, study = hippo_studies(1)[0]
    xa = tmp_path / "xa.dcm"
    ds = pydicom.dcmread(files[0])
    ds.Modality = "XA"
    ds.save_as(xa)
    refused = subprocess.run([storescu, "-v", "-aec", "NODE2", "127.0.0.2", str(node.port), str(xa)],
                             capture_output=True, text=True)  # fmt: skip
    # --accept mr,ct: an XA image is refused with 0xA900 (dcmtk names that status, it does not print the number)
    assert refused.returncode != 0 and "DataSetDoesNotMatchSOPClass" in refused.stdout + refused.stderr
    wait_until(lambda: "refused (0xA900): modality XA is not accepted" in logged(node.log), 10, "the refusal logged")
    done = subprocess.run([storescu, "-aec", "NODE2", "127.0.0.2", str(node.port), *map(str, files)])
    assert done.returncode == 0
    wait_until(lambda: states(spool) == ["sent"], 120, "the MR series predicted and sent")
    (seg,) = [i for i in orthanc.instances_of_study(study) if i["modality"] == "SEG"]
    assert orthanc.text(f"/instances/{seg['id']}/metadata/RemoteAET") == "NODE2"  # --ae: the node's own title
