"""What a de-identification run did with every input: written, quarantined, skipped (with why)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["written", "quarantined", "skipped", "done"]


@dataclass
class FileResult:
    """The outcome for one input file.

    Attributes:
        source: path relative to the input root.
        status: written, quarantined, skipped, or done (already written by an earlier, interrupted run).
        reason: why it was skipped or quarantined.
        output: the output path relative to OUT (or to the quarantine folder).
        burned_in: why the image may carry burned-in text, when it may.
        blanked: the pixel-blanking rule applied, if any.
        mapping: (kind, original, pseudonym) rows, only when a mapping file was asked for.
    """

    source: str
    status: Status
    reason: str = ""
    output: str | None = None
    burned_in: str | None = None
    blanked: str | None = None
    mapping: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class DeidReport:
    """Counts for the whole run plus the files a person should look at (skipped, quarantined, flagged).

    The counts always add up: ``written + quarantined + skipped + already_done == total``.
    """

    total: int = 0
    written: int = 0
    quarantined: int = 0
    skipped: int = 0
    already_done: int = 0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    quarantined_files: list[tuple[str, str]] = field(default_factory=list)
    burned_in_files: list[tuple[str, str]] = field(default_factory=list)
    blanked_files: list[tuple[str, str]] = field(default_factory=list)
    out: str = ""
    quarantine: str = ""
    mapping_file: str | None = None
    seconds: float = 0.0

    def add(self, result: FileResult) -> None:
        self.total += 1
        if result.status == "written":
            self.written += 1
        elif result.status == "quarantined":
            self.quarantined += 1
            self.quarantined_files.append((result.source, result.reason))
        elif result.status == "skipped":
            self.skipped += 1
            self.skipped_files.append((result.source, result.reason))
        else:
            self.already_done += 1
        if result.burned_in:
            self.burned_in_files.append((result.source, result.burned_in))
        if result.blanked:
            self.blanked_files.append((result.source, result.blanked))

    @property
    def counts(self) -> dict[str, int]:
        return {
            "total": self.total,
            "written": self.written,
            "quarantined": self.quarantined,
            "skipped": self.skipped,
            "already_done": self.already_done,
            "flagged_burned_in": len(self.burned_in_files),
        }

    def summary(self) -> str:
        """One line, as the command line prints it."""
        c = self.counts
        text = (
            f"{c['total']} input files: {c['written']} written, {c['quarantined']} quarantined, {c['skipped']} skipped"
        )
        if c["already_done"]:
            text += f", {c['already_done']} already done by an earlier run"
        return text + f"; {c['flagged_burned_in']} flagged for possible burned-in text"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts}
