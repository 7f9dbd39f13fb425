"""Layout transforms written in map entries, e.g. "chunk(3, 0, 1)" or "cat(0) | interleave(2, 0, 16, 8, 8)".

Ops apply left to right to the PyTorch tensor and yield the MindSpore tensor:
  reshape(d0, d1, ...)   same numbers, new shape (a 1x1 conv kernel <-> a dense matrix, Conv1d's extra dim)
  transpose(a, b)        swap two dimensions (a matrix stored the other way round)
  chunk(n, dim, index)   cut into n equal pieces along dim and keep piece `index` (fused qkv -> q, k, v)
  slice(dim, start, stop)  keep rows start:stop along dim (one fused conv -> parameters of unequal height)
  interleave(groups, dim, size0, size1, ...)
                         the tensor is pieces of heights size0, size1, ... one after another along dim; cut
                         each into `groups` equal parts and lay them out part by part: part 0 of every piece,
                         then part 1 of every piece, ... (mindformers' fused q/k/v per key/value group, and its
                         gate/up row by row)
  cat(dim)               first op only, when the entry names several PyTorch tensors: join them along dim

Worked example, grouped-query attention with 4 query heads and 2 key/value heads of 4 rows each: q (16 rows),
k (8), v (8). "cat(0)" stacks them [q0..q15, k0..k7, v0..v7]; "cat(0) | interleave(2, 0, 16, 8, 8)" gives
[q0..q7, k0..k3, v0..v3, q8..q15, k4..k7, v4..v7]: group 0's two query heads, its key, its value, then group 1.
Gate/up of 40 rows each, row by row: "cat(0) | interleave(40, 0, 40, 40)" gives [g0, u0, g1, u1, ...].

Each op has a shape rule, so a map can be checked before any data is read, and an inverse, so stage 3's
--reverse can rebuild the PyTorch tensor: reshape and transpose undo themselves, interleave is undone by
de-interleaving, and pieces (chunk, slice) and joins (cat) are put back together by pt2ms.stages.reverse.
"""

import re
from dataclasses import dataclass

import numpy as np

from pt2ms.errors import Pt2MsError

_OP = re.compile(r"^\s*([a-z]+)\s*\(([-\d,\s]*)\)\s*$")


def _norm_dim(dim, shape, text):
    if not -len(shape) <= dim < len(shape):
        raise Pt2MsError(f"{text} is out of range for shape {shape}")
    return dim % len(shape)


def _reshape_shape(args, shape, text):
    if int(np.prod(args, dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
        raise Pt2MsError(f"{text} cannot hold the {int(np.prod(shape))} values of shape {shape}")
    return tuple(args)


def _transpose_shape(args, shape, text):
    a, b = (_norm_dim(dim, shape, text) for dim in args)
    dims = list(shape)
    dims[a], dims[b] = dims[b], dims[a]
    return tuple(dims)


def _chunk_shape(args, shape, text):
    pieces, dim, index = args
    if not (-len(shape) <= dim < len(shape)) or pieces <= 0 or shape[dim] % pieces or not 0 <= index < pieces:
        raise Pt2MsError(f"{text} does not fit shape {shape}")
    dims = list(shape)
    dims[dim] //= pieces
    return tuple(dims)


def _slice_shape(args, shape, text):
    dim, start, stop = args
    dim = _norm_dim(dim, shape, text)
    if not 0 <= start < stop <= shape[dim]:
        raise Pt2MsError(f"{text} does not fit shape {shape}: rows {start}:{stop} of {shape[dim]}")
    dims = list(shape)
    dims[dim] = stop - start
    return tuple(dims)


def _interleave_shape(args, shape, text):
    groups, dim, sizes = args[0], args[1], args[2:]
    dim = _norm_dim(dim, shape, text)
    if groups <= 0 or not sizes or any(size <= 0 or size % groups for size in sizes):
        raise Pt2MsError(f"{text}: every piece size must be a positive multiple of the {groups} groups")
    if sum(sizes) != shape[dim]:
        raise Pt2MsError(f"{text} does not fit shape {shape}: pieces sum to {sum(sizes)}, dim {dim} holds {shape[dim]}")
    return tuple(shape)


def _interleave(array, args, undo=False):
    """Lay pieces out group by group (or, undoing, gather each piece's groups back together)."""
    groups, dim, sizes = args[0], args[1] % array.ndim, args[2:]
    moved = np.moveaxis(array, dim, 0)
    rest = moved.shape[1:]
    if undo:
        blocks = moved.reshape((groups, -1) + rest)               # one block per group: its part of each piece
        parts = np.split(blocks, np.cumsum([s // groups for s in sizes])[:-1], axis=1)
        moved = np.concatenate([part.reshape((-1,) + rest) for part in parts], axis=0)
    else:
        pieces = np.split(moved, np.cumsum(sizes)[:-1], axis=0)
        parts = [piece.reshape((groups, -1) + rest) for piece in pieces]
        moved = np.concatenate(parts, axis=1).reshape(moved.shape)
    return np.moveaxis(moved, 0, dim)


def _slice(array, args):
    dim, start, stop = args
    index = [slice(None)] * array.ndim
    index[dim] = slice(start, stop)
    return array[tuple(index)]


@dataclass(frozen=True)
class Op:
    """One op: how many numbers it takes (None: any, at least `least`), its shape rule, data rule and inverse."""
    arity: int | None
    shape: object          # (args, shape, text) -> shape after the op; raises Pt2MsError when it does not fit
    apply: object          # (array, args) -> array
    undo: object = None    # (array, args, shape before) -> array; None: a piece (chunk, slice), joined by reverse
    least: int = 0
    usage: str = ""


OPS = {
    "reshape": Op(None, _reshape_shape, lambda a, args: a.reshape(args), lambda a, args, before: a.reshape(before),
                  least=1, usage="reshape(d0, d1, ...)"),
    "transpose": Op(2, _transpose_shape, lambda a, args: np.swapaxes(a, *args),
                    lambda a, args, before: np.swapaxes(a, *args), usage="transpose(a, b)"),
    "chunk": Op(3, _chunk_shape, lambda a, args: np.split(a, args[0], axis=args[1])[args[2]], usage="chunk(n, dim, i)"),
    "slice": Op(3, _slice_shape, lambda a, args: _slice(a, [args[0] % a.ndim, args[1], args[2]]),
                usage="slice(dim, start, stop)"),
    "interleave": Op(None, _interleave_shape, _interleave, lambda a, args, before: _interleave(a, args, undo=True),
                     least=3, usage="interleave(groups, dim, size0, size1, ...)"),
    "cat": Op(1, None, None, usage="cat(dim)"),
}
PIECES = ("chunk", "slice")     # ops that keep one part of their source
LAYOUT = ("chunk", "slice", "cat", "interleave")  # ops after which a layer's output is not its partner's, 1:1


def _usage():
    return ", ".join(op.usage for op in OPS.values())


def parse(text):
    """Parse a transform string into [(op, [ints])]; raises Pt2MsError naming the bad part."""
    ops = []
    for index, part in enumerate(filter(str.strip, (text or "").split("|"))):
        match = _OP.match(part)
        if not match or match.group(1) not in OPS:
            raise Pt2MsError(f"bad transform {part.strip()!r} (ops: {_usage()})")
        name, spec = match.group(1), OPS[match.group(1)]
        try:
            args = [int(a) for a in match.group(2).split(",") if a.strip()]
        except ValueError:
            raise Pt2MsError(f"bad transform {part.strip()!r} (ops: {_usage()})") from None
        if (spec.arity is not None and len(args) != spec.arity) or len(args) < spec.least:
            wanted = spec.arity if spec.arity is not None else f"at least {spec.least}"
            raise Pt2MsError(f"bad transform {part.strip()!r}: {name} takes {wanted} numbers ({spec.usage})")
        if name == "cat" and index:
            raise Pt2MsError(f"bad transform {text!r}: cat(dim) can only come first")
        ops.append((name, args))
    return ops


def takes_a_piece(ops):
    """Whether the ops end by keeping one piece of the source, so that several entries may share it."""
    return bool(ops) and ops[-1][0] in PIECES


def changes_layout(ops):
    """Whether a layer fed through these ops computes a piece, a join or a reordering of its partner's output."""
    return any(op in LAYOUT for op, _ in ops)


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
        shape = step_shape(op, args, shape)
    return shape


def step_shape(op, args, shape):
    """Shape after one op (not cat)."""
    if op == "cat":
        raise Pt2MsError("cat can only be the first op")
    return OPS[op].shape(args, tuple(shape), f"{op}{tuple(args)}")


def apply(ops, arrays):
    """Apply parsed ops to NumPy arrays (raw bfloat16 patterns work too: ops only move values)."""
    if ops and ops[0][0] == "cat":
        array = np.concatenate(arrays, axis=ops[0][1][0])
        ops = ops[1:]
    else:
        array = arrays[0]
    for op, args in ops:
        array = OPS[op].apply(array, args)
    return np.require(array, requirements="C")


def undo(op, args, array, shape_before):
    """Run one op backwards: the array it was made from (shape `shape_before`); not for pieces or cat."""
    return OPS[op].undo(array, args, tuple(shape_before))


def format_ops(ops):
    return " | ".join(f"{op}({', '.join(map(str, args))})" for op, args in ops)
