"""Properties over generated inputs (hypothesis): whatever the bytes or values, medlens reads them or refuses them
with its own error, never with another exception.

- any byte string given as a picture, DICOM, NIfTI or numpy file is read by ``medlens.io.read_image`` or refused
  with :class:`~medlens.core.errors.MedlensError` (half of the examples are real files with bytes cut, changed or
  inserted, so that the readers get past their magic numbers);
- any text given as a CSV table to the csv importer imports or is refused, and a refusal leaves no output;
- any YOLO label text, and any COCO annotations mapping, imports or is refused;
- any mapping given as a plan to ``parse_plan`` (a real plan with values replaced, or anything at all), and any
  ``--set`` text, gives a plan or a :class:`~medlens.core.errors.ConfigError`; a plan that is given holds only
  finite numbers and validates again to itself;
- any edit of a real bundle.yaml loads or is refused.

Examples are few (``max_examples=50``) and derandomised, so the run is short and the same in CI.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import corpus
from fuzz.corpus import Sources
from medlens.core.errors import ConfigError, MedlensError

# the libraries warn about the corrupt values on purpose; what matters is how medlens ends
pytestmark = [pytest.mark.xdist_group("fuzz"), pytest.mark.filterwarnings("ignore::UserWarning")]
FEW = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
_counter = itertools.count()


def _fresh(folder: Path, name: str) -> Path:
    """A path that no earlier example used (each example writes its own output)."""
    return folder / f"{name}_{next(_counter)}"


# ---- any bytes as an image --------------------------------------------------------------------------------------


def _samples(src: Sources) -> dict[str, bytes]:
    """A real file of each format (NIfTI uncompressed: gzip's checksum would stop nearly every edit at the door)."""
    from PIL import Image as PILImage

    samples = {}
    for suffix, fmt in ((".png", "PNG"), (".tif", "TIFF"), (".bmp", "BMP")):
        buffer = io.BytesIO()
        PILImage.fromarray(src.xray(3)).save(buffer, format=fmt)
        samples[suffix] = buffer.getvalue()
    samples[".jpg"] = src.bccd[2][1]
    samples[".dcm"] = src.ct_small
    samples[".nii"] = gzip.decompress(src.hippocampus[1][1])
    buffer = io.BytesIO()
    np.savez(buffer, image=src.xray(4))
    samples[".npz"] = buffer.getvalue()
    return samples


@st.composite
def _edited(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes cut, overwritten or inserted."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["cut", "overwrite", "insert", "truncate"]))
        if action == "truncate":
            del data[where:]
        elif action == "cut":
            del data[where : where + draw(st.integers(1, 64))]
        elif action == "overwrite":
            patch = draw(st.binary(min_size=1, max_size=8))
            data[where : where + len(patch)] = patch
        else:
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp", ".dcm", ".nii", ".nii.gz", ".npz"])
def test_any_bytes_as_an_image_are_read_or_refused(
    suffix: str, fuzz_sources: Sources, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from medlens.io import read_image

    samples = _samples(fuzz_sources)
    original = samples[".nii" if suffix == ".nii.gz" else suffix]
    folder = tmp_path_factory.mktemp("bytes")

    @FEW
    @given(st.one_of(_edited(original), st.binary(max_size=512)))
    def check(data: bytes) -> None:
        path = _fresh(folder, "input").with_suffix(suffix) if suffix != ".nii.gz" else _fresh(folder, "in.nii.gz")
        path.write_bytes(gzip.compress(data) if suffix == ".nii.gz" else data)
        try:
            image = read_image(path)
        except MedlensError:
            return
        assert image.array.ndim in (3, 4) and image.affine.shape == (image.spatial_dims + 1,) * 2

    check()


# ---- any text as a CSV table ------------------------------------------------------------------------------------

_FIELDS = st.one_of(
    st.sampled_from(["images/xray_00.png", "images/xray_01.png", "images/xray_02.png", "images/xray_03.png"]),
    st.sampled_from(["normal", "pneumonia", "normal|pneumonia", "", "train", "val", "test", "12.5", "nan"]),
    st.sampled_from(["images/missing.png", "../table/images/xray_00.png", "/etc/hostname", "images"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    st.text(alphabet=',"\n\r\x00;|é ', max_size=6),
)


@st.composite
def _table_text(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(["image,label", "image,label,patient_id,split", "image,label,split", "file,label"]))
    width = header.count(",") + 1
    rows = draw(st.lists(st.lists(_FIELDS, min_size=width - 1, max_size=width + 1), max_size=12))
    text = header + "\n" + "\n".join(",".join(row) for row in rows) + "\n"
    return text.encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), errors="replace")


def test_any_table_is_imported_or_refused(fuzz_sources: Sources, tmp_path_factory: pytest.TempPathFactory) -> None:
    from medlens.data.importers import get_importer

    folder = tmp_path_factory.mktemp("table")
    corpus.write_xrays(folder / "images", fuzz_sources, range(4))
    importer = get_importer("csv")

    @FEW
    @given(st.one_of(_table_text(), st.binary(max_size=300)), st.sampled_from(["categorical", "continuous"]))
    def check(data: bytes, target_type: str) -> None:
        table = folder / "table.csv"
        table.write_bytes(data)
        out = _fresh(folder.parent, "dataset")
        try:
            importer(table, out, target_type=target_type, val_fraction=0.25, test_fraction=0.25)
        except MedlensError:
            assert not out.exists()
            return
        shutil.rmtree(out)

    check()


# ---- any YOLO labels, any COCO mapping --------------------------------------------------------------------------

_NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 5).map(str),
    st.sampled_from(["0.5", "1e999", "-0", "x", "", "0x10", "1_0"]),
)


def test_any_yolo_labels_import_or_are_refused(fuzz_sources: Sources, tmp_path_factory: pytest.TempPathFactory) -> None:
    from medlens.data.importers import get_importer

    folder = corpus.yolo_folder(tmp_path_factory.mktemp("yolo") / "yolo", fuzz_sources)
    label = folder / "labels" / "train" / f"{fuzz_sources.bccd[0][0]}.txt"
    importer = get_importer("yolo")

    @FEW
    @given(st.lists(st.lists(_NUMBER_TEXT, min_size=0, max_size=6).map(" ".join), max_size=6))
    def check(lines: list[str]) -> None:
        label.write_text("\n".join(lines) + "\n")
        out = _fresh(folder.parent, "dataset")
        try:
            importer(folder, out)
        except MedlensError:
            assert not out.exists()
            return
        for path in (out / "boxes").glob("*.json"):
            boxes = json.loads(path.read_text())["boxes"]
            assert all(math.isfinite(v) and v >= 0 for b in boxes for v in b["box"]), boxes
        shutil.rmtree(out)

    check()


_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _coco_mapping(draw: st.DrawFn, good: dict[str, Any]) -> Any:
    """The real COCO mapping with a few values replaced (an entry of a list, or a key of an entry)."""
    content = json.loads(json.dumps(good))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(["images", "annotations", "categories"]))
        entries = content[section]
        if not isinstance(entries, list) or not entries or draw(st.integers(0, 4)) == 0:
            content[section] = draw(_JSON_VALUES)  # the whole list replaced
            continue
        entry = entries[draw(st.integers(0, len(entries) - 1))]
        if isinstance(entry, dict):
            entry[draw(st.sampled_from([*entry, "extra"]))] = draw(_JSON_VALUES)
    return content


def test_any_coco_mapping_imports_or_is_refused(
    fuzz_sources: Sources, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from medlens.data.importers import get_importer

    folder = corpus.coco_folder(tmp_path_factory.mktemp("coco") / "coco", fuzz_sources)
    good = corpus.coco_content(fuzz_sources)
    importer = get_importer("coco")

    @FEW
    @given(st.one_of(_coco_mapping(good), _JSON_VALUES))
    def check(content: Any) -> None:
        (folder / "annotations.json").write_text(json.dumps(content))
        out = _fresh(folder.parent, "dataset")
        try:
            importer(folder / "annotations.json", folder / "images", out)
        except MedlensError:
            assert not out.exists()
            return
        shutil.rmtree(out)

    check()


# ---- any mapping as a plan, any --set text ----------------------------------------------------------------------


def _paths(mapping: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in mapping.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out.extend(_paths(value, (*prefix, key)))
    return out


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


@st.composite
def _plan_mapping(draw: st.DrawFn, good: dict[str, Any]) -> Any:
    """The real plan with a few values replaced (or deleted), at any depth."""
    plan = json.loads(json.dumps(good))
    paths = _paths(plan)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        node = plan
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if draw(st.integers(0, 9)) == 0:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = draw(_JSON_VALUES)
    return plan


@pytest.fixture(scope="module")
def good_plan(fuzz_plan: str) -> dict[str, Any]:
    return yaml.safe_load(fuzz_plan)


def test_any_plan_mapping_gives_a_valid_plan_or_a_config_error(good_plan: dict[str, Any]) -> None:
    from medlens.tasks.base import parse_plan

    @FEW
    @given(st.one_of(_plan_mapping(good_plan), _JSON_VALUES))
    def check(raw: Any) -> None:
        try:
            plan = parse_plan(raw, "fuzz")
        except ConfigError:
            return
        dumped = plan.model_dump()
        assert _finite(dumped), dumped
        assert parse_plan(dumped, "again") == plan

    check()


@st.composite
def _override(draw: st.DrawFn, good: dict[str, Any]) -> str:
    key = ".".join(draw(st.sampled_from(_paths(good))))
    value = draw(st.one_of(_JSON_VALUES.map(lambda v: json.dumps(v)), st.text(max_size=10)))
    return draw(st.sampled_from([f"{key}={value}", f"{key}.x={value}", f"{key}{value}", value]))


def test_any_set_value_gives_a_valid_plan_or_a_config_error(good_plan: dict[str, Any]) -> None:
    from medlens.tasks.base import parse_plan
    from medlens.training.overrides import apply_overrides

    plan = parse_plan(good_plan, "fuzz")

    @FEW
    @given(st.lists(_override(good_plan), min_size=1, max_size=3))
    def check(overrides: list[str]) -> None:
        try:
            changed = apply_overrides(plan, overrides)
        except ConfigError:
            return
        assert _finite(changed.model_dump())

    check()


# ---- any edit of a bundle.yaml ----------------------------------------------------------------------------------


def test_any_bundle_spec_loads_or_is_refused(pneumonia_run: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from medlens.tasks.base import load_bundle

    bundle = tmp_path_factory.mktemp("bundle") / "bundle"
    shutil.copytree(pneumonia_run / "bundle", bundle)
    good = yaml.safe_load((bundle / "bundle.yaml").read_text())

    @FEW
    @given(st.one_of(_plan_mapping(good), _JSON_VALUES))
    def check(spec: Any) -> None:
        (bundle / "bundle.yaml").write_text(yaml.safe_dump(spec))
        try:
            loaded = load_bundle(bundle)
        except MedlensError:
            return
        assert loaded.threshold is None or 0 <= loaded.threshold <= 1

    check()
