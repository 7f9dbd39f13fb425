"""Lazy tensors: a name's dtype and shape now, its data only when asked for.

Data comes back as a NumPy array. NumPy has no bfloat16, so bfloat16 data travels as its raw 16-bit
patterns in a uint16 array, tagged "bfloat16"; every reader and writer here keeps that convention.
"""

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pt2ms.errors import Pt2MsError

NUMPY_DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16, "bfloat16": np.uint16,
    "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
    "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64, "bool": np.bool_,
}
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")


@dataclass
class LazyTensor:
    dtype: str                         # a key of NUMPY_DTYPES
    shape: tuple
    load: Callable[[], np.ndarray]     # reads the data from disk
    source: str = ""                   # file it lives in, for messages
    storage: str = ""                  # storage identity within the file: equal for tied tensors

    @property
    def numel(self):
        return math.prod(self.shape)  # exact: a corrupt [2**32, 2**32] must not wrap around to 0

    @property
    def nbytes(self):
        return self.numel * np.dtype(NUMPY_DTYPES[self.dtype]).itemsize

    def read(self):
        """Read the data as a NumPy array of this tensor's shape."""
        return self.load()


def from_numpy(array, dtype=None, source=""):
    """Wrap an in-memory array as a LazyTensor."""
    array = np.asarray(array)
    return LazyTensor(dtype or str(array.dtype), tuple(array.shape), lambda: array, source)


def read_bytes(path, offset, dtype, shape):
    """Read one contiguous tensor from `path` at byte `offset` into a fresh array."""
    array = np.empty(shape, dtype=NUMPY_DTYPES[dtype])
    with open(path, "rb") as handle:
        handle.seek(offset)
        got = handle.readinto(memoryview(array.reshape(-1)).cast("B"))
    if got != array.nbytes:
        raise Pt2MsError(f"{path}: file is truncated (a tensor needs {array.nbytes} bytes at offset {offset}, "
                         f"only {got} are there)")
    return array


# Both conversions work on a flat copy: NumPy turns 0-d arrays into scalars of a wider type under arithmetic.
def bfloat16_to_float32(bits):
    """Widen raw bfloat16 patterns to float32 exactly."""
    bits = np.asarray(bits)
    return (bits.reshape(-1).astype(np.uint32) << 16).view(np.float32).reshape(bits.shape)


def float32_to_bfloat16(values):
    """Round float32 values to the nearest bfloat16 (ties to even), returned as raw patterns."""
    values = np.asarray(values, dtype=np.float32)
    bits = np.ascontiguousarray(values.reshape(-1)).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    out = (rounded >> 16).astype(np.uint16)
    out[np.isnan(values.reshape(-1))] = 0x7FC0
    return out.reshape(values.shape)


def count_nonfinite(array, dtype, chunk=1 << 24):
    """How many NaN/Inf values a float tensor holds (0 for integer data); bfloat16 is checked on its bits."""
    if dtype not in FLOAT_DTYPES:
        return 0
    flat, bad = array.reshape(-1), 0
    for start in range(0, flat.size, chunk):  # in pieces: the temporaries stay small beside a multi-GB tensor
        piece = flat[start:start + chunk]
        bad += int(np.count_nonzero((piece & 0x7F80) == 0x7F80 if dtype == "bfloat16" else ~np.isfinite(piece)))
    return bad


def as_float(array, dtype):
    """A float view of the data for statistics (bfloat16 widened), or None for integer data."""
    if dtype == "bfloat16":
        return bfloat16_to_float32(array)
    return array if dtype in FLOAT_DTYPES else None


def cast(array, from_dtype, to_dtype):
    """Cast data between dtypes; returns (array, number of finite values that overflowed to inf)."""
    if from_dtype == to_dtype:
        return array, 0
    values = as_float(array, from_dtype)
    if values is None:
        values = array
    with np.errstate(over="ignore", invalid="ignore"):
        if to_dtype == "bfloat16":
            out = float32_to_bfloat16(values.astype(np.float32))
            widened = bfloat16_to_float32(out)
        else:
            out = values.astype(NUMPY_DTYPES[to_dtype])
            widened = out
    overflow = 0
    if to_dtype in FLOAT_DTYPES and np.issubdtype(np.asarray(values).dtype, np.floating):
        overflow = int(np.count_nonzero(np.isinf(widened) & np.isfinite(values)))
    return out, overflow
