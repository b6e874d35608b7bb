"""Answers for requests the service cannot fulfil: a status and one line naming the problem, as JSON.

Every refusal is a :class:`ServiceError` (or a medlens error mapped by :func:`from_medlens`), turned into
``{"error": code, "detail": "..."}`` by the app; nothing a caller sends produces a 5xx or shows a traceback.
"""

from __future__ import annotations

from medlens.core.errors import ConfigError, InputError, MedlensError, one_line

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    500: "internal_error",
    503: "unavailable",
}


class ServiceError(Exception):
    """A request refused with ``status`` and a one-line ``detail`` (which names the field or file at fault)."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = one_line(detail)
        super().__init__(f"{status}: {self.detail}")

    def body(self) -> dict[str, str]:
        return {"error": CODES.get(self.status, "error"), "detail": self.detail}


def from_medlens(exc: MedlensError, status: int, hide: str | None = None, shown: str = "upload") -> ServiceError:
    """A medlens error as a service answer; the temporary path ``hide`` is replaced by ``shown`` in the text."""
    if isinstance(exc, InputError | ConfigError):
        text = f"{exc.path}: {exc.problem}" if isinstance(exc, InputError) else f"{exc.key}: {exc.problem}"
    else:
        text = str(exc)
    if hide:
        text = text.replace(hide, shown)
    return ServiceError(status, text)
