"""Apply a resolved profile to every element of a pydicom dataset, sequences included, to any depth.

Written by hand because no library applies Table E.1-1 as data with keyed pseudonyms: dicognito hard-codes
its element list and random fakes, pydicom/deid needs recipes. Speed comes from deciding by tag number: an
element the profile keeps is never decoded from its raw bytes (pydicom converts lazily), so most of a file
is copied through as read.
"""

from __future__ import annotations

import functools

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from medlens.deid.iod_types import attribute_type, resolve
from medlens.deid.profile import Profile
from medlens.deid.pseudonyms import Pseudonymizer, shift_date, shift_datetime

_PATIENT_ID = 0x00100020
_PATIENT_NAME = 0x00100010
_DATE_VRS = frozenset({"DA", "DT"})
_TEXT_MAX = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "UC": 64, "LT": 64, "ST": 64, "UT": 64}
_DUMMY = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "IS": "0", "DS": "0", "AS": "000D"}
_NUMERIC = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})


@functools.lru_cache(maxsize=8192)
def _dictionary_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def patient_key(ds: Dataset) -> str:
    """What identifies the patient for pseudonyms and the date shift: Patient ID, else name and birth date."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return "id:" + pid
    name = str(ds.get("PatientName", "") or "").strip()
    birth = str(ds.get("PatientBirthDate", "") or "").strip()
    if name or birth:
        return f"name:{name}|{birth}"
    return "study:" + str(ds.get("StudyInstanceUID", "") or "")


class ElementRules:
    """Walks a dataset and applies the profile's action to each element in place.

    Args:
        profile: the resolved profile.
        pseudonyms: the keyed pseudonym maker.
    """

    def __init__(self, profile: Profile, pseudonyms: Pseudonymizer) -> None:
        self.profile = profile
        self.pseudo = pseudonyms
        self._plan: dict[int, tuple[str, str | None]] = {}
        self.kept_private = False

    def apply(self, ds: Dataset, patient: str, shift_days: int | None) -> None:
        """De-identify ``ds`` in place; ``shift_days`` is None unless dates are kept shifted."""
        self._patient = patient
        self._shift = shift_days
        self._sop = str(ds.get("SOPClassUID", ""))
        self._walk(ds, top=True)

    def _plan_for(self, tag: int) -> tuple[str, str | None]:
        plan = self._plan.get(tag)
        if plan is None:
            vr = _dictionary_vr(tag)
            action = self.profile.action_for(tag)
            if action is None:
                action = self.profile.unlisted_vr_actions.get(vr or "", "K")
            plan = (action, vr)
            self._plan[tag] = plan
        return plan

    def _walk(self, ds: Dataset, top: bool = False) -> None:
        for tag in list(ds.keys()):
            if tag >> 16 & 1:
                self._private(ds, tag)
                continue
            if tag & 0xFFFF == 0:  # group lengths are retired and would be wrong after editing
                del ds[tag]
                continue
            action, vr = self._plan_for(tag)
            if "/" in action:  # X/Z, X/D, X/Z/D ...: what the IOD needs decides (types known at top level)
                kind = attribute_type(self._sop, tag) if top else None
                action = resolve(action, kind, self.profile.conditional)
            if action == "K" and vr != "SQ":
                continue  # the common case: never decoded, written back as read
            self._act(ds, tag, action, vr)

    def _private(self, ds: Dataset, tag: int) -> None:
        keep = self.profile.keep_private_creators
        if keep:
            elem_no = tag & 0xFFFF
            if 0x10 <= elem_no <= 0xFF:
                creator_tag = tag
            elif elem_no >= 0x1000:
                creator_tag = (tag & 0xFFFF0000) | (elem_no >> 8)
            else:
                creator_tag = -1
            creator = ds.get(creator_tag) if creator_tag >= 0 else None
            if creator is not None and str(creator.value).strip() in keep:
                self.kept_private = True
                elem = ds[tag]
                if elem.VR == "SQ":
                    for item in elem.value:
                        self._walk(item)
                return
        del ds[tag]

    def _act(self, ds: Dataset, tag: int, action: str, vr: str | None) -> None:
        if action == "X":
            del ds[tag]
            return
        elem = ds[tag]
        vr = elem.VR if vr is None or " or " in vr else vr
        if vr == "SQ":
            if action in {"X", "Z"}:
                elem.value = Sequence([]) if action == "Z" else elem.value
            else:  # K, D, U, C: keep the items, de-identify what they hold
                for item in elem.value:
                    self._walk(item)
            return
        if action == "Z":
            elem.value = None
        elif action == "U" or (action == "D" and vr == "UI"):
            self._remap_uids(elem)
        elif action == "P":
            self._pseudonym(elem, tag, vr)
        elif action == "D":
            self._dummy(elem, tag, vr)
        elif action == "C":
            self._clean(ds, elem, tag, vr)
        # K: nothing to do

    def _remap_uids(self, elem: DataElement) -> None:
        if elem.VM == 0:
            return
        values = elem.value if elem.VM > 1 else [elem.value]
        mapped = [v if str(v) in UID_dictionary else self.pseudo.uid(str(v)) for v in values]
        elem.value = mapped if elem.VM > 1 else mapped[0]

    def _pseudonym(self, elem: DataElement, tag: int, vr: str) -> None:
        if elem.VM == 0 or not str(elem.value).strip():
            return
        if tag in (_PATIENT_ID, _PATIENT_NAME):
            elem.value = self.pseudo.patient_id(self._patient)
        else:
            elem.value = self.pseudo.text(f"{tag:08X}", str(elem.value), _TEXT_MAX.get(vr, 16))

    def _dummy(self, elem: DataElement, tag: int, vr: str) -> None:
        if vr in _DATE_VRS and self._shift is not None:
            self._shift_dates(elem, vr, self._shift)
        elif vr in _DUMMY:
            elem.value = _DUMMY[vr]
        elif vr in _TEXT_MAX:
            original = str(elem.value) if elem.VM else ""
            elem.value = self.pseudo.text(f"{tag:08X}", original, _TEXT_MAX[vr])
        elif vr in _NUMERIC:
            elem.value = 0
        else:
            elem.value = None

    def _clean(self, ds: Dataset, elem: DataElement, tag: int, vr: str) -> None:
        """C: only dates can be cleaned safely (shifted); times stay; any other free text is removed."""
        if vr in _DATE_VRS:
            if self._shift is None:
                elem.value = None
            else:
                self._shift_dates(elem, vr, self._shift)
        elif vr != "TM":
            del ds[tag]

    @staticmethod
    def _shift_dates(elem: DataElement, vr: str, days: int) -> None:
        if elem.VM == 0:
            return
        shift = shift_date if vr == "DA" else shift_datetime
        values = [str(v) for v in (elem.value if elem.VM > 1 else [elem.value])]
        shifted = [shift(v, days) for v in values]
        elem.value = shifted if elem.VM > 1 else shifted[0]
