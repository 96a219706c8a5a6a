"""Mapping the service's segments into this process, without Python's resource tracker.

``multiprocessing.shared_memory.SharedMemory(name=...)`` registers every segment it attaches with the resource
tracker, which unlinks them all when the process exits (CPython gh-82300) -- it would delete the service's
segments under every other client. Python 3.13 added ``track=False``; before that the usual fix is
``resource_tracker.unregister`` right after attaching, which still leaves a window (a process killed between the
two calls loses the segment) and makes the tracker print a KeyError when two threads attach the same name.

This module therefore opens segments the way ``SharedMemory`` does (``shm_open``), but never registers them:
``shm_open`` -> ``os.fstat`` (refusing a file shorter than the tensor) -> ``mmap`` -> close the descriptor. The
tracker never hears of the segment, on every Python version, so it can never unlink it.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import NotFound, SegmentTruncated

try:  # CPython's own binding, used by multiprocessing.shared_memory on POSIX
    import _posixshmem  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - non-CPython or a build without it: Linux keeps POSIX shm in /dev/shm
    _posixshmem = None

SHM_DIR = "/dev/shm"

#: The dtypes the service stores: numpy kinds and item sizes.
_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16)}
SUPPORTED = "bool, int8-int64, uint8-uint64, float16/32/64, complex64/128 (either byte order)"


def check_dtype(dtype: np.dtype, where: str) -> np.dtype:
    """Returns ``dtype`` if a segment can hold it, else raises TypeError naming ``where``.

    Object, string, structured, datetime and extended-precision dtypes are refused here, before anything is
    allocated: their bytes mean nothing in another process (object arrays hold pointers) or the service refuses
    them. Mapping an object dtype over shared memory would let numpy dereference arbitrary bytes.
    """
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in _SIZES or dtype.itemsize not in _SIZES[dtype.kind]:
        raise TypeError(f"{where}: dtype {dtype.str!r} ({dtype}) cannot live in a tensorshm segment; supported: {SUPPORTED}")
    return dtype


def parse_descriptor(descriptor: Any, where: str = "descriptor") -> Tuple[str, Tuple[int, ...], np.dtype, int]:
    """Checks a descriptor ``{name, shape, dtype[, nbytes]}``: returns name, shape, dtype and the tensor's bytes."""
    if not is_descriptor(descriptor):
        raise TypeError(f"{where}: a descriptor is a dict with name, shape and dtype, not {type(descriptor).__name__}")
    name = descriptor["name"]
    if not isinstance(name, str) or not name or "/" in name or "\0" in name or len(name) > 255:
        raise ValueError(f"{where}.name: {name!r} is not a segment name")
    raw_shape = descriptor["shape"]
    if isinstance(raw_shape, (str, bytes)) or not isinstance(raw_shape, Sequence):
        raise ValueError(f"{where}.shape: {raw_shape!r} is not a list of integers")
    shape = []
    for i, d in enumerate(raw_shape):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"{where}.shape[{i}]: {d!r} is not a non-negative integer")
        shape.append(int(d))
    if not isinstance(descriptor["dtype"], str):  # np.dtype(None) would be float64, np.dtype([...]) a record
        raise TypeError(f"{where}.dtype: {descriptor['dtype']!r} is not a dtype string")
    try:
        dtype = np.dtype(descriptor["dtype"])
    except TypeError as e:
        raise TypeError(f"{where}.dtype: {descriptor['dtype']!r} is not a numpy dtype") from e
    check_dtype(dtype, f"{where}.dtype")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    given = descriptor.get("nbytes")
    if given is not None and given != nbytes:
        raise ValueError(f"{where}.nbytes: {given!r}, but shape {shape} of {dtype} takes {nbytes} bytes")
    return name, tuple(shape), dtype, nbytes


def is_descriptor(value: Any) -> bool:
    """Whether ``value`` is a descriptor as the service reads them: a mapping with name, shape and dtype."""
    return isinstance(value, Mapping) and "name" in value and "shape" in value and "dtype" in value


def _open(name: str, readonly: bool) -> int:
    flags = os.O_RDONLY if readonly else os.O_RDWR
    if _posixshmem is not None:
        return _posixshmem.shm_open("/" + name, flags, mode=0o600)
    return os.open(os.path.join(SHM_DIR, name), flags | getattr(os, "O_CLOEXEC", 0))  # pragma: no cover


class _MappingCache:
    """Mappings kept per file (device and inode), so that a segment the service recycles comes back mapped.

    The service hands a released segment back to the same client, under a new name, for its next allocation of
    the same size. Mapping it afresh costs a page fault per 4 KiB on first touch (about 3400 for one 2880x1620x3
    image, most of the copy's time); a kept mapping has its pages in place. Identity is the inode, checked with
    fstat on every use, never the name: while a mapping is kept it pins its inode, so no other file can take that
    number. Bounded in count and in idle time; a kept mapping of a released segment holds its memory until it is
    evicted, which is why the bounds are small.
    """

    def __init__(self, entries: int = 8, idle: float = 30.0) -> None:
        self.entries = entries
        self.idle = idle
        self._maps: "OrderedDict[Tuple[int, int, int, bool], Tuple[mmap.mmap, float]]" = OrderedDict()
        self._kept: set = set()
        self._lock = threading.Lock()

    def get(self, key: Tuple[int, int, int, bool]) -> Optional[mmap.mmap]:
        with self._lock:
            self._expire()
            hit = self._maps.get(key)
            if hit is None or hit[0].closed:
                return None
            self._maps[key] = (hit[0], time.monotonic())
            self._maps.move_to_end(key)
            return hit[0]

    def put(self, key: Tuple[int, int, int, bool], buf: mmap.mmap) -> None:
        if self.entries <= 0:
            return
        with self._lock:
            self._maps[key] = (buf, time.monotonic())
            self._kept.add(id(buf))
            while len(self._maps) > self.entries:
                self._evict(next(iter(self._maps)))

    def holds(self, buf: mmap.mmap) -> bool:
        with self._lock:
            return id(buf) in self._kept

    def clear(self) -> None:
        with self._lock:
            for key in list(self._maps):
                self._evict(key)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, used) in self._maps.items() if now - used > self.idle]:
            self._evict(key)

    def _evict(self, key: Tuple[int, int, int, bool]) -> None:
        buf, _ = self._maps.pop(key)
        self._kept.discard(id(buf))
        _close(buf)


#: One per process; TENSORSHM_MAP_CACHE=0 turns it off.
_cache = _MappingCache(entries=int(os.environ.get("TENSORSHM_MAP_CACHE", "8")))

#: madvise(MADV_POPULATE_WRITE), Linux 5.14+: fault a fresh writable mapping's pages in with one call.
_MADV_POPULATE_WRITE = 23


def map_segment(name: str, nbytes: int, readonly: bool = False) -> mmap.mmap:
    """Maps ``nbytes`` of segment ``name`` (at least one byte: a zero-size tensor has a one-byte file).

    Raises:
        NotFound: no such segment in /dev/shm (released, expired, or on another host or IPC namespace).
        SegmentTruncated: the file is shorter than ``nbytes``; mapping it would SIGBUS on access past its end.
    """
    try:
        fd = _open(name, readonly)
    except FileNotFoundError:
        raise NotFound(f"segment {name!r} does not exist in {SHM_DIR}: it was released or expired, "
                       "or lives in another IPC namespace", code="TSHM_SEGMENT_NOT_FOUND") from None
    try:
        st = os.fstat(fd)
        length = max(nbytes, 1)
        if st.st_size < length:
            raise SegmentTruncated(f"segment {name!r} is {st.st_size} bytes long but its tensor needs {length}: "
                                   "someone truncated it", code="TSHM_SEGMENT_TRUNCATED")
        key = (st.st_dev, st.st_ino, length, readonly)
        kept = _cache.get(key)
        if kept is not None:
            return kept
        access = mmap.ACCESS_READ if readonly else mmap.ACCESS_WRITE
        try:
            buf = mmap.mmap(fd, length, access=access)
        except OSError as e:  # pragma: no cover - e.g. ENOMEM
            if e.errno == errno.EINVAL:
                raise SegmentTruncated(f"segment {name!r} cannot be mapped: {e}", code="TSHM_SEGMENT_TRUNCATED") from e
            raise
    finally:
        os.close(fd)  # mmap keeps its own duplicate
    if not readonly:
        try:
            buf.madvise(_MADV_POPULATE_WRITE)
        except (OSError, ValueError):  # pragma: no cover - an older kernel: pages fault in on first touch instead
            pass
    _cache.put(key, buf)
    return buf


def forget_mappings() -> None:
    """Unmaps every kept mapping that no array still uses (Client.close calls it)."""
    _cache.clear()


def ndarray_over(buf: mmap.mmap, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-order ndarray over the start of ``buf`` that pins the mapping while it (or any view of it) lives.

    ``np.ndarray(shape, dtype, buffer=mm)`` would keep a reference to the mmap but no buffer export on it, so
    ``mm.close()`` would succeed under a live array and leave it pointing at unmapped memory (a segfault on
    access). ``np.frombuffer`` over a memoryview keeps the memoryview in the array's base chain, and the
    memoryview holds an export on the mmap: ``mm.close()`` then raises BufferError for as long as any view lives.
    Read-only mappings give read-only arrays.
    """
    count = 1
    for dim in shape:
        count *= dim
    return np.frombuffer(memoryview(buf), dtype=dtype, count=count).reshape(shape)


def unmap(buf: Optional[mmap.mmap]) -> bool:
    """Lets go of ``buf``: a kept mapping stays for reuse; any other is closed if no ndarray still exports it.

    Returns whether this process is done with it. While views made by :func:`ndarray_over` are alive,
    ``mmap.close`` raises BufferError: then the mapping is left to them, and it is unmapped when the last of them
    is garbage-collected (their base chain holds the memoryview, which holds the mmap).
    """
    if buf is None or buf.closed or _cache.holds(buf):
        return True
    return _close(buf)


def _close(buf: mmap.mmap) -> bool:
    try:
        buf.close()
        return True
    except BufferError:
        return False
