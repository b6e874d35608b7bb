"""The fuzz corpus: malformed inputs of every kind medlens reads, made from the real data by named mutations.

Each input kind (a DICOM file, a DICOM series folder, a NIfTI volume, a picture, a MedMNIST archive, a VOC, COCO or
YOLO folder, a CSV table, a dataset folder, a bundle, a plan, a ``--set`` value, a run folder to resume...) has a
list of named mutations. A mutation starts from real files (``MEDLENS_DATA``, see ``../shared/data/README.md``) and
breaks one thing; it writes the result into a folder it is given and returns a :class:`Built` saying what to hand
to the command and what the command's message must name. Everything is deterministic: where a mutation picks
bytes or places, it uses the seeded generator it is given (:func:`rng_for`).

Which commands take which kind is :data:`KIND_COMMANDS`; what each (kind, mutation, command) must end with is
:func:`expectation`: by default a clean error (a non-zero exit and one line ``medlens: error: ...`` naming the
offending file or key), for ``predict`` and ``deid`` (which work through a batch) a reported skip, and for the
inputs that are valid after all (a 16-bit PNG, a box that only needs clipping...) a success, with the reason
written next to the mutation.
"""

from fuzz.corpus import boxes, datasets, dicom, folders, pictures, runs, volumes  # noqa: F401  (registration)
from fuzz.corpus.registry import (
    KIND_COMMANDS,
    MARKER,
    MUTATIONS,
    SKIPPING_COMMANDS,
    TINY,
    Built,
    Expect,
    Mutation,
    cases,
    expectation,
    mutation,
    rng_for,
)
from fuzz.corpus.sources import (
    Sources,
    class_folder,
    coco_content,
    coco_folder,
    marker_for,
    pickle_payload,
    table_folder,
    write_msd,
    write_msd_json,
    write_xrays,
    yolo_folder,
)

__all__ = [
    "KIND_COMMANDS",
    "MARKER",
    "MUTATIONS",
    "SKIPPING_COMMANDS",
    "TINY",
    "Built",
    "Expect",
    "Mutation",
    "Sources",
    "cases",
    "class_folder",
    "coco_content",
    "coco_folder",
    "expectation",
    "marker_for",
    "mutation",
    "pickle_payload",
    "rng_for",
    "table_folder",
    "write_msd",
    "write_msd_json",
    "write_xrays",
    "yolo_folder",
]
