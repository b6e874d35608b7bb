"""Sending DICOM files to another node by C-STORE (a Storage SCU, through ``pynetdicom``).

Each failure is one :class:`~medlens.core.errors.RemoteError` line naming the destination: no connection, an
association rejected (with the reason the destination gave), aborted, or an instance answered with a failure
status. Files are sent as they are stored (not decoded and re-encoded), in their own transfer syntax.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom

from medlens.core.errors import ConfigError, RemoteError

log = logging.getLogger(__name__)
AE_PATTERN = re.compile(r"^[\x20-\x7e]{1,16}$")
# PS3.8 Table 9-21 (A-ASSOCIATE-RJ): the reasons an acceptor gives, for messages
_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded (too many associations)",
}


@dataclass(frozen=True)
class Destination:
    """A DICOM node: ``AE@HOST:PORT``."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, option: str = "--forward") -> Destination:
        """``AE@HOST:PORT`` as a destination.

        Raises:
            ConfigError: not of that form, an AE title longer than 16 characters, or a port out of range.
        """
        match = re.fullmatch(r"([^@]+)@(.+):([0-9]+)", text.strip())
        if not match:
            raise ConfigError(option, f"{text!r} is not AE@HOST:PORT (e.g. ORTHANC@127.0.0.1:4242)")
        ae, host, port = match.group(1), match.group(2), int(match.group(3))
        check_ae_title(ae, option)
        if not 0 < port < 65536:
            raise ConfigError(option, f"port {port} is not in 1..65535")
        return cls(ae, host.strip("[]"), port)


def check_ae_title(title: str, option: str) -> str:
    """An AE title: 1 to 16 printable ASCII characters, not only spaces."""
    if not AE_PATTERN.match(title) or not title.strip() or "\\" in title:
        raise ConfigError(option, f"AE title {title!r} must be 1 to 16 printable ASCII characters (no backslash)")
    return title


def send_files(destination: Destination, files: Sequence[Path], calling_ae: str, timeout: float = 30) -> None:
    """C-STORE every file to ``destination`` in one association; each must be answered with success (or a
    warning, which the destination uses for "stored, with a remark").

    Raises:
        RemoteError: naming the destination and what went wrong.
    """
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE, evt

    if not files:
        return
    contexts: dict[str, set[str]] = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        contexts.setdefault(str(ds.SOPClassUID), set()).add(str(ds.file_meta.TransferSyntaxUID))
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = min(timeout, 10)
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, sorted(syntaxes | {ExplicitVRLittleEndian, ImplicitVRLittleEndian}))
    answers: list[object] = []  # the connection, and the destination's A-ASSOCIATE answer (why it was rejected)
    assoc = ae.associate(
        destination.host,
        destination.port,
        ae_title=destination.ae_title,
        evt_handlers=[
            (evt.EVT_CONN_OPEN, lambda event: answers.append("connected")),
            (evt.EVT_ACSE_RECV, lambda event: answers.append(event.primitive)),
        ],
    )
    if not assoc.is_established:
        raise RemoteError(str(destination), _why_not_established(assoc, answers))
    try:
        for path in files:
            status = assoc.send_c_store(path)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code == -1:
                raise RemoteError(str(destination), f"no answer to the C-STORE of {path.name} (association lost)")
            if code != 0 and not 0xB000 <= code <= 0xBFFF:
                comment = str(status.get("ErrorComment", "")) if status else ""
                raise RemoteError(
                    str(destination),
                    f"C-STORE of {path.name} refused with status 0x{code:04X}" + (f" ({comment})" if comment else ""),
                )
    finally:
        if assoc.is_established:
            assoc.release()
    log.info("sent %d instance(s) to %s", len(files), destination)


def reject_reason(source: int | None, diagnostic: int | None) -> str:
    """The reason of an A-ASSOCIATE-RJ in words."""
    if source is None:
        return "no reason given"
    return _REJECT_REASONS.get((int(source), int(diagnostic or 0)), f"source {source}, reason {diagnostic}")


def _why_not_established(assoc: object, answers: Sequence[object]) -> str:
    if "connected" not in answers:
        return "no connection (connection refused, or no answer)"
    if getattr(assoc, "is_rejected", False):
        answer = next((a for a in answers if getattr(a, "result", None) in (1, 2)), None)
        why = reject_reason(getattr(answer, "result_source", None), getattr(answer, "diagnostic", None))
        return f"association rejected ({why})"
    if getattr(assoc, "is_aborted", False):
        return "association aborted by the destination (no presentation context accepted?)"
    return "no association (connection refused, or no answer)"
