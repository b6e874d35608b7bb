"""Fixtures shared by the whole suite: the real data, small inputs built from it, and the checking tools.

Real data is found through ``MEDLENS_DATA`` only (read by ``medlens.core.settings``). Nothing from the real
data is copied into the repository: small inputs are built in temporary folders from the real files.

Fixtures (data):
    data_root: the ``MEDLENS_DATA`` folder (session).
    real_data: ``real_data("BCCD/Annotations")`` -> that path under the data root, when it exists.
    medmnist_subset: ``medmnist_subset(name, n_train=40, n_val=20, n_test=20)`` -> dict of the first images
        and labels of ``MEDLENS_DATA/medmnist/NAME.npz`` per split (cached per session; copies returned).
    write_npz: ``write_npz(path, arrays)`` writes a dict of arrays as an ``.npz`` and returns the path.
    small_pneumonia_npz / small_adrenal_npz: 40/20/20 real PneumoniaMNIST images / AdrenalMNIST3D volumes.
    pneumonia_dataset: ``small_pneumonia_npz`` imported with the MedMNIST importer into ``tmp_path/dataset``.
    hippocampus_root, hippocampus_case, small_msd, mr_crop: real Task04_Hippocampus and DICOM MR inputs.
    bccd_root, voc_tiny, tiny_dataset, tiny_plan_overrides: a few real BCCD images (detection).

Fixtures (tools): ``dcm2niix``, ``dciodvfy``, ``dcmdump``: the path of each checking tool; ``medlens_script``:
the installed ``medlens`` console script (for tests where signals and exit codes matter).

Missing data or a missing tool skips the test with the reason on a developer's machine, and FAILS it in CI
(``CI=true``): see :func:`missing`. ``pytest -ra`` lists every skip with its reason.

Trained runs shared by every test that needs one are in ``trained_runs.py`` (loaded as a plugin below).

Every test also gets its own ``MEDLENS_HOME`` (autouse), so caches and downloads never reach the real home.

Torch runs one thread per test process unless ``OMP_NUM_THREADS`` says otherwise: the suite runs as
``pytest -n 2`` on a 2-core machine, where torch's default (a thread per core, per process) oversubscribes
the cores and its spinning OpenMP threads made the model tests about 4x slower.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before anything imports torch
import json
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from medlens.core.settings import get_settings
from suite_support import build_msd, build_voc, missing, tool

pytest_plugins = ["trained_runs"]

SPLIT_NAMES = ("train", "val", "test")


@pytest.fixture(autouse=True)
def _isolated_medlens_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point MEDLENS_HOME at a temporary folder (a directory-level conftest may override this)."""
    monkeypatch.setenv("MEDLENS_HOME", str(tmp_path_factory.getbasetemp() / "medlens_home"))


# ---- the real data ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root from MEDLENS_DATA."""
    root = get_settings().data_root
    if root is None:
        missing("MEDLENS_DATA is not set (point it at the shared real data, e.g. ../shared/data)")
    assert root is not None
    if not root.is_dir():
        missing(f"MEDLENS_DATA={root} is not a folder")
    return root


@pytest.fixture(scope="session")
def real_data(data_root: Path) -> Callable[[str], Path]:
    """Factory: a file or folder of the real data, by its path under the data root."""

    def find(relative: str) -> Path:
        path = data_root / relative
        if not path.exists():
            missing(f"{path} is missing from MEDLENS_DATA")
        return path

    return find


@cache
def _load_subset(path: Path, n_train: int, n_val: int, n_test: int) -> dict[str, np.ndarray]:
    counts = {"train": n_train, "val": n_val, "test": n_test}
    with np.load(path) as data:
        return {
            f"{s}_{k}": np.ascontiguousarray(data[f"{s}_{k}"][: counts[s]])
            for s in SPLIT_NAMES
            for k in ("images", "labels")
        }


@pytest.fixture(scope="session")
def medmnist_subset(real_data: Callable[[str], Path]) -> Callable[..., dict[str, np.ndarray]]:
    """Factory: the first images and labels of a real MedMNIST archive, per split (copies)."""

    def subset(name: str, n_train: int = 40, n_val: int = 20, n_test: int = 20) -> dict[str, np.ndarray]:
        path = real_data(f"medmnist/{name}.npz")
        return {k: v.copy() for k, v in _load_subset(path, n_train, n_val, n_test).items()}

    return subset


def write_npz_file(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture(scope="session")
def write_npz() -> Callable[[Path, dict[str, np.ndarray]], Path]:
    """``write_npz(path, arrays)``: save ``arrays`` as a compressed ``.npz`` at ``path`` (parents created)."""
    return write_npz_file


@pytest.fixture()
def small_pneumonia_npz(tmp_path: Path, medmnist_subset: Callable[..., dict[str, np.ndarray]]) -> Path:
    """A real 40/20/20-image PneumoniaMNIST archive named ``pneumoniamnist.npz`` (so the catalog knows it)."""
    return write_npz_file(tmp_path / "src" / "pneumoniamnist.npz", medmnist_subset("pneumoniamnist"))


@pytest.fixture()
def small_adrenal_npz(tmp_path: Path, medmnist_subset: Callable[..., dict[str, np.ndarray]]) -> Path:
    """A real 40/20/20-volume AdrenalMNIST3D (28^3) archive named ``adrenalmnist3d.npz``."""
    return write_npz_file(tmp_path / "src" / "adrenalmnist3d.npz", medmnist_subset("adrenalmnist3d"))


@pytest.fixture()
def pneumonia_dataset(tmp_path: Path, small_pneumonia_npz: Path):
    """``small_pneumonia_npz`` imported into ``tmp_path/dataset`` (a ``medlens.data.dataset.Dataset``)."""
    from medlens.data.importers import get_importer

    return get_importer("medmnist")(small_pneumonia_npz, tmp_path / "dataset")


# ---- hippocampus (segmentation) and the DICOM MR series ------------------------------------------------------------
@pytest.fixture(scope="session")
def hippocampus_root(real_data: Callable[[str], Path]) -> Path:
    """``MEDLENS_DATA/Task04_Hippocampus`` (the Decathlon layout)."""
    return real_data("Task04_Hippocampus/dataset.json").parent


@pytest.fixture(scope="session")
def hippocampus_case(hippocampus_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(image, label) arrays ``(X, Y, Z)`` of the first real case."""
    import nibabel as nib

    entry = json.loads((hippocampus_root / "dataset.json").read_text())["training"][0]
    image = np.asarray(nib.load(str(hippocampus_root / entry["image"])).dataobj)
    label = np.asarray(nib.load(str(hippocampus_root / entry["label"])).dataobj).astype(np.uint8)
    return image, label


@pytest.fixture()
def small_msd(tmp_path: Path, hippocampus_root: Path) -> Callable[..., Path]:
    """Factory: ``small_msd(n=8, name="small_task")`` -> a task folder with the first ``n`` real cases."""

    def make(n: int = 8, name: str = "small_task") -> Path:
        return build_msd(hippocampus_root, tmp_path / name, n)

    return make


@pytest.fixture(scope="session")
def mr_series_dir(real_data: Callable[[str], Path]) -> Path:
    """The real 192-slice sagittal T1 MPRAGE series."""
    return real_data("dicom/sag_anon_mr_t1_series")


def build_mr_crop(source: Path, out: Path) -> Path:
    """24 slices of the sagittal MR series, cropped to 40 x 48 pixels, as a consistent new series in ``out``."""
    import pydicom
    from pydicom.uid import generate_uid

    out.mkdir(parents=True)
    r0, c0, rows, cols = 100, 96, 40, 48
    series, frame = generate_uid(), generate_uid()
    datasets = [pydicom.dcmread(p) for p in sorted(source.glob("*.dcm"))]
    datasets.sort(key=lambda d: int(d.InstanceNumber))
    for ds in datasets[80:104]:
        row_dir, col_dir = np.array(ds.ImageOrientationPatient[:3]), np.array(ds.ImageOrientationPatient[3:])
        spacing_between_rows, spacing_between_cols = (float(v) for v in ds.PixelSpacing)
        corner = np.array(ds.ImagePositionPatient, dtype=float)
        corner += row_dir * c0 * spacing_between_cols + col_dir * r0 * spacing_between_rows
        ds.ImagePositionPatient = [round(float(v), 6) for v in corner]
        pixels = ds.pixel_array[r0 : r0 + rows, c0 : c0 + cols].copy()
        ds.Rows, ds.Columns, ds.PixelData = rows, cols, pixels.tobytes()
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(out / f"{int(ds.InstanceNumber):04d}.dcm", enforce_file_format=True)
    return out


@pytest.fixture()
def mr_crop(mr_series_dir: Path, tmp_path: Path) -> Path:
    """A small real DICOM series: 24 slices of the sagittal MR series, cropped to 40 x 48 pixels.

    Rows, columns, pixel data and each slice's position are rewritten (the crop's corner moves along the
    row and column directions), and the series gets new UIDs: a consistent series, small enough for a tiny
    model's sliding window to take a moment."""
    return build_mr_crop(mr_series_dir, tmp_path / "mr_crop")


# ---- BCCD (detection) ---------------------------------------------------------------------------------------------
DETECTION_TINY = [
    "data.input_size=[96,128]",
    "detection.train_short_sides=[96]",
    "train.max_epochs=1",
    "train.budget_minutes=null",
    "train.batch_size=3",
    "train.explain_images=0",  # explanation scoring has its own tests
]


@pytest.fixture(scope="session")
def bccd_root(real_data: Callable[[str], Path]) -> Path:
    """``MEDLENS_DATA/BCCD`` (Pascal VOC layout)."""
    return real_data("BCCD/Annotations").parent


@pytest.fixture
def voc_tiny(bccd_root: Path, tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``voc_tiny(n_train=6, n_val=3)`` -> a VOC folder of the first BCCD images of each split."""

    def build(n_train: int = 6, n_val: int = 3) -> Path:
        return build_voc(bccd_root, tmp_path / "voc", n_train, n_val)

    return build


@pytest.fixture(scope="session")
def tiny_dataset(bccd_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """A VOC-imported dataset of 6 train and 3 val BCCD images (session-wide, do not edit)."""
    from medlens.data.importers import get_importer

    root = tmp_path_factory.mktemp("bccd_tiny")
    voc = build_voc(bccd_root, root / "voc", 6, 3)
    return get_importer("voc")(voc, root / "dataset")


@pytest.fixture(scope="session")
def tiny_plan_overrides() -> list[str]:
    """``--set`` values for a fast detection plan (96x128 input, 1 epoch, no budget)."""
    return list(DETECTION_TINY)


# ---- checking tools -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dcm2niix() -> str:
    return tool("dcm2niix", "dcm2niix")


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    return tool("dciodvfy", "dicom3tools")


@pytest.fixture(scope="session")
def dcmdump() -> str:
    return tool("dcmdump", "dcmtk")


@pytest.fixture(scope="session")
def medlens_script() -> Path:
    """The ``medlens`` console script installed beside this Python."""
    script = Path(sys.executable).with_name("medlens")
    if not script.is_file():
        missing(f"the medlens console script is not installed beside {sys.executable} (pip install -e .)")
    return script


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Send the tests that use the same trained run to one worker, so each run is trained once per session.

    Each such test gets an ``xdist_group`` marker named after its run (``trained_runs.RUN_GROUPS``). pytest-xdist
    3.8 groups tests by a ``@group`` suffix it writes to ``item._nodeid``, which pytest 9.2 no longer reads (a
    node's id lives in ``item._id`` now): without the lines below ``--dist loadgroup`` silently spreads a group
    over every worker, and each worker trains the run again. So the suffix is written here, the way pytest 9
    keeps node ids.
    """
    from trained_runs import RUN_GROUPS

    for item in items:
        used = getattr(item, "fixturenames", ())
        for fixture, group in RUN_GROUPS.items():
            if fixture in used:
                item.add_marker(pytest.mark.xdist_group(group))
    if not getattr(config.option, "loadgroup", False):  # set in xdist workers under --dist loadgroup
        return
    from _pytest.nodeid import NodeId

    for item in items:
        marks = item.iter_markers("xdist_group")
        names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks}
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Always say how many tests were skipped (missing data or tools), so a skip is never silent."""
    skipped = len(terminalreporter.stats.get("skipped", []))
    note = " (see the SKIPPED lines above; with CI=true these would fail)" if skipped else ""
    terminalreporter.write_line(f"medlens: {skipped} test(s) skipped{note}")
