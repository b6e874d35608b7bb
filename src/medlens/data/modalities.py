"""Facts about imaging modalities that planning rules use (DICOM Modality codes)."""

#: modalities whose images show anatomy with a left and a right side: never mirrored left-right in augmentation
LATERAL_MODALITIES = frozenset({"XR", "CR", "DX", "DR", "MG", "CT", "MR", "PT", "NM"})
