"""tensorshm: hand numpy arrays between processes on one host through the tensorshm service's shared memory.

>>> import numpy as np, tensorshm
>>> c = tensorshm.Client()                                  # $TENSORSHM_URL or http://127.0.0.1:8000
>>> d = c.put({"image": np.zeros((480, 640, 3), np.uint8), "prompt": "a cat"})
>>> with c.attach(d["image"]) as img: ...                   # zero-copy view, in any process on the host
>>> c.get(d)                                                # a copy, through the service
>>> c.release(d.namespace)

Only numpy and the standard library are needed at run time.
"""

from .client import DEFAULT_URL, Attachment, Client, PutResult
from .errors import (
    BadGateway,
    BadRequest,
    ClientError,
    Conflict,
    ConnectionError,
    Forbidden,
    GatewayTimeout,
    Gone,
    InsufficientStorage,
    InternalServerError,
    LengthRequired,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    SegmentTruncated,
    ServerError,
    ServiceUnavailable,
    TensorshmError,
    Timeout,
    TooManyRequests,
    UnprocessableEntity,
    Unauthorized,
    UnsupportedMediaType,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Attachment",
    "PutResult",
    "DEFAULT_URL",
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
]
