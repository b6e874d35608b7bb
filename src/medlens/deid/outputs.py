"""Where a de-identification run writes, checked before anything is written, and the record that ties OUT to
one set of settings.

The rules, in the order they are checked:

- OUT, the quarantine folder and the mapping file lie apart from the input and from one another: none is
  inside another, and none contains the input. So files flagged for burned-in text never land in the clean
  output, and the re-identification table never lands in the source folder.
- OUT and the quarantine are folders, or do not exist yet and can be created.
- The mapping is never the key file, and never an existing file unless ``overwrite_mapping`` is given.
- The key file does not lie inside OUT or the quarantine (it would travel with the de-identified data).
- OUT is new, empty, or the OUT of an earlier run with the same settings. The first run writes
  ``.medlens-deid.json`` into OUT: a fingerprint of the key (an HMAC of a fixed text under the key, never the
  key), the profile (for a site profile, a hash of its content) and the options. A later run with anything
  different is refused, naming the difference, instead of mixing two pseudonym sets or silently leaving the
  earlier files without the new options; the same settings resume where the earlier run stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from medlens.core.errors import InputError
from medlens.core.outputs import write_text_atomic
from medlens.deid.profile import Options, list_profiles
from medlens.deid.pseudonyms import key_fingerprint

#: The settings record a run keeps in OUT.
SETTINGS_FILE = ".medlens-deid.json"
_FORMAT = 1
_FLAGS = {
    "keep_dates_shifted": "--keep-dates-shifted",
    "keep_patient_characteristics": "--keep-patient-characteristics",
    "keep_device_identity": "--keep-device-identity",
    "reject_burned_in": "--reject-burned-in",
}


@dataclass(frozen=True)
class RunSettings:
    """What decides the content of OUT: a run into an existing OUT must use the same.

    Attributes:
        key_fingerprint: HMAC-SHA256 of a fixed text under the key (names the key without revealing it).
        profile: ``basic``, or ``site profile sha256:...`` of the site profile file's content.
        keep_dates_shifted: the Annex E option of that name.
        keep_patient_characteristics: the Annex E option of that name.
        keep_device_identity: the Annex E option of that name.
        reject_burned_in: files flagged for burned-in text go to the quarantine, not OUT.
    """

    key_fingerprint: str
    profile: str
    keep_dates_shifted: bool
    keep_patient_characteristics: bool
    keep_device_identity: bool
    reject_burned_in: bool

    @classmethod
    def of(cls, key: bytes, profile: str | Path, options: Options, reject_burned_in: bool) -> RunSettings:
        name = str(profile)
        if name not in list_profiles():
            name = "site profile sha256:" + hashlib.sha256(Path(profile).read_bytes()).hexdigest()[:16]
        return cls(key_fingerprint(key), name, reject_burned_in=reject_burned_in, **dataclasses.asdict(options))

    def differences(self, earlier: RunSettings) -> list[str]:
        """What this run would change in an OUT written with ``earlier``, in words (empty: nothing)."""
        found = []
        if self.key_fingerprint != earlier.key_fingerprint:
            found.append(
                f"another key (key fingerprint {earlier.key_fingerprint[:12]} then, {self.key_fingerprint[:12]} now)"
            )
        if self.profile != earlier.profile:
            found.append(f"another profile ({earlier.profile} then, {self.profile} now)")
        for name, flag in _FLAGS.items():
            then, now = getattr(earlier, name), getattr(self, name)
            if then != now:
                found.append(f"{flag} {'on' if then else 'off'} then, {'on' if now else 'off'} now")
        return found


def inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies below it (both resolved)."""
    return path == folder or folder in path.parents


def _check_creatable(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` is a writable folder (so ``path`` can be made)."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(path, f"the {what} cannot be created: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(path, f"the {what} cannot be created: {ancestor} is not writable")


def _check_folder(path: Path, what: str) -> None:
    if path.exists() and not path.is_dir():
        raise InputError(path, f"the {what} exists and is not a folder")
    if not path.exists():
        _check_creatable(path, what)


def check_destinations(
    source: Path,
    out: Path,
    quarantine: Path,
    mapping: Path | None,
    key_path: Path,
    overwrite_mapping: bool = False,
) -> None:
    """Refuse, before anything is written, destinations that would mix or overwrite (see the module docstring).

    Args:
        source: the input file or folder (resolved).
        out: the output folder (resolved).
        quarantine: the quarantine folder (resolved).
        mapping: the mapping file (resolved), or None when none is written.
        key_path: the key file this run uses (it may not exist yet when it is the default one).
        overwrite_mapping: allow replacing an existing mapping file (never the key, nothing in the input).

    Raises:
        InputError: naming the offending path and the rule it breaks.
    """
    if inside(out, source) or inside(source, out):
        raise InputError(out, "the output folder must not be inside the input, nor contain it")
    _check_folder(out, "output folder")
    if inside(quarantine, out) or inside(out, quarantine):
        raise InputError(
            quarantine,
            "the quarantine folder must lie outside OUT and must not contain it "
            "(files flagged for burned-in text would mix with the clean output)",
        )
    if inside(quarantine, source) or inside(source, quarantine):
        raise InputError(quarantine, "the quarantine folder must lie outside the input and must not contain it")
    _check_folder(quarantine, "quarantine folder")
    key_path = key_path.resolve()
    if inside(key_path, out) or inside(key_path, quarantine):
        raise InputError(key_path, "the key file must not lie inside OUT or the quarantine (it would travel with them)")
    if mapping is None:
        return
    if mapping == key_path or (mapping.exists() and key_path.exists() and os.path.samefile(mapping, key_path)):
        raise InputError(mapping, "the mapping file would overwrite the key file; write the mapping elsewhere")
    if inside(mapping, source) or inside(source, mapping):
        raise InputError(mapping, "the mapping file must not be written into the input (nor be a folder holding it)")
    if any(inside(mapping, folder) or inside(folder, mapping) for folder in (out, quarantine)):
        raise InputError(mapping, "the mapping file must not be written into the output or quarantine")
    if mapping.is_dir():
        raise InputError(mapping, "the mapping file is an existing folder")
    if mapping.exists() and not overwrite_mapping:
        raise InputError(mapping, "the mapping file exists; pass --overwrite-mapping to replace it")
    _check_creatable(mapping, "mapping file")


def _read_record(record: Path) -> RunSettings:
    try:
        data = json.loads(record.read_text())
        return RunSettings(**{f.name: data[f.name] for f in dataclasses.fields(RunSettings)})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(record, f"not a medlens deid settings record ({type(exc).__name__}: {exc})") from exc


def claim_output(out: Path, settings: RunSettings) -> bool:
    """Check OUT against its settings record, then create OUT and write the record (which proves OUT writable).

    Returns:
        True when OUT already held a run with these settings (this run resumes it).

    Raises:
        InputError: OUT holds another run's settings, or files and no record, or cannot be written.
    """
    record = out / SETTINGS_FILE
    resumes = record.is_file()
    try:
        if resumes:
            differences = settings.differences(_read_record(record))
            if differences:
                raise InputError(
                    out,
                    f"written by an earlier run with other settings: {'; '.join(differences)}. Run with the "
                    "earlier settings to resume it, or choose a new output folder",
                )
        elif out.is_dir() and any(out.iterdir()):
            raise InputError(
                out,
                f"the output folder is not empty and holds no {SETTINGS_FILE}, so it is not the output of an earlier "
                "'medlens deid'; choose a new or empty folder",
            )
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(record, json.dumps({"format": _FORMAT, **dataclasses.asdict(settings)}, indent=2) + "\n")
    except OSError as exc:
        raise InputError(out, f"cannot write the output folder: {exc.strerror or exc}") from exc
    return resumes
