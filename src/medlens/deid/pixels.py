"""Burned-in text: which images are likely to carry it, and blanking pixel regions by device/size rules.

Header de-identification cannot see text drawn into the pixels. Files are flagged when the header says so
(BurnedInAnnotation YES) or when their kind makes it likely: ultrasound, secondary capture, screen saves.
A profile's ``pixel_blanking`` rules (device and size, as CTP's DicomPixelAnonymizer scripts do) paint
known text regions black.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from medlens.deid.profile import BlankingRule

_LIKELY_MODALITIES = {"US": "ultrasound", "XC": "external camera photo", "ES": "endoscopy", "OT": "other"}
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


def burned_in_reason(ds: Dataset) -> str | None:
    """Why this image may carry burned-in text, or None.

    Example:
        >>> from pydicom.dataset import Dataset
        >>> ds = Dataset(); ds.Modality = "US"
        >>> burned_in_reason(ds)
        'Modality US (ultrasound)'
    """
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return "BurnedInAnnotation is YES"
    modality = str(ds.get("Modality", "")).upper()
    if modality in _LIKELY_MODALITIES:
        return f"Modality {modality} ({_LIKELY_MODALITIES[modality]})"
    if str(ds.get("SOPClassUID", "")).startswith(_SECONDARY_CAPTURE_PREFIX):
        return "secondary capture"
    image_type = ds.get("ImageType", [])
    values = [str(v).upper() for v in (image_type if isinstance(image_type, list | tuple) else [image_type])]
    if "SCREEN SAVE" in values or "SCREENSHOT" in values:
        return "ImageType says screen save"
    if ds.get("ConversionType"):
        return f"ConversionType {ds.ConversionType} (converted or captured image)"
    return None


def _matches(ds: Dataset, rule: BlankingRule) -> bool:
    for keyword, expected in rule.match.items():
        value = ds.get(keyword)
        if value is None or str(value).strip().upper() != str(expected).strip().upper():
            return False
    return True


def blank_regions(ds: Dataset, rules: list[BlankingRule]) -> str | None:
    """Blank the regions of the first matching rule in place; return its name (or None when none matched).

    Compressed pixel data is decoded and written back uncompressed (Explicit VR Little Endian).
    """
    rule = next((r for r in rules if _matches(ds, r)), None)
    if rule is None or "PixelData" not in ds:
        return None
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    pixels = ds.pixel_array.copy()
    samples = int(ds.get("SamplesPerPixel", 1))
    # Rows and columns sit before the samples axis when there is one: (..., rows, cols[, samples]).
    row_axis = pixels.ndim - (3 if samples > 1 else 2)
    for x0, y0, x1, y1 in rule.regions:
        index = [slice(None)] * pixels.ndim
        index[row_axis] = slice(max(0, y0), max(0, y1))
        index[row_axis + 1] = slice(max(0, x0), max(0, x1))
        pixels[tuple(index)] = 0
    ds.PixelData = pixels.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.BurnedInAnnotation = "NO"
    return rule.name or "unnamed rule"
