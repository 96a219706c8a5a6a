"""The tensorshm client: put numpy arrays into the service's shared memory, attach them, get them back."""

from __future__ import annotations

import io
import math
import os
import re
import time
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _shm, _torch
from ._allocation import Allocation, parse_spec, wire_spec
from ._http import Transport, path_segment
from .errors import ConnectionError as Unreachable
from .errors import ProtocolError, ServiceUnavailable

__all__ = ["Client", "Attachment", "Allocation", "PutResult", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8000"
NPZ = "application/x-npz"

Descriptor = Dict[str, Any]
"""``{"name": str, "shape": [int, ...], "dtype": str, "nbytes": int}`` as the service answers it."""

# Keys the service takes as npz member names unchanged and that cannot collide with "key.0" or "__passthrough__".
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_:-]{0,127}$")


class PutResult(Dict[str, Any]):
    """What :meth:`Client.put` returns: a plain ``dict`` of descriptors and passthrough values, plus attributes.

    Attributes:
        namespace: the namespace the segments were allocated in (pass it to :meth:`Client.release`).
        expires_at: when their lease ends (ISO 8601, UTC), or ``None`` for no expiry / nothing allocated.

    It is a ``dict`` subclass, so it serialises as JSON and can be sent to :meth:`Client.get` or ``/v1/decode`` as
    it is; pickled or copied, it becomes a plain ``dict`` (the receiving process needs no tensorshm import).
    """

    namespace: str
    expires_at: Optional[str]

    def __init__(self, items: Mapping[str, Any], namespace: str, expires_at: Optional[str]) -> None:
        super().__init__(items)
        self.namespace = namespace
        self.expires_at = expires_at

    def __reduce__(self):
        return (dict, (dict(self),))

    def __copy__(self) -> Dict[str, Any]:
        return dict(self)

    def __repr__(self) -> str:
        return f"PutResult({dict.__repr__(self)}, namespace={self.namespace!r}, expires_at={self.expires_at!r})"


class Attachment:
    """A zero-copy ndarray view of one segment, mapped into this process.

    Use it as a context manager -- ``with client.attach(d) as arr:`` binds the array -- or call :meth:`close`.

    Closing never unlinks anything (the service owns the segment, and the resource tracker never hears of it) and
    is idempotent. If no view of the array is alive any more, the segment is unmapped at once; if views still are
    (``arr`` itself after a ``with`` block, slices, arrays derived with ``np.asarray``...), close does *not* raise
    and does *not* invalidate them: the mapping stays until the last view is garbage-collected, then numpy's
    reference on the mmap drops and it is unmapped. ``close()`` returns whether the memory was unmapped at once.

    A view stays valid while the service keeps the segment: after release or expiry, the file is unlinked but the
    mapped pages stay readable until unmapped. A segment truncated *after* attaching cannot be detected: reading
    past the new end kills the process with SIGBUS. The check at attach time refuses files already too short.
    """

    __slots__ = ("name", "descriptor", "_array", "_mmap", "_as_torch", "__weakref__")

    def __init__(self, descriptor: Mapping[str, Any], readonly: bool = False, as_torch: bool = False) -> None:
        self._as_torch = _torch.want_torch(as_torch)
        if self._as_torch and readonly:
            raise ValueError("attach: readonly=True and as_torch=True do not go together: torch tensors cannot be "
                             "read-only, and a write through one would crash the process with SIGSEGV")
        name, shape, dtype, nbytes = _shm.parse_descriptor(descriptor)
        self.name: str = name
        self.descriptor: Dict[str, Any] = dict(descriptor)
        self._mmap = _shm.map_segment(name, nbytes, readonly=readonly)
        try:
            self._array: Optional[np.ndarray] = _shm.ndarray_over(self._mmap, shape, dtype)
        except BaseException:
            _shm.unmap(self._mmap)
            raise

    @property
    def array(self) -> np.ndarray:
        """The view: C-order, the descriptor's shape and dtype, writable unless attached ``readonly``."""
        if self._array is None:
            raise ValueError(f"attachment of {self.name!r} is closed")
        return self._array

    @property
    def tensor(self) -> Any:
        """The view as a ``torch.Tensor`` sharing the segment's memory (``torch.from_numpy``, no copy)."""
        return _torch.from_array(self.array)

    @property
    def closed(self) -> bool:
        return self._array is None

    def close(self) -> bool:
        """Drops this attachment's view; unmaps the segment unless other views are alive (see the class doc)."""
        self._array = None
        buf, self._mmap = self._mmap, None
        return _shm.unmap(buf)

    def __enter__(self) -> Any:
        return self.tensor if self._as_torch else self.array

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"shape={tuple(self.descriptor['shape'])}, dtype={self.descriptor['dtype']}"
        return f"<tensorshm.Attachment {self.name} {state}>"


def _ttl_seconds(ttl: Optional[float], where: str) -> Optional[int]:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl < 0:
        raise ValueError(f"{where}: {ttl!r} is not a number of seconds >= 0")
    return int(math.ceil(ttl))


def _ndarray_items(value: Any, where: str) -> Optional[List[np.ndarray]]:
    """The arrays of a list/tuple of arrays or CPU tensors; None when ``value`` is not such a list (a passthrough)."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    arrays = [v for v in value if isinstance(v, np.ndarray) or _torch.is_tensor(v)]
    if not arrays:
        return None
    if len(arrays) != len(value):
        raise TypeError(f"{where}: a list mixes arrays or tensors with other values")
    return [_torch.as_array(v, f"{where}[{i}]") if _torch.is_tensor(v) else v for i, v in enumerate(arrays)]


def _gid(group: Union[int, str]) -> int:
    """A group by gid or by name, looked up here: the caller and the service share the host's groups."""
    if isinstance(group, bool) or not isinstance(group, (int, str)):
        raise TypeError(f"share_group: a group name or gid, not {type(group).__name__}")
    if isinstance(group, int):
        return group
    import grp
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"share_group: no group named {group!r}") from None


class Client:
    """A client of one tensorshm service.

    Args:
        url: the service's base URL, or ``unix:///path/to/socket`` for its Unix socket (``TENSORSHM_SOCKET``: the
            service then knows the calling user from the kernel, and segments belong to it); default
            ``$TENSORSHM_URL``, else ``http://127.0.0.1:8000``.
        api_key: sent as ``Authorization: Bearer <key>``; default ``$TENSORSHM_API_KEY``, else none.
        timeout: seconds to wait for a connection or for each read from it (``None``: wait forever).
        client_id: the first component of the namespaces :meth:`put` makes up; default a random ``py-<hex>``.

    A Client may be shared between threads (each thread keeps its own keep-alive connection) and survives a fork.
    """

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, timeout: Optional[float] = 30.0,
                 *, client_id: Optional[str] = None) -> None:
        if url is None:
            url = os.environ.get("TENSORSHM_URL") or DEFAULT_URL
        if api_key is None:
            api_key = os.environ.get("TENSORSHM_API_KEY") or None
        self.url: str = url.rstrip("/")
        self.timeout = timeout
        self.client_id: str = client_id if client_id is not None else f"py-{uuid.uuid4().hex[:12]}"
        self._http = Transport(self.url, api_key, timeout)

    def __repr__(self) -> str:
        key = ", api_key=***" if self._http.api_key else ""
        return f"Client(url={self.url!r}{key}, client_id={self.client_id!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes this thread's keep-alive connection and unmaps the kept mappings no array uses any more.

        The client stays usable (it reconnects, and maps again).
        """
        self._http.close()
        _shm.forget_mappings()

    # ------------------------------------------------------------------------------------------------ tensors

    def new_namespace(self) -> str:
        """A fresh namespace of this client: ``<client_id>/<uuid4 hex>``."""
        return f"{self.client_id}/{uuid.uuid4().hex}"

    def put(self, arrays: Mapping[str, Any], namespace: Optional[str] = None, ttl: Optional[float] = None, *,
            release_on_exit: bool = False, share_group: Optional[Union[int, str]] = None,
            share_access: str = "read") -> PutResult:
        """Copies arrays into new segments and returns their descriptors.

        Args:
            arrays: key -> ``np.ndarray`` or CPU ``torch.Tensor``, or a list/tuple of them (answered as a list of
                descriptors); any other value is kept unchanged in the result, so the result can go to :meth:`get` as it is.
                Keys of arrays must match ``[A-Za-z0-9_][A-Za-z0-9_:-]{0,127}`` (the service checks).
            namespace: where to allocate; default a new ``<client_id>/<uuid4 hex>`` (see ``result.namespace``).
            ttl: lease in seconds (rounded up; 0 = no expiry); default the service's ``TENSORSHM_DEFAULT_TTL``.
            release_on_exit: over ``unix://`` only: the service releases the namespace when this process exits.
            share_group: over ``unix://`` only: a group of this user's (a name or a gid) that may map the
                segments too; otherwise they are mode 0600, this user's alone.
            share_access: ``"read"`` (mode 0640) or ``"read-write"`` (0660) for ``share_group``.

        Returns:
            a :class:`PutResult`: ``{key: descriptor | [descriptor, ...] | passthrough value}``, in the order of
            ``arrays``, with ``.namespace`` and ``.expires_at``.

        Each array is copied in C order with its exact dtype, byte order included (non-contiguous input is fine).
        Allocation is all or nothing; if copying fails, the segments just allocated are released again.

        Raises:
            TypeError: an array's dtype cannot live in a segment (object, str, structured, datetime, float128,
                bfloat16...), a list mixes arrays with other values, or a tensor is on a GPU or not contiguous.
                Nothing is allocated then.
            BadRequest, Conflict (key already in the namespace), InsufficientStorage, ...: from the service.
        """
        if not isinstance(arrays, Mapping):
            raise TypeError(f"arrays: a dict of key -> ndarray, not {type(arrays).__name__}")
        tensors: Dict[str, Any] = {}
        sources: Dict[str, Union[np.ndarray, List[np.ndarray]]] = {}
        for key, value in arrays.items():
            if _torch.is_tensor(value):
                value = _torch.as_array(value, f"arrays[{key!r}]")
            if isinstance(value, np.ndarray):
                _shm.check_dtype(value.dtype, f"arrays[{key!r}]")
                tensors[key] = {"shape": list(value.shape), "dtype": value.dtype.str}
                sources[key] = value
                continue
            items = _ndarray_items(value, f"arrays[{key!r}]")
            if items is not None:
                for i, a in enumerate(items):
                    _shm.check_dtype(a.dtype, f"arrays[{key!r}][{i}]")
                tensors[key] = [{"shape": list(a.shape), "dtype": a.dtype.str} for a in items]
                sources[key] = items
        if not tensors:
            return PutResult(arrays, namespace if namespace is not None else self.new_namespace(), None)
        created = self._create(tensors, namespace, ttl, release_on_exit=release_on_exit, share_group=share_group,
                               share_access=share_access)
        try:
            for key, src in sources.items():
                if isinstance(src, list):
                    for i, (a, d) in enumerate(zip(src, created[key])):
                        _write(d, a, f"{key}[{i}]")
                else:
                    _write(created[key], src, key)
        except BaseException:
            self._release_quietly(created)
            raise
        result = {key: created[key] if key in created else value for key, value in arrays.items()}
        return PutResult(result, created.namespace, created.expires_at)

    def _create(self, tensors: Dict[str, Any], namespace: Optional[str], ttl: Optional[float], *,
                release_on_exit: bool = False, share_group: Optional[Union[int, str]] = None,
                share_access: str = "read") -> PutResult:
        """One ``POST /v1/segments`` (all or nothing): the descriptors, checked to match the request's keys."""
        namespace = namespace if namespace is not None else self.new_namespace()
        body: Dict[str, Any] = {"namespace": namespace, "tensors": tensors}
        ttl_seconds = _ttl_seconds(ttl, "ttl")
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        if release_on_exit:
            body["release_on_exit"] = True
        if share_group is not None:
            body["share"] = {"group": _gid(share_group), "access": share_access}
        answer = self._http.request("POST", "/v1/segments", body=body, expect=(201,)).json()
        segments = answer.get("segments") if isinstance(answer, dict) else None
        if not isinstance(segments, dict):
            raise ProtocolError("POST /v1/segments: the answer has no segments", code="TSHM_BAD_RESPONSE")
        created = PutResult(segments, answer.get("namespace", namespace), answer.get("expires_at"))
        for key, spec in tensors.items():
            got = segments.get(key)
            if isinstance(spec, list) != isinstance(got, list) or (isinstance(spec, list) and len(spec) != len(got)):
                self._release_quietly(created)
                raise ProtocolError(f"POST /v1/segments: the answer for {key!r} does not match the request",
                                    code="TSHM_BAD_RESPONSE")
        return created

    def _release_quietly(self, segments: Mapping[str, Any]) -> None:
        """Best effort, after a failure: the lease reclaims whatever this cannot release."""
        for value in segments.values():
            for d in value if isinstance(value, list) else [value]:
                try:
                    self.delete(d["name"])
                except Exception:
                    pass

    def allocate(self, specs: Mapping[str, Any], namespace: Optional[str] = None, ttl: Optional[float] = None, *,
                 release_on_exit: bool = False, share_group: Optional[Union[int, str]] = None,
                 share_access: str = "read") -> Allocation:
        """Allocates segments and maps them writable here: the zero-copy producer's path (``put`` is the copying one).

        ``with client.allocate({"img": TensorSpec((1620, 2880, 3), "uint8")}) as a:`` then render straight into
        ``a["img"]`` and hand ``a.descriptors`` to the consumer. Like Plasma's create, fill in place, seal -- minus
        the seal: the consumer may map the segment as soon as it has the descriptor.

        Args:
            specs: key -> spec, or a non-empty list/tuple of specs. A spec is a ``TensorSpec`` (this package's or
                NOS's), a mapping ``{"shape": [...], "dtype": ...}``, or an ``np.ndarray`` / CPU ``torch.Tensor``
                used as a template (its shape and dtype; its data is not copied). A torch dtype
                (``{"shape": ..., "dtype": torch.float32}``) or a torch template makes that view a ``torch.Tensor``.
            namespace, ttl, release_on_exit, share_group, share_access: as for :meth:`put`.

        Returns:
            an :class:`Allocation`: ``.arrays`` (writable views, C order; zeroed unless the service's pool hands a
            segment back before zeroing finished -- it never does across namespaces roots), ``.descriptors`` (a
            :class:`PutResult`), ``.namespace``, ``.expires_at``. Closing it unmaps; it never releases.

        Raises:
            TypeError: a spec is not one of the forms above, its dtype cannot live in a segment, a dim is not an
                integer, or a template tensor is on a GPU. ValueError: a negative or ``None`` dim. Nothing is
                allocated then. Service errors as for :meth:`put`.
        """
        if not isinstance(specs, Mapping) or not specs:
            raise TypeError(f"specs: a non-empty dict of key -> spec, not {specs!r:.80}")
        plan: Dict[str, Any] = {}
        for key, value in specs.items():
            where = f"specs[{key!r}]"
            if isinstance(value, (list, tuple)):
                if not value:
                    raise TypeError(f"{where}: an empty list allocates nothing")
                plan[key] = [parse_spec(v, f"{where}[{i}]") for i, v in enumerate(value)]
            else:
                plan[key] = parse_spec(value, where)
        tensors = {k: [wire_spec(s) for s in v] if isinstance(v, list) else wire_spec(v) for k, v in plan.items()}
        result = self._create(tensors, namespace, ttl, release_on_exit=release_on_exit, share_group=share_group,
                              share_access=share_access)
        try:
            return Allocation(result, plan)
        except BaseException:
            self._release_quietly(result)
            raise

    def attach(self, descriptor: Mapping[str, Any], *, readonly: bool = False, as_torch: bool = False) -> Attachment:
        """Maps a segment and returns an :class:`Attachment` whose ``.array`` is a zero-copy view of it.

        ``with client.attach(d) as arr:`` binds the ndarray. Writes through the view land in the segment, where
        every other process attached to it sees them. ``readonly=True`` maps it read-only (the array is not
        writeable), which needs only read permission on the file. Attaching does not talk to the service.

        Raises:
            NotFound (``status=None``): the segment is not in /dev/shm (released, expired, another host).
            SegmentTruncated (``status=None``): the file is shorter than the tensor.
            TypeError, ValueError: the descriptor is malformed or names an unsupported dtype.
        """
        return Attachment(descriptor, readonly=readonly, as_torch=as_torch)

    def get(self, descriptors: Union[Mapping[str, Any], Sequence[Mapping[str, Any]]], *, as_torch: bool = False) -> Any:
        """Copies tensors out of their segments through the service (``POST /v1/decode``, as npz).

        Args:
            descriptors: one descriptor (returns an ``np.ndarray``), a list of them (returns a list of arrays),
                or a descriptor dict such as :meth:`put` returns (returns a dict of the same keys: arrays for
                descriptors, lists of arrays for lists of descriptors, and every other value as the very object it
                was; those are not sent to the service).

        ``as_torch=True`` gives ``torch.Tensor``s instead of arrays (``torch.from_numpy`` over the copies, no second
        copy). The service checks every descriptor against its registry: an unknown name raises NotFound, a shape or
        dtype that disagrees raises UnprocessableEntity, a truncated file SegmentTruncated.
        """
        convert = _torch.from_array if _torch.want_torch(as_torch) else None
        if isinstance(descriptors, (list, tuple)) and all(_shm.is_descriptor(d) for d in descriptors):
            return self._decode({"t": [dict(d) for d in descriptors]}, convert)["t"] if descriptors else []
        if not isinstance(descriptors, Mapping):
            raise TypeError(f"get: a descriptor, a list or a dict of them, not {type(descriptors).__name__}")
        if _shm.is_descriptor(descriptors) and isinstance(descriptors.get("name"), str):
            return self._decode({"t": dict(descriptors)}, convert)["t"]
        plan: Dict[str, Tuple[str, Any]] = {}
        for key, value in descriptors.items():
            if _shm.is_descriptor(value):
                plan[key] = ("one", value)
            elif isinstance(value, (list, tuple)) and value and any(_shm.is_descriptor(v) for v in value):
                if not all(_shm.is_descriptor(v) for v in value):
                    raise TypeError(f"get: {key!r}: a list mixes descriptors with other values")
                plan[key] = ("many", list(value))
        if not plan:
            return dict(descriptors)
        # Keys go to the service unchanged when they are plain, so that its messages name them; else renamed.
        plain = all(isinstance(k, str) and _PLAIN_KEY.match(k) and k != "__passthrough__" for k in plan)
        wire = {k: (k if plain else f"t{i}") for i, k in enumerate(plan)}
        body: Dict[str, Any] = {}
        for key, (kind, value) in plan.items():
            body[wire[key]] = [dict(v) for v in value] if kind == "many" else dict(value)
        decoded = self._decode(body, convert)
        out: Dict[str, Any] = {}
        for key, value in descriptors.items():
            if key in plan:
                out[key] = decoded[wire[key]]
            else:
                out[key] = value
        return out

    def _decode(self, body: Dict[str, Any], convert: Any = None) -> Dict[str, Any]:
        res = self._http.request("POST", "/v1/decode", body=body, accept=NPZ)
        ctype = res.headers.get("content-type", "")
        if not ctype.startswith(NPZ):
            raise ProtocolError(f"POST /v1/decode answered {ctype or 'no content type'}, not {NPZ}",
                                status=res.status, code="TSHM_BAD_RESPONSE")
        try:
            with np.load(io.BytesIO(res.body), allow_pickle=False) as z:
                out: Dict[str, Any] = {}
                for key, value in body.items():
                    out[key] = [z[f"{key}.{i}"] for i in range(len(value))] if isinstance(value, list) else z[key]
        except (ValueError, KeyError, OSError) as e:
            raise ProtocolError(f"POST /v1/decode: the npz answer cannot be read: {e}",
                                status=res.status, code="TSHM_BAD_RESPONSE") from e
        if convert is not None:
            out = {k: [convert(a) for a in v] if isinstance(v, list) else convert(v) for k, v in out.items()}
        return out

    # ------------------------------------------------------------------------------------------------ lifecycle

    def release(self, namespace: Union[str, PutResult]) -> int:
        """Releases every segment of ``namespace`` and of its sub-namespaces (``ns/...``, never ``nsx``).

        Accepts a namespace or a :class:`PutResult`. Returns how many segments were released (0 if none).
        """
        ns = namespace.namespace if isinstance(namespace, PutResult) else namespace
        answer = self._http.request("DELETE", "/v1/segments", query={"namespace": _namespace(ns)}).json()
        return int(answer["released"])

    def renew(self, namespace: Union[str, PutResult], ttl: Optional[float] = None) -> Dict[str, Any]:
        """Extends the lease of every segment of ``namespace`` and its sub-namespaces to ``ttl`` seconds from now.

        Returns ``{namespace, renewed, expires_at}`` (``renewed`` is a count; 0 when the namespace has none).
        """
        ns = namespace.namespace if isinstance(namespace, PutResult) else namespace
        body: Dict[str, Any] = {"namespace": _namespace(ns)}
        ttl_seconds = _ttl_seconds(ttl, "ttl")
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        return self._http.request("POST", "/v1/renew", body=body).json()

    def delete(self, name: str) -> None:
        """Releases one segment by name. Raises NotFound if the service has none of that name."""
        self._http.request("DELETE", "/v1/segments/" + path_segment(name), expect=(204,))

    def list(self, namespace: Optional[str] = None) -> List[Dict[str, Any]]:
        """The segments of ``namespace`` and its sub-namespaces (all this key may see, without one)."""
        query = {"namespace": _namespace(namespace)} if namespace is not None else None
        return self._http.request("GET", "/v1/segments", query=query).json()["segments"]

    def info(self, name: str) -> Dict[str, Any]:
        """One segment: its descriptor, namespace, key, lease and whether its file is ``present``."""
        return self._http.request("GET", "/v1/segments/" + path_segment(name)).json()

    def stats(self) -> Dict[str, Any]:
        """The service's counters (``GET /v1/stats``)."""
        return self._http.request("GET", "/v1/stats").json()

    def health(self) -> Dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok"}`` while the process runs. Raises ConnectionError when unreachable."""
        return self._http.request("GET", "/healthz").json()

    def ready(self) -> bool:
        """Whether ``GET /readyz`` answers 200: False while the service shuts down or cannot be reached."""
        try:
            self._http.request("GET", "/readyz")
            return True
        except (ServiceUnavailable, Unreachable):
            return False

    def wait(self, timeout: float = 30.0, interval: float = 0.1) -> Client:
        """Polls ``/readyz`` until the service is ready and returns the client; raises ConnectionError after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() >= deadline:
                raise Unreachable(f"{self.url} was not ready within {timeout} s", code="TSHM_UNREACHABLE")
            time.sleep(interval)
        return self


def _namespace(namespace: Any) -> str:
    if not isinstance(namespace, str) or not namespace:
        raise TypeError(f"namespace: a non-empty str, not {namespace!r}")
    return namespace


def _write(descriptor: Any, src: np.ndarray, where: str) -> None:
    """Copies ``src`` into the segment of ``descriptor`` (C order, same dtype: a byte-exact copy)."""
    name, shape, dtype, nbytes = _shm.parse_descriptor(descriptor, where)
    if shape != src.shape or dtype != src.dtype:
        raise ProtocolError(f"{where}: the service answered shape {list(shape)} {dtype} for a {list(src.shape)} "
                            f"{src.dtype} array", code="TSHM_BAD_RESPONSE")
    buf = _shm.map_segment(name, nbytes)
    try:
        dst = _shm.ndarray_over(buf, shape, dtype)
        np.copyto(dst, src, casting="no")
        del dst
    finally:
        _shm.unmap(buf)
