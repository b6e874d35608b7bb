"""The corpus's own registry: what a mutation builds, which commands take which kind, what each case must end with."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from fuzz.corpus.sources import Sources


Expect = Literal["error", "skip", "valid", "xfail"]
MARKER = "UNPICKLED"  # what a pickle payload creates (beside the input folder) if anything ever unpickles it


# ---- what a mutation hands back -------------------------------------------------------------------------------


@dataclass
class Built:
    """A malformed input: the path given to the command, what its message must name, extra arguments."""

    path: Path
    names: str = ""  # a file name or key the error (or skip) line must contain; default: path.name
    args: list[str] = field(default_factory=list)  # extra command-line arguments (e.g. ``--set`` values)

    def __post_init__(self) -> None:
        self.names = self.names or self.path.name


@dataclass(frozen=True)
class Mutation:
    """One named way to break an input of one kind.

    Attributes:
        kind: the input kind (a key of :data:`KIND_COMMANDS`).
        name: what is broken, in a few words joined by underscores.
        build: ``build(folder, sources, rng) -> Built`` writes the malformed input into ``folder``.
        valid: command -> why this input is in fact valid for it (the command must succeed).
        errors: command -> why a batch command (predict, deid) fails as a whole instead of skipping the input.
        xfail: command -> why the case still fails (a defect left for a larger change); strict.
        commands: only these commands of the kind take this mutation (default: all of them).
    """

    kind: str
    name: str
    build: Callable[[Path, Sources, random.Random], Built]
    valid: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    xfail: dict[str, str] = field(default_factory=dict)
    commands: tuple[str, ...] | None = None


MUTATIONS: dict[str, dict[str, Mutation]] = {}

# Which commands take each kind (see test_corpus.COMMANDS for what each runs). predict and deid work through a
# batch: the malformed input goes in beside a good one and must be reported as skipped. predict3d gives a 3D model
# the malformed input alone (its network is slow on a CPU), so a skipped input ends as "nothing could be predicted".
KIND_COMMANDS: dict[str, tuple[str, ...]] = {
    "dicom": ("info", "convert", "predict", "deid"),
    "dicom_series": ("info", "convert", "predict3d", "deid"),  # predict3d: the bad input alone (a 3D model is slow)
    "nifti": ("info", "convert", "predict3d", "import-msd", "import-pairs"),
    "nifti_label": ("import-msd", "import-pairs"),
    "picture": ("info", "convert", "predict", "import-folder", "import-csv"),
    "npz": ("import-medmnist", "info"),
    "class_folder": ("import-folder",),
    "table": ("import-csv",),
    "msd": ("import-msd",),
    "voc": ("import-voc",),
    "coco": ("import-coco",),
    "yolo": ("import-yolo",),
    "dataset": ("plan", "train", "evaluate"),
    "plan": ("train",),
    "set": ("plan", "train"),
    "bundle": ("predict-bundle", "evaluate-bundle", "export"),
    "run": ("resume",),
}
SKIPPING_COMMANDS = ("predict", "deid")
# Plan overrides that make training take seconds (one epoch of a quarter-width network).
TINY = ["--set", "train.max_epochs=1", "--set", "train.budget_minutes=null", "--set", "model.kwargs.widen_factor=0.25",
        "--set", "train.explain_images=0"]  # fmt: skip


def mutation(
    kind: str,
    *,
    valid: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    xfail: dict[str, str] | None = None,
    commands: tuple[str, ...] | None = None,
) -> Callable[[Callable[[Path, Sources, random.Random], Built]], Callable[[Path, Sources, random.Random], Built]]:
    """Decorator: register ``fn`` as the mutation named after it (its name without the kind prefix)."""

    def add(fn: Callable[[Path, Sources, random.Random], Built]) -> Callable[[Path, Sources, random.Random], Built]:
        name = fn.__name__.removeprefix(f"{kind}__")
        MUTATIONS.setdefault(kind, {})[name] = Mutation(
            kind, name, fn, valid or {}, errors or {}, xfail or {}, commands
        )
        return fn

    return add


def rng_for(kind: str, name: str) -> random.Random:
    """The generator a mutation uses: seeded by its kind and name, so the corpus is the same on every run."""
    return random.Random(zlib.crc32(f"{kind}/{name}".encode()))


def cases() -> list[tuple[str, str, str]]:
    """Every (kind, mutation, command) of the corpus."""
    out = []
    for kind, mutations in MUTATIONS.items():
        for name, mut in mutations.items():
            for command in KIND_COMMANDS[kind]:
                if mut.commands is None or command in mut.commands:
                    out.append((kind, name, command))
    return out


def expectation(kind: str, name: str, command: str) -> tuple[Expect, str]:
    """What the case must end with, and why when it is not an error."""
    mut = MUTATIONS[kind][name]
    if command in mut.xfail:
        return "xfail", mut.xfail[command]
    if command in mut.valid:
        return "valid", mut.valid[command]
    if command in mut.errors:
        return "error", mut.errors[command]
    if command in SKIPPING_COMMANDS:
        return "skip", "a batch command skips the bad input, reports it and goes on"
    return "error", ""
