"""Exceptions raised by the tensorshm client.

Every error the service answers with is a JSON body ``{statusCode, code, error, message}``; the client turns it
into a :class:`TensorshmError` subclass chosen by the HTTP status (:func:`error_for_status`), carrying the status,
the stable ``TSHM_*`` code and the message. Errors the client detects itself (a segment missing from ``/dev/shm``
when attaching, a truncated segment, an unreachable service) use the same classes with ``status`` set to ``None``.
"""

from __future__ import annotations

import builtins
from typing import Dict, Optional, Type

__all__ = [
    "TensorshmError",
    "ClientError",
    "ServerError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "NotAcceptable",
    "Conflict",
    "SegmentTruncated",
    "Gone",
    "LengthRequired",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "UnprocessableEntity",
    "TooManyRequests",
    "InternalServerError",
    "BadGateway",
    "ServiceUnavailable",
    "GatewayTimeout",
    "InsufficientStorage",
    "ConnectionError",
    "Timeout",
    "ProtocolError",
    "error_for_status",
]


class TensorshmError(Exception):
    """Base class of every error the client raises on behalf of the service.

    Attributes:
        status: the HTTP status of the error response, or ``None`` when the client detected the error itself.
        code: the service's stable ``TSHM_*`` code (``None`` when the response carried none).
        message: the human-readable message; it names the field at fault.
    """

    #: HTTP status this class stands for (``None`` for the base class and client-side errors).
    default_status: Optional[int] = None

    def __init__(self, message: str, *, status: Optional[int] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r})"

    def __reduce__(self):  # keeps the keyword-only attributes when pickled (e.g. across multiprocessing)
        return (_rebuild, (type(self), self.message, self.status, self.code))


def _rebuild(cls: Type[TensorshmError], message: str, status: Optional[int], code: Optional[str]) -> TensorshmError:
    return cls(message, status=status, code=code)


class ClientError(TensorshmError):
    """A 4xx answer: the request was at fault."""


class ServerError(TensorshmError):
    """A 5xx answer: the service failed or is unavailable."""


class BadRequest(ClientError):
    """400: the request is malformed (``TSHM_INVALID_SPEC``, ``TSHM_INVALID_NAME``, ``TSHM_INVALID_REQUEST``, ...)."""

    default_status = 400


class Unauthorized(ClientError):
    """401: the service wants an API key (``Authorization: Bearer``) and got none, or a wrong one."""

    default_status = 401


class Forbidden(ClientError):
    """403: the API key may not do this."""

    default_status = 403


class NotFound(ClientError):
    """404: no such segment (``TSHM_SEGMENT_NOT_FOUND``) or route.

    Also raised by :meth:`tensorshm.Client.attach` (with ``status=None``) when the segment's file is not in
    ``/dev/shm``: released, expired, or never created on this host.
    """

    default_status = 404


class MethodNotAllowed(ClientError):
    """405."""

    default_status = 405


class NotAcceptable(ClientError):
    """406: the service cannot produce the media type asked for."""

    default_status = 406


class Conflict(ClientError):
    """409: a key already registered in the namespace (``TSHM_DUPLICATE_KEY``), or a truncated segment."""

    default_status = 409


class SegmentTruncated(Conflict):
    """The segment's file is shorter than its tensor (``TSHM_SEGMENT_TRUNCATED``): someone truncated it.

    Raised by the service (409) and by :meth:`tensorshm.Client.attach` (``status=None``), which checks the file's
    size before mapping it: a view past the end of the file would kill the process with SIGBUS on access.
    """


class Gone(ClientError):
    """410: the segment's file vanished behind the service's back (``TSHM_SEGMENT_GONE``)."""

    default_status = 410


class LengthRequired(ClientError):
    """411."""

    default_status = 411


class PayloadTooLarge(ClientError):
    """413: the request body is over the service's limit (``TSHM_BODY_TOO_LARGE``)."""

    default_status = 413


class UnsupportedMediaType(ClientError):
    """415."""

    default_status = 415


class UnprocessableEntity(ClientError):
    """422: a descriptor disagrees with the registered segment (``TSHM_SPEC_MISMATCH``)."""

    default_status = 422


class TooManyRequests(ClientError):
    """429."""

    default_status = 429


class InternalServerError(ServerError):
    """500 (``TSHM_INTERNAL``)."""

    default_status = 500


class BadGateway(ServerError):
    """502: a proxy in front of the service failed."""

    default_status = 502


class ServiceUnavailable(ServerError):
    """503: the service is shutting down (``TSHM_SHUTTING_DOWN``) or not ready."""

    default_status = 503


class GatewayTimeout(ServerError):
    """504."""

    default_status = 504


class InsufficientStorage(ServerError):
    """507: ``/dev/shm`` or a quota cannot hold the tensors (``TSHM_INSUFFICIENT_STORAGE``, ``TSHM_QUOTA_EXCEEDED``)."""

    default_status = 507


class ConnectionError(TensorshmError, builtins.ConnectionError):  # noqa: A001 - the name the API promises
    """The service could not be reached (code ``TSHM_UNREACHABLE``): refused, reset, DNS failure, ...

    Also a subclass of the built-in :class:`ConnectionError`, so ``except ConnectionError`` catches it either way.
    """


class Timeout(ConnectionError):
    """The service did not answer within the client's timeout (code ``TSHM_TIMEOUT``)."""


class ProtocolError(TensorshmError):
    """The service answered with something the client cannot read (code ``TSHM_BAD_RESPONSE``)."""


_BY_STATUS: Dict[int, Type[TensorshmError]] = {
    cls.default_status: cls
    for cls in (
        BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, NotAcceptable, Conflict, Gone,
        LengthRequired, PayloadTooLarge, UnsupportedMediaType, UnprocessableEntity, TooManyRequests,
        InternalServerError, BadGateway, ServiceUnavailable, GatewayTimeout, InsufficientStorage,
    )
    if cls.default_status is not None
}

_BY_CODE: Dict[str, Type[TensorshmError]] = {
    "TSHM_SEGMENT_TRUNCATED": SegmentTruncated,
}


def error_for_status(status: int, code: Optional[str], message: str) -> TensorshmError:
    """The exception for an error response: by code where one has its own class, else by status.

    Statuses without a class of their own fall back to :class:`ClientError` (4xx), :class:`ServerError` (5xx) or
    :class:`TensorshmError`.
    """
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = ClientError if 400 <= status < 500 else ServerError if 500 <= status < 600 else TensorshmError
    return cls(message, status=status, code=code)
