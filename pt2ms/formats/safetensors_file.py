"""Safetensors files, read lazily and written one tensor at a time.

The format is an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
data_offsets}}, then the raw data. The `safetensors` library reads it well but its NumPy side has no
bfloat16, and its writers want every tensor in memory at once, so both directions are done here.
"""

import json
import math
import os
from functools import partial

import numpy as np

from pt2ms.errors import Pt2MsError
from pt2ms.formats.files import CrcWriter, atomic_open
from pt2ms.formats.tensors import NUMPY_DTYPES, LazyTensor, read_bytes

TO_SAFETENSORS = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
                  "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32",
                  "uint64": "U64", "bool": "BOOL"}
FROM_SAFETENSORS = {code: dtype for dtype, code in TO_SAFETENSORS.items()}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
MAX_DIMS = 64


def read_safetensors(path):
    """Names -> LazyTensor for a .safetensors file, in file order; the data stays on disk."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length <= 0 or 8 + length > size:
            raise Pt2MsError(f"{path}: not a safetensors file, or truncated (bad header length)")
        if length > MAX_HEADER_BYTES:
            raise Pt2MsError(f"{path}: safetensors header of {length:,} bytes, more than {MAX_HEADER_BYTES:,}: "
                             "file is corrupt")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:  # ValueError: bad JSON, 5,000-digit ints
            raise Pt2MsError(f"{path}: corrupt safetensors header ({type(error).__name__}: {str(error)[:100]})") from None
    if not isinstance(header, dict):
        raise Pt2MsError(f"{path}: corrupt safetensors header (a JSON {type(header).__name__}, not an object)")
    header.pop("__metadata__", None)
    data_start = 8 + length
    entries = [_checked_entry(path, name, entry) for name, entry in header.items()]
    tensors = {}
    for name, dtype, shape, begin, end in sorted(entries, key=lambda entry: entry[3]):
        expected = math.prod(shape) * np.dtype(NUMPY_DTYPES[dtype]).itemsize
        if end - begin != expected or data_start + end > size:
            raise Pt2MsError(f"{path}: tensor {_short(name)} data is out of bounds: file is truncated or corrupt")
        tensors[name] = LazyTensor(dtype, shape, partial(read_bytes, path, data_start + begin, dtype, shape),
                                   str(path), storage=f"{begin}")
    return tensors


def _checked_entry(path, name, entry):
    """(name, dtype, shape, begin, end) of one header entry, refusing anything of the wrong structure."""
    def natural(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not isinstance(entry, dict):
        raise Pt2MsError(f"{path}: corrupt safetensors header: entry {_short(name)} is not an object")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(map(natural, shape))):
        raise Pt2MsError(f"{path}: corrupt safetensors header: tensor {_short(name)} has shape {_short(shape)}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(natural, offsets))
            and offsets[0] <= offsets[1]):
        raise Pt2MsError(f"{path}: corrupt safetensors header: tensor {_short(name)} has data_offsets {_short(offsets)}")
    dtype = FROM_SAFETENSORS.get(entry.get("dtype")) if isinstance(entry.get("dtype"), str) else None
    if dtype is None:
        raise Pt2MsError(f"{path}: tensor {_short(name)} has unsupported dtype {_short(entry.get('dtype'))}")
    return name, dtype, tuple(shape), offsets[0], offsets[1]


def _short(value):
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def write_safetensors(path, specs, arrays, metadata=None):
    """Write tensors to `path` atomically; `specs` lists (name, dtype, shape), `arrays` yields the data in order.

    Returns the CRC-32 of the file's bytes, taken while writing them.
    """
    header, offset = {}, 0
    for name, dtype, shape in specs:
        nbytes = math.prod(shape) * np.dtype(NUMPY_DTYPES[dtype]).itemsize
        header[name] = {"dtype": TO_SAFETENSORS[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keeps the data 8-byte aligned, as the format recommends
    with atomic_open(path, "wb") as raw:
        handle = CrcWriter(raw)
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for (name, dtype, shape), array in zip(specs, arrays):
            array = np.require(array, requirements="C")
            if tuple(array.shape) != tuple(shape) or array.dtype != np.dtype(NUMPY_DTYPES[dtype]):
                raise Pt2MsError(f"{path}: internal error: {name} is {array.dtype}{array.shape}, planned {dtype}{shape}")
            handle.write(memoryview(array.reshape(-1)).cast("B"))
    return handle.crc
