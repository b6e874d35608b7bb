"""Broken text files the data layer reads (an import table, manifest.csv, dataset.yaml) end in one line that names
the file and the problem, through the real command line: never ``internal error``, never a half-written folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medlens.cli.main import main


def cli_error(args: list[str], capsys: pytest.CaptureFixture[str], path: Path) -> str:
    """Run the command line in-process; it must fail with one ``medlens: error: <path>: ...`` line."""
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("medlens:")]
    assert len(lines) == 1, err
    assert "internal error" not in err and "Traceback" not in err
    assert lines[0].startswith(f"medlens: error: {path}: "), lines[0]
    return lines[0]


@pytest.fixture()
def table_dir(tmp_path: Path, medmnist_subset: Callable) -> Path:
    """``tmp_path/t`` with 8 real PneumoniaMNIST PNGs (4 per class) and a good ``table.csv`` listing them."""
    arrays = medmnist_subset("pneumoniamnist")
    folder = tmp_path / "t"
    folder.mkdir()
    rows = ["image,label"]
    for label in (0, 1):
        picks = np.flatnonzero(arrays["train_labels"][:, 0] == label)[:4]
        for i in picks:
            PILImage.fromarray(arrays["train_images"][i]).save(folder / f"img{i}.png")
            rows.append(f"img{i}.png,{'pneumonia' if label else 'normal'}")
    (folder / "table.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_good_table_imports(table_dir: Path, tmp_path: Path) -> None:
    """The table the broken variants start from is fine: the failures below come from what was broken."""
    assert main(["import", "csv", str(table_dir / "table.csv"), "--out", str(tmp_path / "out")]) == 0


def _label_first(text: bytes) -> bytes:
    """The same table with the label column first, and a last row that holds a label but no image field."""
    rows = [b",".join(reversed(line.split(b","))) for line in text.splitlines()]
    return b"\n".join(rows) + b"\nnormal\n"


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [
        (lambda t: t.replace(b",normal", ",norm\xe9l".encode("latin-1")), "UTF-8"),  # a Latin-1 export
        (lambda t: t.replace(b"img", b"i\x00mg", 1), "line 2"),  # a NUL byte
        (_label_first, "line 10"),  # a row shorter than the header
        (lambda t: t.replace(b",normal\n", b",normal,surprise\n", 1), "line 2"),  # an unquoted comma
        (lambda t: t + b",normal\n", "line 10"),  # no image path
        (lambda t: b"", "no rows"),
    ],
    ids=["latin1", "nul", "short_row", "extra_field", "empty_image", "empty_file"],
)
def test_broken_import_table(
    table_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    breakage: Callable[[bytes], bytes],
    needle: str,
) -> None:
    table = table_dir / "table.csv"
    table.write_bytes(breakage(table.read_bytes()))
    out = tmp_path / "out"
    line = cli_error(["import", "csv", str(table), "--out", str(out)], capsys, table)
    assert needle in line
    assert not out.exists()


@pytest.fixture()
def dataset_dir(pneumonia_dataset) -> Path:  # type: ignore[no-untyped-def]
    return pneumonia_dataset.root


def test_good_dataset_plans(dataset_dir: Path) -> None:
    assert main(["plan", str(dataset_dir)]) == 0


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [
        (lambda t: t.replace(b"train_00000", "train_0000\xe9".encode("latin-1")), "UTF-8"),
        (lambda t: t.replace(b"train_00001", b"train_\x0000001"), "line"),
        (lambda t: t + b"short_row,p\n", "line 82"),
        (lambda t: t + b"long_row,p,images/x.png,0,train,what\n", "line 82"),
    ],
    ids=["latin1", "nul", "short_row", "extra_field"],
)
def test_broken_manifest(
    dataset_dir: Path, capsys: pytest.CaptureFixture[str], breakage: Callable[[bytes], bytes], needle: str
) -> None:
    manifest = dataset_dir / "manifest.csv"
    manifest.write_bytes(breakage(manifest.read_bytes()))
    line = cli_error(["plan", str(dataset_dir)], capsys, manifest)
    assert needle in line
    assert not (dataset_dir / "plan.yaml").exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"- name\n- task\n", "mapping"),
        (b"just a sentence\n", "mapping"),
        (b"", "empty"),
        ("name: pn\xe9umonia\n".encode("latin-1"), "UTF-8"),
    ],
    ids=["list", "scalar", "empty", "latin1"],
)
def test_broken_dataset_yaml(
    dataset_dir: Path, capsys: pytest.CaptureFixture[str], content: bytes, needle: str
) -> None:
    spec = dataset_dir / "dataset.yaml"
    spec.write_bytes(content)
    line = cli_error(["plan", str(dataset_dir)], capsys, spec)
    assert needle in line
