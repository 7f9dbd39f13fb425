"""MindSpore .ckpt files, read lazily and written one tensor at a time, without importing MindSpore.

A .ckpt is a protobuf stream (mindspore/train/checkpoint_pb2.py):
  Checkpoint  { repeated Value value = 1; }
  Value       { required string tag = 1; TensorProto tensor = 2; MapTensorProto maptensor = 3; }
  TensorProto { repeated int64 dims = 1; required string tensor_type = 2; required bytes tensor_content = 3; }
A repeated field may be written one element at a time, so we write each tensor as one Value as soon as it
is converted. MindSpore splits tensors over 512 MB into several Values with the same tag; we do the same,
and join them back when reading.
"""

import os
from functools import partial

import numpy as np

from pt2ms.errors import Pt2MsError
from pt2ms.formats.files import CrcWriter, atomic_open
from pt2ms.formats.tensors import NUMPY_DTYPES, LazyTensor, read_bytes

TO_MS_TYPE = {"float64": "Float64", "float32": "Float32", "float16": "Float16", "bfloat16": "BFloat16",
              "int64": "Int64", "int32": "Int32", "int16": "Int16", "int8": "Int8", "uint8": "UInt8",
              "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64", "bool": "Bool"}
FROM_MS_TYPE = {code: dtype for dtype, code in TO_MS_TYPE.items()}
SLICE_BYTES = 512 * 1024 * 1024
MAX_DIMS = 64
MAX_TEXT_BYTES = 1 << 20  # a tag or dtype name longer than this is damage, not a parameter name


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, wire_type):
    return _varint(number << 3 | wire_type)


def _value_header(name, dtype, shape, content_length):
    """Encode a Value up to (not including) its tensor_content bytes."""
    dims = b"".join(_field(1, 0) + _varint(dim) for dim in shape)
    type_name = TO_MS_TYPE[dtype].encode()
    tensor_head = dims + _field(2, 2) + _varint(len(type_name)) + type_name + _field(3, 2) + _varint(content_length)
    tag = name.encode()
    tensor_length = len(tensor_head) + content_length
    value_head = _field(1, 2) + _varint(len(tag)) + tag + _field(2, 2) + _varint(tensor_length) + tensor_head
    return _field(1, 2) + _varint(len(value_head) + content_length) + value_head


def write_ckpt(path, specs, arrays):
    """Write tensors to a .ckpt atomically; `specs` lists (name, dtype, shape), `arrays` yields data in order.

    Returns the CRC-32 of the file's bytes, taken while writing them.
    """
    with atomic_open(path, "wb") as raw:
        handle = CrcWriter(raw)
        for (name, dtype, shape), array in zip(specs, arrays):
            array = np.require(array, requirements="C")
            if tuple(array.shape) != tuple(shape) or array.dtype != np.dtype(NUMPY_DTYPES[dtype]):
                raise Pt2MsError(f"{path}: internal error: {name} is {array.dtype}{array.shape}, planned {dtype}{shape}")
            data = memoryview(array.reshape(-1)).cast("B")
            step = SLICE_BYTES - SLICE_BYTES % array.itemsize
            for start in range(0, max(len(data), 1), step):
                piece = data[start:start + step]
                handle.write(_value_header(name, dtype, shape, len(piece)))
                handle.write(piece)
    return handle.crc


class _Reader:
    """Minimal protobuf field reader over a file, seeking past the bytes it does not need."""

    def __init__(self, handle, path):
        self.handle, self.path = handle, path

    def varint(self):
        shift = result = 0
        while True:
            byte = self.handle.read(1)
            if not byte:
                raise Pt2MsError(f"{self.path}: truncated MindSpore checkpoint")
            result |= (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                return result
            if shift > 63:
                raise Pt2MsError(f"{self.path}: corrupt MindSpore checkpoint (bad varint)")

    def key(self):
        key = self.varint()
        return key >> 3, key & 7

    def length(self, end, cap=None):
        """A length prefix, refused unless its bytes lie inside the enclosing message (and under `cap`)."""
        length = self.varint()
        if self.handle.tell() + length > end or (cap is not None and length > cap):
            raise Pt2MsError(f"{self.path}: corrupt MindSpore checkpoint (a field of {length:,} bytes near byte "
                             f"{self.handle.tell()} runs past its message)")
        return length

    def text(self, end):
        return self.handle.read(self.length(end, MAX_TEXT_BYTES)).decode("utf-8", "replace")

    def skip(self, wire_type, end):
        if wire_type == 0:
            self.varint()
        elif wire_type == 2:
            self.handle.seek(self.length(end), os.SEEK_CUR)
        else:
            raise Pt2MsError(f"{self.path}: corrupt MindSpore checkpoint (unexpected wire type {wire_type}); "
                             "is it encrypted, or not a .ckpt?")


def _read_tensor_proto(reader, end):
    dims, type_name, content = [], None, None
    while reader.handle.tell() < end:
        number, wire_type = reader.key()
        if number == 1 and wire_type == 0:
            dims.append(reader.varint())
        elif number == 1 and wire_type == 2:  # packed dims
            stop = reader.length(end) + reader.handle.tell()
            while reader.handle.tell() < stop:
                dims.append(reader.varint())
        elif number == 2 and wire_type == 2:
            type_name = reader.text(end)
        elif number == 3 and wire_type == 2:
            length = reader.length(end)
            content = (reader.handle.tell(), length)
            reader.handle.seek(length, os.SEEK_CUR)
        else:
            reader.skip(wire_type, end)
        if len(dims) > MAX_DIMS:
            raise Pt2MsError(f"{reader.path}: corrupt MindSpore checkpoint (a tensor with over {MAX_DIMS} dimensions)")
    return dims, type_name, content


def _scan(path):
    """Yield (tag, dims, type name, [(offset, length)]) for each tensor Value in the file."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        reader = _Reader(handle, path)
        while handle.tell() < size:
            number, wire_type = reader.key()
            if number != 1 or wire_type != 2:
                raise Pt2MsError(f"{path}: not a MindSpore checkpoint (or encrypted, or corrupt)")
            end = reader.varint() + handle.tell()
            if end > size:
                raise Pt2MsError(f"{path}: truncated MindSpore checkpoint")
            tag, tensor = None, None
            while handle.tell() < end:
                field, field_type = reader.key()
                if field == 1 and field_type == 2:
                    tag = reader.text(end)
                elif field == 2 and field_type == 2:
                    tensor = _read_tensor_proto(reader, reader.length(end) + handle.tell())
                else:
                    reader.skip(field_type, end)
            if handle.tell() != end or tag is None:
                raise Pt2MsError(f"{path}: corrupt MindSpore checkpoint near byte {end}")
            if tensor is not None and tensor[2] is not None:
                yield tag, tensor[0], tensor[1], tensor[2]


def read_ckpt(path):
    """Names -> LazyTensor for a MindSpore .ckpt, in file order; the data stays on disk."""
    pieces, meta = {}, {}
    for tag, dims, type_name, content in _scan(path):
        dtype = FROM_MS_TYPE.get(type_name)
        if dtype is None:
            continue  # strings and packed int4 are MindSpore bookkeeping, never model weights
        pieces.setdefault(tag, []).append(content)
        meta[tag] = (dtype, tuple(dims) if dims != [0] else ())
    tensors = {}
    for tag, parts in pieces.items():
        dtype, shape = meta[tag]
        tensor = LazyTensor(dtype, shape, partial(_read_parts, path, parts, dtype, shape), str(path), storage=tag)
        if sum(length for _, length in parts) != tensor.nbytes:
            raise Pt2MsError(f"{path}: tensor {tag[:100]!r} holds {sum(l for _, l in parts)} bytes, "
                             f"its shape {shape} needs {tensor.nbytes}: file is corrupt")
        tensors[tag] = tensor
    return tensors


def _read_parts(path, parts, dtype, shape):
    if len(parts) == 1:
        return read_bytes(path, parts[0][0], dtype, shape)
    itemsize = np.dtype(NUMPY_DTYPES[dtype]).itemsize
    return np.concatenate([read_bytes(path, offset, dtype, (length // itemsize,)) for offset, length in parts]).reshape(shape)
