"""Error mapping: the service's JSON errors, client-side checks, and a stub service for the rest."""

from __future__ import annotations

import json
import pickle
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import tensorshm
from tensorshm.errors import error_for_status


def test_unknown_name_is_not_found(client, service):
    name = f"{service.prefix}0000000000000000"
    for call in (lambda: client.info(name), lambda: client.delete(name),
                 lambda: client.get({"name": name, "shape": [1], "dtype": "uint8"})):
        with pytest.raises(tensorshm.NotFound) as e:
            call()
        assert e.value.status == 404 and e.value.code == "TSHM_SEGMENT_NOT_FOUND" and e.value.message
        assert isinstance(e.value, tensorshm.ClientError) and isinstance(e.value, tensorshm.TensorshmError)
        assert str(e.value).startswith("404 TSHM_SEGMENT_NOT_FOUND: ")


def test_malformed_name_is_bad_request(client):
    with pytest.raises(tensorshm.BadRequest) as e:
        client.info("nos_psm_0123456789abcdef")     # another prefix
    assert e.value.code == "TSHM_INVALID_NAME"


@pytest.mark.parametrize("array", [
    np.array([None, 1], dtype=object),
    np.array(["a", "b"]),
    np.array([b"a"]),
    np.zeros(2, dtype=[("a", "i4"), ("b", "f4")]),
    np.zeros(2, dtype="datetime64[s]"),
    np.zeros(2, dtype=np.longdouble),
    np.zeros(2, dtype="V8"),
], ids=lambda a: a.dtype.str)
def test_unsupported_dtypes_are_a_type_error_before_anything_is_allocated(client, array):
    ns = f"{client.client_id}/dtypes"
    with pytest.raises(TypeError, match=r"arrays\['bad'\]: dtype .* cannot live in a tensorshm segment"):
        client.put({"ok": np.ones(2), "bad": array}, namespace=ns)
    with pytest.raises(TypeError, match=r"arrays\['l'\]\[1\]"):
        client.put({"l": [np.ones(2), array]}, namespace=ns)
    assert client.list(ns) == []


def test_mixed_lists_are_a_type_error(client):
    with pytest.raises(TypeError, match="mixes"):
        client.put({"l": [np.ones(2), "text"]})
    with pytest.raises(TypeError, match="mixes"):
        client.get({"l": [{"name": "x", "shape": [1], "dtype": "uint8"}, 3]})


def test_service_side_validation_is_bad_request(client):
    with pytest.raises(tensorshm.BadRequest) as e:
        client.put({"bad key!": np.ones(2)})
    assert e.value.status == 400 and e.value.code in ("TSHM_INVALID_REQUEST", "TSHM_INVALID_SPEC")
    with pytest.raises(tensorshm.BadRequest):
        client.put({"x": np.ones(2)}, namespace="a//b")
    with pytest.raises(tensorshm.BadRequest):
        client.put({"x": np.ones([1] * 33)})      # more dimensions than numpy 1.x allows
    with pytest.raises(ValueError):
        client.put({"x": np.ones(2)}, ttl=-1)


def test_a_descriptor_that_disagrees_is_unprocessable(client):
    d = client.put({"x": np.ones((4, 4), np.float32)})
    try:
        for wrong in ({"shape": [16], "nbytes": 64}, {"dtype": "float64", "nbytes": 128}, {"dtype": ">f4"}):
            with pytest.raises(tensorshm.UnprocessableEntity) as e:
                client.get({"x": {**d["x"], **wrong}})
            assert e.value.status == 422 and e.value.code == "TSHM_SPEC_MISMATCH"
    finally:
        client.release(d)


def test_duplicate_key_is_conflict(client):
    d = client.put({"x": np.ones(1)})
    try:
        with pytest.raises(tensorshm.Conflict) as e:
            client.put({"x": np.ones(1)}, namespace=d.namespace)
        assert e.value.code == "TSHM_DUPLICATE_KEY"
    finally:
        client.release(d)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_service_is_connection_error():
    c = tensorshm.Client(f"http://127.0.0.1:{_closed_port()}", timeout=5)
    for call in (c.health, lambda: c.put({"x": np.ones(1)}), lambda: c.release("ns")):
        with pytest.raises(tensorshm.ConnectionError) as e:
            call()
        assert e.value.code == "TSHM_UNREACHABLE" and e.value.status is None
        assert isinstance(e.value, ConnectionError), "also the built-in ConnectionError"
    assert c.ready() is False
    with pytest.raises(tensorshm.ConnectionError, match="not ready"):
        c.wait(timeout=0.3)


class Stub:
    """A scripted HTTP service: answers each request with ``reply(handler)`` and records what it got."""

    def __init__(self) -> None:
        self.requests = []
        self.reply = lambda h: (200, "application/json", b"{}")
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                      "body": body})
                status, ctype, payload = stub.reply(self)
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = handle_one

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def stub():
    s = Stub()
    yield s
    s.close()


def error(status, code, message, error="x"):
    return lambda h: (status, "application/json",
                      json.dumps({"statusCode": status, "code": code, "error": error, "message": message}).encode())


@pytest.mark.parametrize("status, cls", [
    (400, tensorshm.BadRequest), (401, tensorshm.Unauthorized), (403, tensorshm.Forbidden),
    (404, tensorshm.NotFound), (405, tensorshm.MethodNotAllowed), (406, tensorshm.NotAcceptable),
    (409, tensorshm.Conflict), (410, tensorshm.Gone), (411, tensorshm.LengthRequired),
    (413, tensorshm.PayloadTooLarge), (415, tensorshm.UnsupportedMediaType), (422, tensorshm.UnprocessableEntity),
    (429, tensorshm.TooManyRequests), (418, tensorshm.ClientError), (500, tensorshm.InternalServerError),
    (502, tensorshm.BadGateway), (503, tensorshm.ServiceUnavailable), (504, tensorshm.GatewayTimeout),
    (507, tensorshm.InsufficientStorage), (599, tensorshm.ServerError),
])
def test_every_status_maps_to_a_class(stub, status, cls):
    stub.reply = error(status, f"TSHM_X{status}", f"message {status}")
    with pytest.raises(cls) as e:
        tensorshm.Client(stub.url).list()
    assert type(e.value) is cls
    assert (e.value.status, e.value.code, e.value.message) == (status, f"TSHM_X{status}", f"message {status}")
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is cls and (again.status, again.code, again.message) == (status, f"TSHM_X{status}", f"message {status}")
    assert error_for_status(status, None, "m").__class__ is cls


def test_the_api_key_is_sent_and_401_is_unauthorized(stub, monkeypatch):
    stub.reply = error(401, "TSHM_UNAUTHORIZED", "Authorization: a Bearer key is required")
    with pytest.raises(tensorshm.Unauthorized) as e:
        tensorshm.Client(stub.url).list()
    assert e.value.code == "TSHM_UNAUTHORIZED" and "authorization" not in {k.lower() for k in stub.requests[-1]["headers"]}

    stub.reply = lambda h: (200, "application/json", b'{"segments": []}')
    c = tensorshm.Client(stub.url, api_key="s3cret")
    assert c.list("a/b") == [] and "s3cret" not in repr(c)
    req = stub.requests[-1]
    assert req["headers"]["Authorization"] == "Bearer s3cret" and req["path"] == "/v1/segments?namespace=a%2Fb"

    monkeypatch.setenv("TENSORSHM_URL", stub.url)
    monkeypatch.setenv("TENSORSHM_API_KEY", "from-env")
    env = tensorshm.Client()
    assert env.url == stub.url and env.list() == []
    assert stub.requests[-1]["headers"]["Authorization"] == "Bearer from-env"
    tensorshm.Client(api_key="explicit").list()
    assert stub.requests[-1]["headers"]["Authorization"] == "Bearer explicit", "arguments win over the environment"


def test_a_non_json_error_body_still_maps(stub):
    stub.reply = lambda h: (502, "text/html", b"<html>bad gateway</html>")
    with pytest.raises(tensorshm.BadGateway) as e:
        tensorshm.Client(stub.url).health()
    assert e.value.status == 502 and e.value.code is None and "bad gateway" in e.value.message


def test_a_garbled_answer_is_a_protocol_error(stub):
    stub.reply = lambda h: (200, "application/json", b"not json")
    with pytest.raises(tensorshm.ProtocolError):
        tensorshm.Client(stub.url).health()
    stub.reply = lambda h: (200, "application/json", b"{}")
    with pytest.raises(tensorshm.ProtocolError, match="x-npz"):
        tensorshm.Client(stub.url).get({"name": "x", "shape": [1], "dtype": "uint8"})


def test_a_slow_answer_is_a_timeout(stub):
    def slow(h):
        time.sleep(2)
        return 200, "application/json", b"{}"
    stub.reply = slow
    with pytest.raises(tensorshm.Timeout) as e:
        tensorshm.Client(stub.url, timeout=0.2).health()
    assert e.value.code == "TSHM_TIMEOUT" and isinstance(e.value, tensorshm.ConnectionError)


def test_a_dropped_keep_alive_connection_is_retried(service):
    c = tensorshm.Client(service.url)
    assert c.health() == {"status": "ok"}
    c._http._local.conn.sock.shutdown(socket.SHUT_RDWR)   # as if the server had closed the idle connection
    assert c.health() == {"status": "ok"}
