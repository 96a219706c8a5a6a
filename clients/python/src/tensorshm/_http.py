"""A small HTTP/1.1 transport on the standard library's ``http.client``, with keep-alive per thread.

Besides ``http://`` and ``https://``, ``unix:///path/to/socket`` speaks HTTP over the service's Unix domain socket
(``TENSORSHM_SOCKET``), where the kernel tells the service who is calling: no API key is needed there.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import quote, urlencode, urlsplit

from .errors import ConnectionError, ProtocolError, TensorshmError, Timeout, error_for_status

USER_AGENT = "tensorshm-python"

# A reused keep-alive connection the server has closed in the meantime fails this way before any answer arrives;
# the request is then sent once more on a fresh connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest)


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise ProtocolError(f"the service answered {self.status} with a body that is not JSON",
                                status=self.status, code="TSHM_BAD_RESPONSE") from e


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over an AF_UNIX stream socket: the same requests, another address family."""

    def __init__(self, path: str, timeout: Optional[float]) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Transport:
    """Sends requests to one base URL; one persistent connection per thread (and per process, after a fork)."""

    def __init__(self, url: str, api_key: Optional[str], timeout: Optional[float]) -> None:
        parts = urlsplit(url)
        self.socket_path: Optional[str] = None
        if parts.scheme == "unix":
            # unix:///run/tensorshm/tensorshm.sock: the whole path is the socket's; requests go to the root.
            if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
                raise ValueError(f"url: {url!r} is not unix:///absolute/path/to/socket")
            self.socket_path = parts.path
        elif parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: {url!r} is not an http://, https:// or unix:/// URL")
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port
        self.base_path = "" if self.socket_path is not None else parts.path.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> Tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn, True
        if self.socket_path is not None:
            conn: http.client.HTTPConnection = UnixHTTPConnection(self.socket_path, self.timeout)
        else:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()

    def close(self) -> None:
        """Closes this thread's connection (other threads' connections close when their threads end)."""
        self._drop()

    def url(self, path: str, query: Optional[Mapping[str, Any]] = None) -> str:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        return self.base_path + path + (("?" + urlencode(q)) if q else "")

    def request(self, method: str, path: str, *, query: Optional[Mapping[str, Any]] = None, body: Any = None,
                accept: str = "application/json", expect: Tuple[int, ...] = (200,)) -> Response:
        """Sends a request (``body`` as JSON) and returns the response, or raises the error it stands for."""
        headers: Dict[str, str] = {"Accept": accept, "User-Agent": USER_AGENT}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        target = self.url(path, query)
        for attempt in (0, 1):
            conn, reused = self._connection()
            try:
                conn.request(method, target, body=data, headers=headers)
                res = conn.getresponse()
                payload = res.read()
            except _STALE as e:
                self._drop()
                if reused and attempt == 0:
                    continue
                raise ConnectionError(f"{method} {self._where(target)}: the connection failed: {e or type(e).__name__}",
                                      code="TSHM_UNREACHABLE") from e
            except socket.timeout as e:
                self._drop()
                raise Timeout(f"{method} {self._where(target)}: no answer within {self.timeout} s",
                              code="TSHM_TIMEOUT") from e
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                raise ConnectionError(f"{method} {self._where(target)}: {e or type(e).__name__}",
                                      code="TSHM_UNREACHABLE") from e
            if res.will_close:
                self._drop()
            response = Response(res.status, res.headers, payload)
            if res.status in expect:
                return response
            raise self._error(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _where(self, target: str) -> str:
        if self.socket_path is not None:
            return f"unix://{self.socket_path} {target}"
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.host}{port}{target}"

    @staticmethod
    def _error(res: Response) -> TensorshmError:
        code = None
        message = res.body.decode("utf-8", "replace").strip()[:500] or f"HTTP {res.status}"
        try:
            doc = json.loads(res.body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            code = doc.get("code") if isinstance(doc.get("code"), str) else None
            if isinstance(doc.get("message"), str):
                message = doc["message"]
        return error_for_status(res.status, code, message)


def path_segment(value: str) -> str:
    return quote(value, safe="")
