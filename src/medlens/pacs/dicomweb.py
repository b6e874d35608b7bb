"""A DICOMweb server: QIDO-RS search, WADO-RS retrieve, STOW-RS store, through ``dicomweb-client``.

Authentication is a bearer token or a user and password (HTTP basic). Transient failures are retried with
exponential backoff by urllib3's ``Retry`` mounted on the session: refused or dropped connections, time-outs,
``408``, ``429`` and every ``5xx`` (STOW included: storing the same SOP Instance UIDs twice keeps one copy).
A ``4xx`` is not retried: it is the request that is wrong (a bad query, a study that does not exist, missing
credentials), and it ends the command with one line naming the server, the status and the server's reason.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pydicom
from pydicom.dataset import Dataset

from medlens.core.errors import ConfigError, RemoteError
from medlens.core.outputs import atomic_file
from medlens.pacs.rules import SeriesFacts

log = logging.getLogger(__name__)
PAGE = 500  # studies asked for per QIDO-RS request
RETRIED_STATUSES = (408, 429, *range(500, 600))
SERIES_FIELDS = ("Modality", "SeriesDescription", "BodyPartExamined", "NumberOfSeriesRelatedInstances", "SeriesNumber")


QIDO_PARAMETERS = ("limit", "offset", "fuzzymatching", "includefield")
# a name often written for ModalitiesInStudy (0008,0061), the attribute QIDO-RS matches a study's modalities on
ALIASES = {"ModalityInStudy": "ModalitiesInStudy"}


def parse_query(text: str | None) -> dict[str, str]:
    """``"ModalitiesInStudy=MR&StudyDate=20240101-"`` as QIDO-RS search filters (keyword or tag to value).

    Keys are DICOM keywords (``ModalityInStudy`` is read as ``ModalitiesInStudy``), tags as 8 hex digits, or
    QIDO-RS parameters (``limit``, ``offset``, ``fuzzymatching``, ``includefield``). A server ignores a key it
    does not know, which would turn a typo into "every study": such keys are refused here.

    Raises:
        ConfigError: a part without ``=``, or a key that is none of the above (with the nearest keyword).
    """
    import difflib

    from pydicom.datadict import keyword_dict

    if not text:
        return {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ConfigError("--query", f"{text!r} is not KEY=VALUE pairs joined by '&'") from None
    filters = {}
    for key, wanted in pairs:
        key = ALIASES.get(key, key)
        if key not in keyword_dict and key not in QIDO_PARAMETERS and not re.fullmatch(r"[0-9A-Fa-f]{8}", key):
            near = difflib.get_close_matches(key, list(keyword_dict), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError("--query", f"{key!r} is not a DICOM keyword, a tag or a QIDO-RS parameter{hint}")
        filters[key] = wanted
    return filters


def value(item: dict[str, Any], keyword: str, default: str = "") -> str:
    """The first value of ``keyword`` in a DICOM JSON object (a QIDO-RS answer), as text."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    entry = item.get(f"{tag:08X}") if tag is not None else None
    values = (entry or {}).get("Value") or []
    if not values:
        return default
    first = values[0]
    if isinstance(first, dict):  # a person name
        return str(first.get("Alphabetic", default))
    return str(first)


class DicomWebServer:
    """A DICOMweb service at ``url`` (e.g. ``http://pacs:8042/dicom-web``).

    Args:
        url: the service root (QIDO, WADO and STOW under it).
        token: a bearer token (``Authorization: Bearer ...``).
        user: ``USER:PASSWORD`` for HTTP basic authentication.
        tries: attempts per request for the transient failures named in the module docstring.
        backoff: seconds before the second attempt; doubled for each further one.
        timeout: seconds to connect, and to wait for each answer.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        user: str | None = None,
        tries: int = 4,
        backoff: float = 0.5,
        timeout: float = 60.0,
    ) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        if not url.startswith(("http://", "https://")):
            raise ConfigError("URL", f"{url!r} is not an http:// or https:// address of a DICOMweb service")
        if token and user:
            raise ConfigError("--token", "give a bearer token or --user, not both")
        if tries < 1:
            raise ConfigError("tries", f"must be at least 1, got {tries}")
        self.url = url.rstrip("/")
        self.tries = tries
        session = requests.Session()
        retry = Retry(
            total=tries - 1,
            connect=tries - 1,
            read=tries - 1,
            status=tries - 1,
            other=0,
            backoff_factor=backoff,
            status_forcelist=RETRIED_STATUSES,
            allowed_methods=None,  # every method: QIDO/WADO GETs and STOW POSTs
            raise_on_status=False,  # the last answer is returned, and named in the error
            respect_retry_after_header=True,
        )
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        if user:
            name, sep, password = user.partition(":")
            if not sep:
                raise ConfigError("--user", "expected USER:PASSWORD")
            session.auth = (name, password)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            self.client = DICOMwebClient(
                self.url, session=session, headers=headers, timeout=(min(timeout, 10.0), timeout)
            )
        except ValueError as exc:
            raise ConfigError("URL", str(exc)) from None
        self.client.set_http_retry_params(retry=False)  # urllib3 retries above, once, for every failure

    @contextlib.contextmanager
    def _request(self, what: str) -> Iterator[None]:
        """Turn the failures of one request into a one-line :class:`RemoteError`."""
        import requests

        try:
            yield
        except requests.HTTPError as exc:
            response = exc.response
            code = response.status_code if response is not None else 0
            reason = (response.reason if response is not None else "") or ""
            body = (response.text if response is not None else "")[:200]
            after = f" after {self.tries} tries" if code >= 500 or code in (408, 429) else ""
            detail = f": {' '.join(body.split())}" if body.strip() else ""
            raise RemoteError(self.url, f"{what}: HTTP {code} {reason}{after}{detail}") from None
        except requests.exceptions.RetryError as exc:
            raise RemoteError(self.url, f"{what}: gave up after {self.tries} tries ({_cause(exc)})") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RemoteError(self.url, f"{what}: no answer after {self.tries} tries ({_cause(exc)})") from None

    def studies(self, filters: dict[str, str] | None = None, study: str | None = None) -> list[str]:
        """StudyInstanceUIDs of the studies matching ``filters`` (QIDO-RS), or ``study`` when it exists."""
        search = dict(filters or {})
        if study:
            search["StudyInstanceUID"] = study
        uids: list[str] = []
        while True:  # paged by hand: dicomweb-client's get_remaining never ends on a server that ignores offset
            with self._request("QIDO-RS search for studies"):
                page = self.client.search_for_studies(search_filters=search, limit=PAGE, offset=len(uids))
            new = [u for u in (value(item, "StudyInstanceUID") for item in page) if u and u not in uids]
            uids += new
            if not new or len(page) < PAGE:
                return uids

    def study_attributes(self, study: str, fields: Sequence[str] = ()) -> dict[str, str]:
        """Study-level attributes of one study (AccessionNumber, PatientID, ...) from QIDO-RS."""
        with self._request(f"QIDO-RS search for study {study}"):
            found = self.client.search_for_studies(
                search_filters={"StudyInstanceUID": study}, fields=list(fields) or None
            )
        if not found:
            raise RemoteError(self.url, f"no study {study}")
        return {k: value(found[0], k) for k in ("StudyInstanceUID", "AccessionNumber", "PatientID", *fields)}

    def series(self, study: str) -> list[SeriesFacts]:
        """The series of a study with what the series rules look at (image size from one instance each)."""
        with self._request(f"QIDO-RS search for the series of study {study}"):
            found = self.client.search_for_series(study, fields=list(SERIES_FIELDS))
        facts = []
        for item in found:
            uid = value(item, "SeriesInstanceUID")
            rows = columns = 0
            if value(item, "Modality") not in ("SEG", "SR"):
                with self._request(f"QIDO-RS search for an instance of series {uid}"):
                    instances = self.client.search_for_instances(
                        study, uid, fields=["Rows", "Columns", "NumberOfFrames"], limit=1
                    )
                if instances:
                    rows, columns = int(value(instances[0], "Rows", "0")), int(value(instances[0], "Columns", "0"))
            facts.append(
                SeriesFacts(
                    series_uid=uid,
                    modality=value(item, "Modality"),
                    body_part=value(item, "BodyPartExamined"),
                    description=value(item, "SeriesDescription"),
                    images=int(value(item, "NumberOfSeriesRelatedInstances", "0") or 0),
                    rows=rows,
                    columns=columns,
                )
            )
        return facts

    def retrieve(self, study: str, series: str, folder: Path) -> list[Path]:
        """WADO-RS retrieve of one series into ``folder``: one file per instance, named by its SOP Instance UID
        (each written atomically), in the transfer syntax the server stores."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        with self._request(f"WADO-RS retrieve of series {series}"):
            for ds in self.client.iter_series(study, series, media_types=(("application/dicom", "*"),)):
                paths.append(save_instance(ds, folder))
        if not paths:
            raise RemoteError(self.url, f"WADO-RS retrieve of series {series}: no instances")
        return paths

    def store(self, files: Sequence[Path], study: str | None = None) -> None:
        """STOW-RS the DICOM ``files`` (into ``study`` when given); every one must be accepted.

        Raises:
            RemoteError: the server refused the request or some of the instances (naming them and why).
        """
        datasets = [pydicom.dcmread(p) for p in files]
        with self._request(f"STOW-RS of {len(datasets)} instance(s)"):
            answer = self.client.store_instances(datasets, study_instance_uid=study)
        failed = list(getattr(answer, "FailedSOPSequence", []) or [])
        if failed:
            first = failed[0]
            raise RemoteError(
                self.url,
                f"STOW-RS refused {len(failed)} of {len(datasets)} instance(s), e.g. "
                f"{first.get('ReferencedSOPInstanceUID', '?')} (failure reason {first.get('FailureReason', '?')})",
            )


def save_instance(ds: Dataset, folder: Path) -> Path:
    """Write one received instance as ``folder/<SOPInstanceUID>.dcm``, atomically."""
    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    with atomic_file(path, "wb") as handle:
        handle.write(buffer.getvalue())
    return path


def _cause(exc: BaseException) -> str:
    """The reason of a requests/urllib3 failure, short (their messages nest the whole retry history)."""
    text = str(exc)
    for known in ("Connection refused", "timed out", "Connection reset", "Name or service not known"):
        if known in text:
            return known.lower()
    return f"{type(exc).__name__}: {text[:160]}"
