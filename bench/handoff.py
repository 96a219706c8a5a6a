"""Benchmark 3: one 2880x1620x3 uint8 image handed from a producer process to a consumer process.

By reference: the producer ``Client.put``s it (POST /v1/segments, then a copy into the mapped segment) and sends
the descriptor through a pipe; the consumer ``attach``es it and copies it out (``np.array(view)``).
By value: the producer allocates the same segment (POST /v1/segments, the same client code path), uploads the
bytes (PUT .../data, octet-stream) and sends the descriptor; the consumer downloads them (GET .../data) straight
into a numpy array. Both then release the namespace (outside the timed window) and the producer waits for that.

Zero copy: the producer ``Client.allocate``s the segment (POST /v1/segments, mapped writable in the producer),
renders into the view -- here it writes the two marker pixels, the part of a frame that changes -- and sends the
descriptor; the consumer ``attach``es it read-only and reads the markers from the view itself, copying nothing.
Zero copy, full frame (for information): the same, with the producer writing all 13.3 MiB into the view (what a
renderer that produces every pixel costs on top).

End to end = from the producer's start to the moment the consumer holds its copy (or, zero copy, has read the
view), on CLOCK_MONOTONIC (shared by both processes). The paths alternate, iteration by iteration. Prints one JSON
line.

    python3 bench/handoff.py --url http://127.0.0.1:8000 [--iters 50] [--warmup 10]
    python3 bench/handoff.py --url unix:///path/to/tensorshm.sock ...   (the same over the Unix socket)
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import time
from urllib.parse import urlsplit

import numpy as np

from tensorshm import Client

SHAPE = (2880, 1620, 3)
CLIENT_ID = "bench-py"


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Raw:
    """A keep-alive http.client connection for the data route: bodies go out and come in without extra copies."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            from tensorshm._http import UnixHTTPConnection
            self.conn: http.client.HTTPConnection = UnixHTTPConnection(parts.path, 60)
        else:
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def put(self, name: str, arr: np.ndarray) -> None:
        body = memoryview(arr).cast("B")
        self.conn.request("PUT", f"/v1/segments/{name}/data", body=body,
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(arr.nbytes)})
        res = self.conn.getresponse()
        res.read()
        if res.status != 204:
            raise RuntimeError(f"PUT data: HTTP {res.status}")

    def get(self, name: str, shape, dtype) -> np.ndarray:
        self.conn.request("GET", f"/v1/segments/{name}/data", headers={"Accept": "application/octet-stream"})
        res = self.conn.getresponse()
        if res.status != 200:
            raise RuntimeError(f"GET data: HTTP {res.status} {res.read()[:200]!r}")
        out = np.empty(shape, dtype)
        view = memoryview(out).cast("B")
        got = 0
        while got < out.nbytes:
            n = res.readinto(view[got:])
            if not n:
                raise RuntimeError(f"GET data: body ended after {got} of {out.nbytes} bytes")
            got += n
        res.read()
        return out


def consumer(conn, url: str) -> None:
    client = Client(url, client_id=CLIENT_ID)
    raw = Raw(url)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        mode, t0, sent, desc, ns, marks = msg
        t_recv = now_ns()
        if mode in ("zero", "zero_full"):
            att = client.attach(desc, readonly=True)
            view = att.array
            ok = int(view[0, 0, 0]) == marks[0] and int(view[-1, -1, -1]) == marks[1] and view.shape == SHAPE
            del view
            att.close()
            t1 = now_ns()
            client.release(ns)
            conn.send((t1 - t0, sent - t0, t1 - t_recv, ok))
            continue
        if mode == "ref":
            att = client.attach(desc, readonly=True)
            out = np.array(att.array)
            att.close()
        else:
            out = raw.get(desc["name"], tuple(desc["shape"]), np.dtype(desc["dtype"]))
        t1 = now_ns()
        ok = int(out[0, 0, 0]) == marks[0] and int(out[-1, -1, -1]) == marks[1] and out.shape == SHAPE
        del out
        client.release(ns)
        conn.send((t1 - t0, sent - t0, t1 - t_recv, ok))
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()

    ctx = mp.get_context("fork")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=consumer, args=(there, args.url), daemon=True)
    proc.start()
    client = Client(args.url, client_id=CLIENT_ID)
    raw = Raw(args.url)
    img = np.random.default_rng(7).integers(0, 256, size=SHAPE, dtype=np.uint8)
    modes = ("ref", "value", "zero", "zero_full")
    out = {m: [] for m in modes}
    spec = {"shape": list(SHAPE), "dtype": "uint8"}
    bad = 0
    try:
        for i in range(len(modes) * (args.warmup + args.iters)):
            mode = modes[i % len(modes)]
            ns = f"{CLIENT_ID}/obj-{i}"
            marks = (i % 256, (i * 7 + 3) % 256)
            img[0, 0, 0], img[-1, -1, -1] = marks
            t0 = now_ns()
            if mode == "ref":
                desc = dict(client.put({"img": img}, namespace=ns)["img"])
            elif mode in ("zero", "zero_full"):
                with client.allocate({"img": spec}, namespace=ns) as a:
                    view = a["img"]
                    if mode == "zero_full":
                        np.copyto(view, img)  # stands for a renderer that writes every pixel
                    view[0, 0, 0], view[-1, -1, -1] = marks
                    del view
                    desc = dict(a.descriptors["img"])
            else:
                spec = {"shape": list(img.shape), "dtype": img.dtype.str}
                answer = client._http.request("POST", "/v1/segments", body={"namespace": ns, "tensors": {"img": spec}},
                                              expect=(201,)).json()
                desc = answer["segments"]["img"]
                raw.put(desc["name"], img)
            sent = now_ns()
            here.send((mode, t0, sent, desc, ns, marks))
            total, producer, consumer_part, ok = here.recv()
            bad += 0 if ok else 1
            if i >= len(modes) * args.warmup:
                out[mode].append({"total": total / 1e6, "producer": producer / 1e6, "consumer": consumer_part / 1e6})
    finally:
        here.send(None)
        proc.join(10)
    print(json.dumps({"shape": SHAPE, "nbytes": int(img.nbytes), "iters": args.iters, "warmup": args.warmup,
                      "bad_copies": bad, "samples": out}))


if __name__ == "__main__":
    main()
