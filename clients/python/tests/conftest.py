"""Starts a real tensorshm service for the session: ``node dist/src/server.js`` from the repository root.

The service gets a free port, a segment prefix of its own (``pyt_<6 hex>_``), a temporary state directory and a
fast sweeper. At the end it is stopped with SIGTERM and must exit 0 having left no segment with the prefix in
/dev/shm (any such file fails the session and is removed).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

try:
    import tensorshm
except ImportError:  # not installed: test the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import tensorshm

REPO = Path(__file__).resolve().parent / ".." / ".." / ".."
SERVER = REPO / "dist" / "src" / "server.js"
SHM = Path("/dev/shm")


@dataclass
class Service:
    url: str
    prefix: str
    process: subprocess.Popen

    def files(self) -> list:
        return sorted(p.name for p in SHM.iterdir() if p.name.startswith(self.prefix))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Polls ``predicate`` until it returns something truthy; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def run_service(**extra_env: str) -> Iterator[Service]:
    """Runs a service until the generator is closed, then stops it and checks its exit and /dev/shm."""
    if not SERVER.is_file():
        pytest.fail(f"{SERVER.resolve()} is missing: run npm run build first", pytrace=False)
    prefix = f"pyt_{secrets.token_hex(3)}_"
    port = _free_port()
    state = tempfile.TemporaryDirectory(prefix="tensorshm-pytest-")
    log = tempfile.TemporaryFile()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSORSHM_")}  # hermetic: no stray settings
    env.update(TENSORSHM_PORT=str(port), TENSORSHM_HOST="127.0.0.1", TENSORSHM_SEGMENT_PREFIX=prefix,
               TENSORSHM_STATE_DIR=state.name, TENSORSHM_SWEEP_INTERVAL="0.2", TENSORSHM_LOG_LEVEL="warn")
    env.update(extra_env)
    proc = subprocess.Popen(["node", str(SERVER)], cwd=str(REPO), env=env, stdout=log, stderr=subprocess.STDOUT)
    svc = Service(f"http://127.0.0.1:{port}", prefix, proc)

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")[-4000:]

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"the service exited with {proc.returncode} at start:\n{output()}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{svc.url}/healthz", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    started = False
    try:
        wait_until(healthy, timeout=60, what="the service's /healthz")
        started = True
        yield svc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        leftovers = svc.files()
        for name in leftovers:
            (SHM / name).unlink(missing_ok=True)
        state.cleanup()
        text = output()
        log.close()
        if started:  # (a failed start has already failed the session with the service's output)
            assert proc.returncode == 0, f"the service exited with {proc.returncode} on SIGTERM:\n{text}"
            assert not leftovers, f"segments left in /dev/shm after shutdown (removed now): {leftovers}"


@pytest.fixture(scope="session")
def service() -> Iterator[Service]:
    """The service most tests share: no API keys."""
    yield from run_service()


@pytest.fixture(autouse=True)
def _no_client_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("TENSORSHM_URL", raising=False)
    monkeypatch.delenv("TENSORSHM_API_KEY", raising=False)


@pytest.fixture()
def client(service: Service) -> Iterator["tensorshm.Client"]:
    with tensorshm.Client(service.url, timeout=30) as c:
        yield c


@pytest.fixture()
def python_env() -> dict:
    """The environment for a child Python that must import the same tensorshm as this one."""
    src = str(Path(tensorshm.__file__).resolve().parent.parent)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))


@pytest.fixture()
def torch():
    """The real torch. CI installs it (scripts/install-test-deps.sh), so its absence fails the test instead of
    skipping it quietly; ``TENSORSHM_SKIP_TORCH=1`` skips on purpose."""
    try:
        import torch as module
    except ImportError:
        if os.environ.get("TENSORSHM_SKIP_TORCH") == "1":
            pytest.skip("TENSORSHM_SKIP_TORCH=1")
        pytest.fail("torch is not installed: run scripts/install-test-deps.sh (or set TENSORSHM_SKIP_TORCH=1)",
                    pytrace=False)
    return module


def run_python(code: str, stdin: Any, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs ``code`` in a new Python process with ``stdin`` as JSON; fails the test if it fails."""
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(stdin), text=True, capture_output=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"child python exited {proc.returncode}:\n{proc.stderr}", pytrace=False)
    return proc
