"""Mutations of pictures (PNG, JPEG, TIFF, BMP) and MedMNIST archives (from real X-rays and blood smears)."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np

from fuzz.corpus.registry import Built, mutation
from fuzz.corpus.sources import (
    Sources,
    marker_for,
    pickle_payload,
    picture_bytes,
    png_bytes,
)

# ---- pictures ---------------------------------------------------------------------------------------------------
# From a real 28x28 chest X-ray (PNG, TIFF) and a real 640x480 BCCD blood smear (JPEG).


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with_size(src: Sources, width: int, height: int) -> bytes:
    """The real PNG with its IHDR size replaced (CRC recomputed, so only the size is wrong)."""
    raw = png_bytes(src.xray(0))
    ihdr = bytearray(raw[16:29])
    struct.pack_into(">II", ihdr, 0, width, height)
    return raw[:8] + _png_chunk(b"IHDR", bytes(ihdr)) + raw[33:]


def _picture(folder: Path, name: str, suffix: str, payload: bytes) -> Built:
    path = folder / f"bad_{name}{suffix}"
    path.write_bytes(payload)
    return Built(path)


_INDEXED = "classification importers index files and describe a sample; training checks the pixel values it reads"
_ODD_BUT_VALID = {
    "info": "an unusual but valid picture mode",
    "convert": "an unusual but valid picture mode",
    "predict": "an unusual but valid picture mode is converted to the model's channels",
    "import-folder": "an unusual but valid picture mode",
    "import-csv": "an unusual but valid picture mode",
}


@mutation("picture")
def picture__png_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = png_bytes(src.xray(0))
    return _picture(folder, "png_truncated", ".png", raw[: len(raw) // 2])


@mutation("picture")
def picture__png_zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_zero_length", ".png", b"")


@mutation("picture")
def picture__png_header_only(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_header_only", ".png", png_bytes(src.xray(0))[:33])


@mutation("picture")
def picture__png_corrupt_pixels(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = bytearray(png_bytes(src.xray(0)))
    start = raw.index(b"IDAT") + 4
    for i in range(start + 2, start + 40):
        raw[i] ^= 0xFF
    return _picture(folder, "png_corrupt_pixels", ".png", bytes(raw))


@mutation("picture")
def picture__png_decompression_bomb_header(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_decompression_bomb_header", ".png", _png_with_size(src, 100_000, 100_000))


@mutation("picture")
def picture__png_zero_width(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_zero_width", ".png", _png_with_size(src, 0, 28))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__png_16_bit(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_16_bit", ".png", picture_bytes(src.xray(0).astype(np.uint16) * 257, "PNG"))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__png_1_bit(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "png_1_bit", ".png", picture_bytes(src.xray(0) > 128, "PNG"))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__png_grey_alpha(folder: Path, src: Sources, rng: random.Random) -> Built:
    grey = src.xray(0)
    return _picture(
        folder, "png_grey_alpha", ".png", picture_bytes(np.stack([grey, np.full_like(grey, 255)], -1), "PNG")
    )


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__png_palette_transparency(folder: Path, src: Sources, rng: random.Random) -> Built:
    from PIL import Image as PILImage

    picture = PILImage.fromarray(np.stack([src.xray(0)] * 3, -1)).quantize(16)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", transparency=0)
    return _picture(folder, "png_palette_transparency", ".png", buffer.getvalue())


@mutation("picture")
def picture__text_named_png(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "text_named_png", ".png", b"<html>not a picture</html>\n")


@mutation(
    "picture",
    errors={"predict": "an input that cannot exist fails the whole batch, as a missing input does"},
    commands=("info", "convert", "predict", "import-csv"),
)
def picture__name_too_long(folder: Path, src: Sources, rng: random.Random) -> Built:
    return Built(folder / ("x" * 300 + ".png"), "xxxxxxxxxx")  # no file system holds the name: it cannot exist


@mutation("picture")
def picture__jpeg_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = src.bccd[0][1]
    return _picture(folder, "jpeg_truncated", ".jpg", raw[: len(raw) // 3])


@mutation("picture")
def picture__jpeg_zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _picture(folder, "jpeg_zero_length", ".jpg", b"")


@mutation("picture")
def picture__jpeg_garbage_after_header(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = src.bccd[0][1]
    return _picture(folder, "jpeg_garbage_after_header", ".jpg", raw[:600] + rng.randbytes(3000))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__jpeg_cmyk(folder: Path, src: Sources, rng: random.Random) -> Built:
    from PIL import Image as PILImage

    picture = PILImage.open(io.BytesIO(src.bccd[0][1])).convert("CMYK")
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG")
    return _picture(folder, "jpeg_cmyk", ".jpg", buffer.getvalue())


@mutation("picture")
def picture__tiff_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = picture_bytes(src.xray(1), "TIFF")
    return _picture(folder, "tiff_truncated", ".tif", raw[: len(raw) // 2])


@mutation(
    "picture",
    valid={
        "info": "info shows what the file holds (its value range reads nan)",
        "convert": "convert copies what the file holds",
        "import-folder": _INDEXED,
        "import-csv": _INDEXED,
    },
)
def picture__tiff_float_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    values = src.xray(1).astype(np.float32)
    values[3:6, 3:6] = np.nan
    return _picture(folder, "tiff_float_nan", ".tif", picture_bytes(values, "TIFF"))


@mutation("picture", valid=_ODD_BUT_VALID)
def picture__tiff_pages_of_other_sizes(folder: Path, src: Sources, rng: random.Random) -> Built:
    from PIL import Image as PILImage

    first, second = PILImage.fromarray(src.xray(1)), PILImage.fromarray(src.xray(2)[:14, :20])
    buffer = io.BytesIO()
    first.save(buffer, format="TIFF", save_all=True, append_images=[second])
    return _picture(folder, "tiff_pages_of_other_sizes", ".tif", buffer.getvalue())


@mutation("picture")
def picture__bmp_truncated(folder: Path, src: Sources, rng: random.Random) -> Built:
    raw = picture_bytes(src.xray(2), "BMP")
    return _picture(folder, "bmp_truncated", ".bmp", raw[: len(raw) // 2])


# ---- MedMNIST archives ------------------------------------------------------------------------------------------
# From 24/8/8 real PneumoniaMNIST images; named pneumoniamnist.npz so the catalog knows the dataset.

_SEVERAL_ARRAYS = "a MedMNIST archive holds several arrays: info asks which one (key=)"


def _npz(folder: Path, arrays: dict[str, np.ndarray], name: str = "pneumoniamnist.npz") -> Built:
    path = folder / name
    np.savez_compressed(path, **arrays)
    return Built(path)


def _arrays(src: Sources) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in src.pneumonia.items()}


@mutation("npz")
def npz__missing_key(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    del arrays["test_labels"]
    return _npz(folder, arrays)


@mutation("npz")
def npz__keys_renamed(folder: Path, src: Sources, rng: random.Random) -> Built:
    return _npz(folder, {k.replace("images", "x").replace("labels", "y"): v for k, v in _arrays(src).items()})


@mutation("npz")
def npz__labels_shorter_than_images(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["train_labels"] = arrays["train_labels"][:-5]
    return _npz(folder, arrays)


@mutation("npz")
def npz__labels_three_dimensional(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["val_labels"] = arrays["val_labels"][:, :, None]
    return _npz(folder, arrays)


@mutation("npz")
def npz__negative_labels(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["train_labels"] = arrays["train_labels"].astype(np.int64) - 1
    return _npz(folder, arrays)


@mutation("npz")
def npz__nan_labels(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    labels = arrays["train_labels"].astype(np.float64)
    labels[3] = np.nan
    arrays["train_labels"] = labels
    return _npz(folder, arrays)


@mutation("npz")
def npz__float_images_with_nan(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    images = arrays["test_images"].astype(np.float64)
    images[0, 5, 5] = np.nan
    arrays["test_images"] = images
    return _npz(folder, arrays)


@mutation("npz")
def npz__int64_images(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["val_images"] = arrays["val_images"].astype(np.int64)
    return _npz(folder, arrays)


@mutation("npz")
def npz__images_one_dimensional(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = arrays[f"{split}_images"][:, 0, 0]
    return _npz(folder, arrays)


@mutation("npz", valid={"import-medmnist": "an archive without test images imports; evaluate says the split is empty"})
def npz__empty_test_split(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["test_images"], arrays["test_labels"] = arrays["test_images"][:0], arrays["test_labels"][:0]
    return _npz(folder, arrays)


@mutation("npz", valid={"import-medmnist": "images of several sizes make a valid dataset (the plan resizes them)"})
def npz__images_of_other_size_per_split(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    arrays["test_images"] = np.ascontiguousarray(arrays["test_images"][:, :20, :24])
    return _npz(folder, arrays)


@mutation("npz")
def npz__pickled_object_array(folder: Path, src: Sources, rng: random.Random) -> Built:
    arrays = _arrays(src)
    payload = np.empty(len(arrays["train_labels"]), dtype=object)
    payload[:] = [pickle_payload(marker_for(folder))] * len(payload)
    arrays["train_labels"] = payload
    path = folder / "pneumoniamnist.npz"
    np.savez(path, **arrays)  # object arrays are stored as pickles
    return Built(path)


@mutation("npz")
def npz__truncated_zip(folder: Path, src: Sources, rng: random.Random) -> Built:
    built = _npz(folder, _arrays(src))
    raw = built.path.read_bytes()
    built.path.write_bytes(raw[: len(raw) // 2])
    return built


@mutation("npz")
def npz__zero_length(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "pneumoniamnist.npz"
    path.write_bytes(b"")
    return Built(path)


@mutation("npz")
def npz__text_named_npz(folder: Path, src: Sources, rng: random.Random) -> Built:
    path = folder / "pneumoniamnist.npz"
    path.write_text("train_images,train_labels\n1,2\n")
    return Built(path)
