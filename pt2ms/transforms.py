"""Layout transforms written in map entries, e.g. "chunk(3, 0, 1)" or "reshape(64, 32) | transpose(0, 1)".

Ops apply left to right to the PyTorch tensor and yield the MindSpore tensor:
  reshape(d0, d1, ...)   same numbers, new shape (a 1x1 conv kernel <-> a dense matrix, Conv1d's extra dim)
  transpose(a, b)        swap two dimensions (a matrix stored the other way round)
  chunk(n, dim, index)   cut into n equal pieces along dim and keep piece `index` (fused qkv -> q, k, v)
  cat(dim)               first op only, when the entry names several PyTorch tensors: join them along dim
Each op has a shape rule, so a map can be checked before any data is read.
"""

import re

import numpy as np

from .errors import Pt2MsError

_OP = re.compile(r"^\s*(reshape|transpose|chunk|cat)\s*\(([-\d,\s]*)\)\s*$")
_ARITY = {"transpose": 2, "chunk": 3, "cat": 1}


def parse(text):
    """Parse a transform string into [(op, [ints])]; raises Pt2MsError naming the bad part."""
    ops = []
    for index, part in enumerate(filter(str.strip, (text or "").split("|"))):
        match = _OP.match(part)
        if not match:
            raise Pt2MsError(f"bad transform {part.strip()!r} (ops: reshape(...), transpose(a, b), chunk(n, dim, i), cat(dim))")
        op, args = match.group(1), [int(a) for a in match.group(2).split(",") if a.strip()]
        if op in _ARITY and len(args) != _ARITY[op]:
            raise Pt2MsError(f"bad transform {part.strip()!r}: {op} takes {_ARITY[op]} numbers")
        if op == "cat" and index:
            raise Pt2MsError(f"bad transform {text!r}: cat(dim) can only come first")
        ops.append((op, args))
    return ops


def takes_a_piece(ops):
    """Whether the ops end by keeping one piece of the source, so that several entries may share it."""
    return bool(ops) and ops[-1][0] == "chunk"


def output_shape(ops, shapes):
    """Shape after applying `ops` to tensors of `shapes` (one shape unless the first op is cat)."""
    shapes = [tuple(shape) for shape in shapes]
    if ops and ops[0][0] == "cat":
        dim = ops[0][1][0]
        first = shapes[0]
        if any(len(s) != len(first) or s[:dim] + s[dim + 1:] != first[:dim] + first[dim + 1:] for s in shapes):
            raise Pt2MsError(f"cat({dim}) needs shapes equal except along dim {dim}, got {shapes}")
        shape = first[:dim] + (sum(s[dim] for s in shapes),) + first[dim + 1:]
        ops = ops[1:]
    elif len(shapes) != 1:
        raise Pt2MsError(f"{len(shapes)} PyTorch tensors need a transform starting with cat(dim)")
    else:
        shape = shapes[0]
    for op, args in ops:
        shape = _step_shape(op, args, shape)
    return shape


def _step_shape(op, args, shape):
    if op == "reshape":
        if int(np.prod(args, dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
            raise Pt2MsError(f"reshape{tuple(args)} cannot hold the {int(np.prod(shape))} values of shape {shape}")
        return tuple(args)
    if op == "transpose":
        a, b = args
        if not (-len(shape) <= a < len(shape) and -len(shape) <= b < len(shape)):
            raise Pt2MsError(f"transpose{tuple(args)} is out of range for shape {shape}")
        dims = list(shape)
        dims[a], dims[b] = dims[b], dims[a]
        return tuple(dims)
    if op == "chunk":
        pieces, dim, index = args
        if not (-len(shape) <= dim < len(shape)) or pieces <= 0 or shape[dim] % pieces or not 0 <= index < pieces:
            raise Pt2MsError(f"chunk{tuple(args)} does not fit shape {shape}")
        dims = list(shape)
        dims[dim] //= pieces
        return tuple(dims)
    raise Pt2MsError("cat can only be the first op")


def apply(ops, arrays):
    """Apply parsed ops to NumPy arrays (raw bfloat16 patterns work too: ops only move values)."""
    if ops and ops[0][0] == "cat":
        array = np.concatenate(arrays, axis=ops[0][1][0])
        ops = ops[1:]
    else:
        array = arrays[0]
    for op, args in ops:
        if op == "reshape":
            array = array.reshape(args)
        elif op == "transpose":
            array = np.swapaxes(array, *args)
        elif op == "chunk":
            pieces, dim, index = args
            array = np.split(array, pieces, axis=dim)[index]
    return np.require(array, requirements="C")


def format_ops(ops):
    return " | ".join(f"{op}({', '.join(map(str, args))})" for op, args in ops)
