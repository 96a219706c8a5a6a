"""``SharedMemoryDataDict``: NOS's encode/decode of input dicts whose tensors travel as shared-memory references."""

from __future__ import annotations

import _codecs
import builtins
import io
import pickle
from typing import Any, Dict, Mapping, Optional

import numpy as np

from .. import _shm
from ..client import Client
from ._object import SharedMemoryNumpyObject

#: The pickle protocol encode writes: NOS's cloudpickle writes the highest, 5; the service reads 2-5.
PROTOCOL = 5


class _Reference:
    """What NOS's class unpickles to in :func:`restricted_loads`: its state, kept, nothing attached yet."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data and NOS's one class, as the service's reader does; every other global is refused.

    Allowed: ``nos.common.shm.SharedMemoryNumpyObject`` (read as a reference, never attached here), and what
    protocol 2 needs for bytes (``_codecs.encode``, ``bytes``, ``bytearray``). dict, list, tuple, str, int,
    float, bool, None, bytes and sets come from opcodes, not globals. No code runs.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("nos.common.shm", "SharedMemoryNumpyObject"):
            return _Reference
        if (module, name) == ("_codecs", "encode"):
            return _codecs.encode
        if module in ("builtins", "__builtin__") and name in ("bytes", "bytearray"):
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f'pickle: refused global "{module}.{name}"')


def restricted_loads(data: bytes) -> Any:
    """``pickle.loads`` with :class:`RestrictedUnpickler`: NOS's references come back as ``_Reference``."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def _looks_like_pickle(value: Any) -> bool:
    """PROTO 2-5 first, STOP last: a per-key pickle, told apart from plain bytes the way the service does."""
    return isinstance(value, (bytes, bytearray)) and len(value) >= 3 and value[0] == 0x80 and 2 <= value[1] <= 5 \
        and value[-1] == 0x2E


class SharedMemoryDataDict:
    """NOS's ``SharedMemoryDataDict``: ``encode`` a dict for transport, ``decode`` it back into numpy arrays."""

    @staticmethod
    def encode(data: Dict[str, Any], protocol: int = PROTOCOL) -> bytes:
        """Pickles the whole dict (NOS's encode): tensors as ``SharedMemoryNumpyObject`` references, by name."""
        return pickle.dumps(data, protocol=protocol)

    @staticmethod
    def decode(data: Any, client: Optional[Client] = None) -> Dict[str, Any]:
        """The dict with every shared-memory reference replaced by a copy of its tensor.

        Args:
            data: NOS's per-key form ``{key: pickle.dumps(value)}`` (what NOS's client sends; values that are not
                pickles stay as they are), the whole dict pickled (what :meth:`encode` returns), or a dict that
                holds ``SharedMemoryNumpyObject`` s already.
            client: ``None`` copies locally (attach read-only, copy, unmap: no round trip), trusting the names as
                NOS does; a :class:`Client` copies through the service's ``POST /v1/decode``, which checks every
                reference against its registry (an unknown name is NotFound, a shape or dtype that disagrees
                UnprocessableEntity): use it for descriptors from callers you do not trust.

        Lists of references come back as lists of arrays. Pickles are read with :class:`RestrictedUnpickler`:
        a global other than NOS's class and plain data raises ``pickle.UnpicklingError`` naming it. Nothing is
        unlinked and the resource tracker never hears of a segment, so the process may exit without cleanup.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = restricted_loads(bytes(data))
        if not isinstance(data, Mapping):
            raise TypeError(f"decode: a dict (or a pickled dict), not {type(data).__name__}")
        values = {k: restricted_loads(bytes(v)) if _looks_like_pickle(v) else v for k, v in data.items()}
        refs: Dict[str, Any] = {}
        for key, value in values.items():
            if _is_ref(value):
                refs[key] = _descriptor(value, key)
            elif isinstance(value, list) and value and all(_is_ref(v) for v in value):
                refs[key] = [_descriptor(v, f"{key}[{i}]") for i, v in enumerate(value)]
            elif _holds_ref(value):
                raise TypeError(f"decode: {key!r}: a shared-memory reference can be a value or a list of them, "
                                "not mixed with other values or nested deeper (NOS's decode does not reach it either)")
        arrays = client.get(refs) if client is not None and refs else {k: _copy(v) for k, v in refs.items()}
        return {k: arrays[k] if k in refs else v for k, v in values.items()}


def _is_ref(value: Any) -> bool:
    return isinstance(value, (_Reference, SharedMemoryNumpyObject))


def _holds_ref(value: Any, depth: int = 0) -> bool:
    if _is_ref(value):
        return True
    if depth > 100:  # deeper than any real input; a pickle can nest far, and this must not blow the stack
        return False
    if isinstance(value, dict):
        return any(_holds_ref(k, depth + 1) or _holds_ref(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_ref(v, depth + 1) for v in value)
    return False


def _descriptor(value: Any, where: str) -> Dict[str, Any]:
    state = value.state if isinstance(value, _Reference) else value.__getstate__()
    if not isinstance(state, dict):
        raise TypeError(f"decode: {where}: a SharedMemoryNumpyObject state is a dict, not {type(state).__name__}")
    name, shape, dtype, nbytes = _shm.parse_descriptor(state, f"decode: {where}")
    return {"name": name, "shape": list(shape), "dtype": str(dtype), "nbytes": nbytes}


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    name, shape, dtype, nbytes = _shm.parse_descriptor(value)
    buf = _shm.map_segment(name, nbytes, readonly=True)
    try:
        view = _shm.ndarray_over(buf, shape, dtype)
        out = np.array(view, copy=True)
        del view
        return out
    finally:
        _shm.unmap(buf)
