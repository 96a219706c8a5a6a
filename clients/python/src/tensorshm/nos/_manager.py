"""``SharedMemoryTransportManager``: NOS's create / copy / cleanup, with the service owning every segment."""

from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional

import numpy as np

from .. import _torch
from ..client import Client
from ..errors import Conflict
from ._object import MismatchError, SharedMemoryNumpyObject
from ._spec import TensorSpec, is_spec


class TransportMismatch(ValueError, AssertionError):
    """``copy``'s inputs do not fit its segments (empty, a key missing, another list length). Also an
    AssertionError, which is what NOS raises."""


def _release_all(client: Client, where: Dict[str, str]) -> None:
    """Releases every namespace still held; runs at garbage collection or interpreter exit, so it never raises."""
    for namespace in sorted(set(where.values())):
        try:
            client.release(namespace)
        except Exception:  # the service may be gone; its leases reclaim what is left
            pass
    where.clear()


def _covers(prefix: str, namespace: str) -> bool:
    """``a`` covers ``a`` and ``a/x``, never ``ab`` (NOS's ``startswith`` frees ``ab`` with ``a``)."""
    return namespace == prefix or namespace.startswith(prefix + "/")


class SharedMemoryTransportManager:
    """NOS's manager of the segments a server hands its clients, backed by the tensorshm service.

    Args:
        client: the :class:`tensorshm.Client` to allocate with; default ``Client()`` (``$TENSORSHM_URL``).
        ttl: lease of the segments it creates, in seconds; default the service's (``TENSORSHM_DEFAULT_TTL``).

    What differs from NOS: the service creates the segments (mode and owner by its configuration, never 0666 and
    uid 1000), each under a lease that reclaims it if nobody releases it; ``cleanup`` frees on ``/`` boundaries;
    and the allocation-rate warning is the service's (``tensorshm_allocation_rate_exceeded_total`` and its log),
    computed over every client instead of per manager. What the manager still holds is released when it is
    garbage-collected or the interpreter exits.
    """

    def __init__(self, client: Optional[Client] = None, *, ttl: Optional[float] = None) -> None:
        self._client = client if client is not None else Client()
        self._ttl = ttl
        self._objects_map: Dict[str, Any] = {}
        #: full key ("<namespace>/<key>", NOS's) -> the service namespace its segments live in
        self._where: Dict[str, str] = {}
        #: NOS's default namespace is "", which the service has no room for: one of this manager's own instead
        self._default_namespace = self._client.new_namespace()
        self._finalizer = weakref.finalize(self, _release_all, self._client, self._where)

    def create(self, data: Dict[str, Any], namespace: Optional[str] = None) -> Dict[str, Any]:
        """Allocates a segment for every ``TensorSpec`` value of ``data`` (and for each of a list of them).

        All in one request, all or nothing. Other values are skipped, as NOS does. Returns ``{key: object | [...]}``
        without the namespace in the keys; the manager keeps them as ``"<namespace>/<key>"``.

        Raises:
            tensorshm.Conflict: a key already created in that namespace (by this manager, or anyone, per the service).
            TypeError, ValueError: a spec a segment cannot hold. Service errors (BadRequest for a namespace the
                service refuses, InsufficientStorage, ...).
        """
        prefix = namespace or ""
        tensors: Dict[str, Any] = {}
        for key, value in data.items():
            full_key = f"{prefix}/{key}"
            if full_key in self._objects_map:
                raise Conflict(f"Shared memory segment {full_key} already exists.", code="TSHM_DUPLICATE_KEY")
            if is_spec(value):
                tensors[key] = _wire(TensorSpec.of(value, f"data[{key!r}]"))
            elif isinstance(value, (list, tuple)) and value and all(is_spec(v) for v in value):
                tensors[key] = [_wire(TensorSpec.of(v, f"data[{key!r}][{i}]")) for i, v in enumerate(value)]
        if not tensors:
            return {}
        service_namespace = namespace if namespace else self._default_namespace
        created = self._client._create(tensors, service_namespace, self._ttl)
        try:
            objects = {k: [SharedMemoryNumpyObject._writer(d, self._client) for d in v] if isinstance(v, list)
                       else SharedMemoryNumpyObject._writer(v, self._client) for k, v in created.items()}
        except BaseException:
            self._client._release_quietly(created)
            raise
        for key, value in objects.items():
            self._objects_map[f"{prefix}/{key}"] = value
            self._where[f"{prefix}/{key}"] = service_namespace
        return objects

    def cleanup(self, namespace: Optional[str] = None) -> None:
        """Releases, through the service, what this manager holds in ``namespace`` and below (all without one).

        ``/`` boundaries: ``cleanup("a")`` frees what it holds in ``a`` and ``a/x``, never ``ab``. One request per
        namespace it allocated in (fewer when one covers another); the service releases such a namespace whole,
        its sub-namespaces included, so another client's ``a/y`` goes too only if this manager allocated in ``a``.
        """
        if namespace:
            keys = [k for k in self._objects_map if _covers(namespace, k.rsplit("/", 1)[0])]
        else:
            keys = list(self._objects_map)
        # Only the namespaces this manager allocated in (each covering its own sub-namespaces), never a wider
        # one: cleanup("a") must not take what another client holds in "a/..." that this manager never made.
        used = sorted(set(self._where[k] for k in keys))
        targets = [ns for ns in used if not any(_covers(other, ns) for other in used if other != ns)]
        for target in targets:
            self._client.release(target)
        for key in keys:
            for obj in _flat(self._objects_map.pop(key)):
                obj.close()
            self._where.pop(key, None)

    def __del__(self) -> None:
        finalizer = getattr(self, "_finalizer", None)  # absent when __init__ failed (a bad URL, say)
        if finalizer is not None:
            finalizer()

    @staticmethod
    def copy(shm_map: Dict[str, Any], data: Dict[str, Any]) -> Dict[str, Any]:
        """Copies ``data``'s arrays (or CPU tensors, or lists of them) into ``shm_map``'s segments, in place.

        Returns ``data`` with those values replaced by their ``SharedMemoryNumpyObject`` s, ready to pickle.

        Raises:
            TransportMismatch (a ValueError and an AssertionError): an empty map or dict, a key of the map missing
                from ``data``, a list of another length. MismatchError: another shape or dtype. ValueError: a
                value that is neither an array nor a list of them.
        """
        if len(shm_map) == 0:
            raise TransportMismatch("Shared memory segments should not be empty.")
        if len(data) == 0:
            raise TransportMismatch("Data dict should not be empty.")
        for key in shm_map:
            if key not in data:
                raise TransportMismatch(f"Key {key} not found in data dict.")
            value, target = data[key], shm_map[key]
            if isinstance(value, list):
                if not isinstance(target, list) or len(value) != len(target):
                    length = len(target) if isinstance(target, list) else 1
                    raise TransportMismatch(f"Shared memory already initialized with length={length}, provided "
                                            f"input with length={len(value)}.")
                for item, shm in zip(value, target):
                    shm.copy_from(item)
            elif isinstance(value, np.ndarray) or _torch.is_tensor(value):
                if isinstance(target, list):
                    raise MismatchError(f"Key {key}: one array for a list of {len(target)} segments")
                target.copy_from(value)
            else:
                raise ValueError(f"Unsupported type [type={type(value)}]")
            data[key] = target
        return data


def _wire(spec: TensorSpec) -> Dict[str, Any]:
    return {"shape": list(spec.shape), "dtype": spec.dtype}


def _flat(value: Any) -> List[SharedMemoryNumpyObject]:
    return list(value) if isinstance(value, list) else [value]
