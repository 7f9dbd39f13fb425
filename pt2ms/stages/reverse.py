"""Stage 3 backwards: a MindSpore checkpoint back to a PyTorch state dict, through the same map inverted.

Each map entry says how a MindSpore tensor was made from PyTorch tensors; here its ops run backwards:
reshape returns to the shape before it, transpose(a, b) undoes itself, interleave is de-interleaved, the
chunk(n, dim, i) pieces and the slice(dim, start, stop) rows of one fused tensor are joined back in order,
and a cat(dim) entry is split back into its sources. PyTorch
names, shapes and order come from stage 1's torch_params.csv; dtypes are the MindSpore checkpoint's.

Whether every PyTorch tensor can be rebuilt is decided before any data is read (a dry run over names,
shapes and dtypes). A .safetensors output is then written one tensor at a time; a .pth needs the whole
dict in memory, because torch.save takes a dict. Either is read back and checked, as stage 3 does.
"""

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import check_written, checksum, open_ms_checkpoint, open_torch_checkpoint
from pt2ms.formats.files import atomic_open
from pt2ms.formats.inventory import read_inventory
from pt2ms.formats.safetensors_file import write_safetensors
from pt2ms.formats.shards import converted_outputs, is_index, read_shards
from pt2ms.mapping import transforms
from pt2ms.mapping.mapfile import parse_value, read_map, shape_after

FORMATS = ("pth", "safetensors")


@dataclass
class Route:
    """One map entry seen from its sources: the MindSpore tensor it made and the ops after any cat."""
    ms_name: str
    ops: list


@dataclass
class Root:
    """What a group of entries was made from: one PyTorch tensor, or several joined by cat(dim)."""
    sources: tuple
    cat_dim: int | None
    shape: tuple
    source_shapes: list
    routes: list = field(default_factory=list)


class _Rebuilder:
    """Runs routes backwards. Dry, it only says whether a value can be rebuilt and with which dtype."""

    def __init__(self, ms_tensors, dry):
        self.ms_tensors, self.dry = ms_tensors, dry
        self.gaps, self.disagree = [], []

    def read(self, ms_name):
        tensor = self.ms_tensors.get(ms_name)
        if tensor is None:
            self.gaps.append(f"the MindSpore checkpoint lacks {ms_name!r}")
            return None
        return (None if self.dry else tensor.read()), tensor.dtype

    def rebuild(self, routes, depth, shape):
        """(array, dtype) of `shape` that the routes share up to `depth` ops, or None if they cannot make it."""
        result = label = None
        for way_label, make in self._ways(routes, depth, shape):
            value = make()
            if value is None:
                continue
            if result is None:
                result, label = value, way_label
                if self.dry:
                    break
            elif value[1] != result[1] or not _same_bits(value[0], result[0]):
                # Tied copies that drifted apart (trained separately in MindSpore): keep the first, say so.
                self.disagree.append((label, way_label))
        return result

    def _ways(self, routes, depth, shape):
        """Yield (label, thunk) for each independent way of rebuilding the value at `depth`."""
        branches = {}
        for route in routes:
            if len(route.ops) == depth:
                yield route.ms_name, lambda name=route.ms_name: self.read(name)
            else:
                op, args = route.ops[depth]
                branches.setdefault(_piece_key(op, args), []).append(route)  # pieces of one split go together
        for group in branches.values():
            op, args = group[0].ops[depth]
            if op == "chunk":
                yield group[0].ms_name, lambda group=group, args=args: self._join(group, depth, shape, args)
            elif op == "slice":
                yield group[0].ms_name, lambda group=group, args=args: self._join_slices(group, depth, shape, args[0])
            else:
                yield group[0].ms_name, lambda group=group, op=op, args=args: self._undo(group, depth, shape, op, args)

    def _undo(self, group, depth, shape, op, args):
        after = transforms.output_shape([(op, args)], [shape])
        value = self.rebuild(group, depth + 1, after)
        if value is None or value[0] is None:
            return value
        array, dtype = value
        return transforms.undo(op, args, array, shape), dtype

    def _join(self, group, depth, shape, args):
        pieces_count, dim = args[0], args[1]
        piece_shape = transforms.output_shape([("chunk", [pieces_count, dim, 0])], [shape])
        pieces = []
        for index in range(pieces_count):
            routes = [route for route in group if route.ops[depth][1][2] == index]
            piece = self.rebuild(routes, depth + 1, piece_shape) if routes else None
            if piece is None:
                self.gaps.append(f"no entry gives piece {index} of chunk({pieces_count}, {dim}) "
                                 f"(from {group[0].ms_name!r} on)")
                return None
            pieces.append(piece)
        dtypes = sorted({dtype for _, dtype in pieces})
        if len(dtypes) > 1:
            raise Pt2MsError(f"the chunk pieces {[route.ms_name for route in group]} have different dtypes {dtypes}; "
                             "they cannot be joined back into one PyTorch tensor")
        if self.dry:
            return None, dtypes[0]
        return np.concatenate([array for array, _ in pieces], axis=dim), dtypes[0]

    def _join_slices(self, group, depth, shape, dim):
        """Rows start:stop of one tensor, put back in order; they must cover it exactly, as an uneven split does."""
        dim %= len(shape)
        ranges = sorted({tuple(route.ops[depth][1][1:]) for route in group})
        pieces, at = [], 0
        for start, stop in ranges:
            if start != at:
                continue  # a range overlapping one already used: a second reading of the same rows
            piece_shape = transforms.step_shape("slice", [dim, start, stop], shape)
            routes = [route for route in group if tuple(route.ops[depth][1][1:]) == (start, stop)]
            piece = self.rebuild(routes, depth + 1, piece_shape)
            if piece is None:
                return None
            pieces.append(piece)
            at = stop
        if at != shape[dim]:
            self.gaps.append(f"no entry gives rows {at}:{shape[dim]} along dim {dim} (slices from {group[0].ms_name!r} on)")
            return None
        dtypes = sorted({dtype for _, dtype in pieces})
        if len(dtypes) > 1:
            raise Pt2MsError(f"the slices {[route.ms_name for route in group]} have different dtypes {dtypes}; "
                             "they cannot be joined back into one PyTorch tensor")
        if self.dry:
            return None, dtypes[0]
        return np.concatenate([array for array, _ in pieces], axis=dim), dtypes[0]


def _piece_key(op, args):
    """Routes whose next op takes a piece of the same split share a key: chunk by (n, dim), slice by dim."""
    if op == "chunk":
        return (op, *args[:2])
    if op == "slice":
        return (op, args[0])
    return (op, *args)


def _same_bits(first, second):
    """Equal shapes and bytes (NaN payloads and -0.0 included, unlike ==)."""
    def as_bytes(array):
        return np.require(array, requirements="C").reshape(-1).view(np.uint8)

    return first.shape == second.shape and np.array_equal(as_bytes(first), as_bytes(second))


def _roots(map_data, map_path, torch_rows, ms_tensors):
    """Group the map's entries by what they were made from; checks names and shapes against both sides."""
    torch_shapes = {row.name: tuple(row.shape) for row in torch_rows}
    roots = {}
    for ms_name, value in map_data["map"].items():
        entry = parse_value(value, ms_name, map_path)
        if not entry.torch_names:
            continue
        missing = [name for name in entry.torch_names if name not in torch_shapes]
        if missing:
            raise Pt2MsError(f"{map_path}: entry {ms_name!r} reads {missing[0]!r}, which stage 1's torch_params.csv "
                             "lacks (rerun stage 1 for this checkpoint)")
        ops = transforms.parse(entry.transform)
        shapes = [torch_shapes[name] for name in entry.torch_names]
        try:
            ms_shape = shape_after(ops, shapes)
        except Pt2MsError as error:
            raise Pt2MsError(f"{map_path}: entry {ms_name!r}: {error}") from None
        if ms_name in ms_tensors and tuple(ms_tensors[ms_name].shape) != tuple(ms_shape):
            raise Pt2MsError(f"{map_path}: shape mismatch for {ms_name!r}: the MindSpore checkpoint holds "
                             f"{list(ms_tensors[ms_name].shape)}, the map makes {list(ms_shape)} from PyTorch "
                             + " + ".join(f"{name} {list(torch_shapes[name])}" for name in entry.torch_names))
        cat_dim = ops[0][1][0] if ops and ops[0][0] == "cat" else None
        root_shape = transforms.output_shape(ops[:1], shapes) if cat_dim is not None else shapes[0]
        key = (tuple(entry.torch_names), cat_dim)
        if key not in roots:
            roots[key] = Root(key[0], cat_dim, tuple(root_shape), shapes)
        roots[key].routes.append(Route(ms_name, ops[1:] if cat_dim is not None else ops))
    return list(roots.values())


def _split(root, array):
    """A root's value as {PyTorch name: array}: the whole value, or its cat split back into the sources."""
    if root.cat_dim is None:
        return {root.sources[0]: array}
    sizes = [shape[root.cat_dim] for shape in root.source_shapes]
    pieces = np.split(array, np.cumsum(sizes)[:-1], axis=root.cat_dim)
    return dict(zip(root.sources, pieces))


def _choose(torch_rows, roots, ms_tensors, ignored_torch):
    """Dry run: for each PyTorch tensor, the root that rebuilds it and its dtype; and why the others cannot."""
    chosen, missing = {}, {}
    for row in torch_rows:
        reasons = []
        for root in (root for root in roots if row.name in root.sources):
            rebuilder = _Rebuilder(ms_tensors, dry=True)
            value = rebuilder.rebuild(root.routes, 0, root.shape)
            if value is not None:
                chosen[row.name] = (root, value[1])
                break
            reasons += rebuilder.gaps
        else:
            if row.name not in ignored_torch:
                missing[row.name] = "; ".join(dict.fromkeys(reasons)) or "no map entry reads it"
    return chosen, missing


def _produce(torch_rows, chosen, ms_tensors, stats):
    """Yield each rebuilt PyTorch tensor's data in stage 1's order; records checksums in stats."""
    rebuilder = _Rebuilder(ms_tensors, dry=False)
    stats["disagree"] = rebuilder.disagree  # the writer's zip may never resume us after the last tensor
    waiting = {}  # the other sources of a cat root already rebuilt, until their turn comes
    rows = [row for row in torch_rows if row.name in chosen]
    for row in tqdm(rows, desc="reversing", unit="tensor", leave=False, disable=None):
        root, _ = chosen[row.name]
        if row.name not in waiting:
            array, _ = rebuilder.rebuild(root.routes, 0, root.shape)
            waiting.update({name: piece for name, piece in _split(root, array).items()
                            if name in chosen and chosen[name][0] is root})
        array = np.require(waiting.pop(row.name), requirements="C")
        stats["crc"][row.name] = checksum(array)
        stats["bytes"] += array.nbytes
        yield array


def _to_torch(array, dtype):
    import torch

    if dtype == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _write_pth(path, specs, arrays, torch_rows):
    """torch.save a dict of torch tensors; names stage 1 saw sharing storage share it again if still equal."""
    import torch

    tied_to = {row.name: row.tied_to for row in torch_rows if row.tied_to}
    state, raw = {}, {}
    for (name, dtype, _), array in zip(specs, arrays):
        owner = tied_to.get(name)
        if owner in state and raw[owner][0] == dtype and _same_bits(raw[owner][1], array):
            state[name] = state[owner]
        else:
            state[name] = _to_torch(array, dtype)
        raw[name] = (dtype, array)
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)


def _default_source(config):
    """Stage 3's output, the newest of <name>.ckpt, <name>.safetensors and the shards' index."""
    found = converted_outputs(config.output_dir, config.name)
    if found:
        return max(found, key=lambda path: path.stat().st_mtime_ns)
    raise Pt2MsError(f"{config.output_dir}: no {config.name}.ckpt or {config.name}.safetensors to reverse; "
                     "run stage 3 first or name the MindSpore checkpoint")


def reverse(config, source=None, output_format="pth", output=None):
    """MindSpore checkpoint -> PyTorch state dict through the inverted map; returns a summary dict."""
    started = time.perf_counter()
    if output_format not in FORMATS:
        raise Pt2MsError(f"unknown output format {output_format!r} for the reverse direction (use pth or safetensors)")
    source = source or _default_source(config)
    map_data = read_map(config.map_path)
    torch_rows = read_inventory(config.output_dir / "torch_params.csv")
    ms_tensors = read_shards(source) if is_index(source) else open_ms_checkpoint(source)
    roots = _roots(map_data, config.map_path, torch_rows, ms_tensors)
    ignored_torch = set(map_data.get("ignored", {}).get("torch", {}))
    chosen, missing = _choose(torch_rows, roots, ms_tensors, ignored_torch)
    if not chosen:
        raise Pt2MsError(f"{source}: no PyTorch tensor can be rebuilt from it through {config.map_path}")
    path = output or config.output_dir / f"{config.name}.reversed.{output_format}"
    specs = [(row.name, chosen[row.name][1], tuple(row.shape)) for row in torch_rows if row.name in chosen]
    stats = {"crc": {}, "bytes": 0, "disagree": []}
    arrays = _produce(torch_rows, chosen, ms_tensors, stats)
    if output_format == "safetensors":
        write_safetensors(path, specs, arrays, metadata={"format": "pt", "converted_by": "pt2ms reverse"})
    else:
        _write_pth(path, specs, arrays, torch_rows)
    checked = check_written(path, open_torch_checkpoint(path), stats["crc"], stats["bytes"])
    read = {route.ms_name for root in roots for route in root.routes}
    # Stage 3's --cast changes dtypes; they stay as the MindSpore checkpoint has them, and are listed here.
    recast = {row.name: (row.dtype, chosen[row.name][1]) for row in torch_rows
              if row.name in chosen and row.dtype != chosen[row.name][1]}
    return {"path": path, "source": source, "restored": len(specs), "missing": missing, "recast": recast,
            "ignored_torch": sorted(ignored_torch & {row.name for row in torch_rows}),
            "unused": [name for name in ms_tensors if name not in read], "disagree": stats["disagree"],
            "bytes": stats["bytes"], "checked": checked, "seconds": time.perf_counter() - started}
