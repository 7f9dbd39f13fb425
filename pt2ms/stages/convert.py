"""Stage 3: PyTorch checkpoint + map -> MindSpore checkpoint, checked before a byte is written.

No MindSpore model is built: the target names, shapes and order come from the template or from stage 1's
inventory. Every entry is validated first (names exist, shapes fit after transforms, no PyTorch tensor
feeds two parameters unless the map marks it tied); then tensors stream one at a time into a temporary
file that is renamed into place only when complete, and the written file is read back and checked.
"""

import time
from collections import defaultdict
from dataclasses import dataclass

from tqdm import tqdm

from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import check_file, open_ms_checkpoint, open_torch_checkpoint
from pt2ms.formats.ckpt import write_ckpt
from pt2ms.formats.files import remove_stale_parts
from pt2ms.formats.inventory import from_checkpoint, read_inventory
from pt2ms.formats.safetensors_file import write_safetensors
from pt2ms.formats.shards import remove_stale_folders, shard_folder, write_shards
from pt2ms.formats.tensors import FLOAT_DTYPES, cast, count_nonfinite
from pt2ms.mapping import transforms
from pt2ms.mapping.mapfile import hand_edits, parse_value, read_map, shape_after
from pt2ms.mapping.match_experts import NO_SOURCE_METHOD


@dataclass
class Step:
    ms_name: str
    torch_names: list
    ops: list
    shape: tuple
    dtype: str


def target_rows(config):
    """The MindSpore names, shapes and dtypes to write, in the target's order."""
    if config.mindspore.template:
        return from_checkpoint(open_ms_checkpoint(config.mindspore.template))
    return read_inventory(config.output_dir / "ms_params.csv")


def plan(map_data, map_path, targets, tensors, cast_to=None):
    """Validate the map against both sides; returns (steps, names left at their initial value)."""
    ignored = set(map_data.get("ignored", {}).get("mindspore", {}))
    by_name = {row.name: row for row in targets}
    unknown = [name for name in map_data["map"] if name not in by_name]
    if unknown:
        raise Pt2MsError(f"{map_path}: entry {unknown[0]!r} names no MindSpore parameter of the target")
    steps, left, readers = [], [], defaultdict(list)
    for row in targets:
        if row.name in ignored:
            continue
        if row.name not in map_data["map"]:
            raise Pt2MsError(f"{map_path}: no entry for MindSpore parameter {row.name!r} "
                             "(rerun stage 2, or set it to null to keep its initial value)")
        entry = parse_value(map_data["map"][row.name], row.name, map_path)
        if not entry.torch_names:
            left.append(row.name)
            continue
        missing = [name for name in entry.torch_names if name not in tensors]
        if missing:
            raise Pt2MsError(f"{map_path}: entry {row.name!r} reads {missing[0]!r}, which the PyTorch checkpoint lacks")
        ops = transforms.parse(entry.transform)
        try:
            shape = shape_after(ops, [tensors[name].shape for name in entry.torch_names])
        except Pt2MsError as error:
            raise Pt2MsError(f"{map_path}: entry {row.name!r}: {error}") from None
        if tuple(shape) != tuple(row.shape):
            source = " + ".join(f"{name} {list(tensors[name].shape)}" for name in entry.torch_names)
            via = f" after {entry.transform!r}" if entry.transform else ""
            raise Pt2MsError(f"{map_path}: shape mismatch for {row.name!r}: MindSpore expects {list(row.shape)}, "
                             f"PyTorch {source} gives {list(shape)}{via}")
        dtypes = {tensors[name].dtype for name in entry.torch_names}
        if len(dtypes) > 1:
            raise Pt2MsError(f"{map_path}: entry {row.name!r} joins tensors of different dtypes {sorted(dtypes)}")
        for name in entry.torch_names:
            readers[name].append((row.name, entry.tied or transforms.takes_a_piece(ops)))
        steps.append(Step(row.name, entry.torch_names, ops, tuple(row.shape), cast_to or dtypes.pop()))
    # One source read by several entries is a mistake unless each says why: tied, or a chunk of a fused tensor.
    for name, users in readers.items():
        if len(users) > 1 and not all(meant for _, meant in users):
            raise Pt2MsError(f"{map_path}: PyTorch tensor {name!r} feeds {', '.join(user for user, _ in users)}; "
                             'if that is meant (tied weights), write each entry as {"torch": "' + name + '", "tied": true}')
    return steps, left


MS_METADATA = {"format": "ms", "converted_by": "pt2ms"}
SHOWN = 10  # names listed of each kind in the refusal


def nothing_found(map_data, left):
    """The null entries stage 2 suggested itself ("no PyTorch tensor fits"), not ones a person set to null.

    The map's "suggested" section holds what stage 2 proposed: a null equal to its suggestion means nothing
    was found; a null that differs from it, or that it lacks, is a hand edit and keeps the initial value on purpose.
    A null whose method is NO_SOURCE (a counter such as router.fi_accu) is not "nothing found": nothing exists.
    """
    suggested, found = map_data.get("suggested", {}), map_data.get("found", {})
    return [name for name in left if name in suggested and suggested[name] is None
            and found.get(name, {}).get("method") != NO_SOURCE_METHOD]


def refuse_initial(map_path, initial, unused):
    """Stop before writing a checkpoint that would leave parameters at their random initial values."""
    lines = [f"{map_path}: {len(initial)} MindSpore parameter(s) would keep their initial (random) values: stage 2 "
             "found no PyTorch tensor for them; map them, or pass --allow-initial to keep their initial values"]
    lines += [f"  left at initial value: {name}" for name in initial[:SHOWN]]
    if len(initial) > SHOWN:
        lines.append(f"  ... and {len(initial) - SHOWN} more left at initial value")
    lines += [f"  unused PyTorch tensor: {name}" for name in unused[:SHOWN]]
    if len(unused) > SHOWN:
        lines.append(f"  ... and {len(unused) - SHOWN} more unused PyTorch tensors")
    lines.append(f"  ({len(initial)} left at initial value, {len(unused)} PyTorch tensors unused in all)")
    raise Pt2MsError("\n".join(lines))


def _produce(steps, tensors, allow_nonfinite, allow_overflow, stats):
    """Yield each step's array: read, check for NaN/Inf, transform, cast; counts bytes in stats."""
    # leave=False: on an error the bar is cleared, so stderr ends with just the one-line message.
    for step in tqdm(steps, desc="converting", unit="tensor", leave=False, disable=None):
        sources = [tensors[name] for name in step.torch_names]
        arrays = [tensor.read() for tensor in sources]
        for tensor, name, array in zip(sources, step.torch_names, arrays):
            bad = 0 if allow_nonfinite else count_nonfinite(array, tensor.dtype)
            if bad:
                raise Pt2MsError(f"{tensor.source}: {name!r} holds {bad} NaN/Inf value(s) of "
                                 f"{array.size} (rerun with --allow-nonfinite to convert anyway)")
        array, overflow = cast(transforms.apply(step.ops, arrays), sources[0].dtype, step.dtype)
        if overflow and not allow_overflow:
            raise Pt2MsError(f"{sources[0].source}: casting {step.torch_names[0]!r} to {step.dtype} overflows "
                             f"{overflow} value(s) to inf; pick a wider dtype or pass --allow-overflow")
        if overflow:
            stats["overflow"][step.ms_name] = overflow
        stats["bytes"] += array.nbytes
        yield array


def dtype_note(steps, targets):
    """How the written float dtypes compare with the MindSpore model's (stage 1's inventory or the template).

    A mismatch is not an error (load_param_into_net casts float to float, stage 4 casts to [verify] dtype), but a
    user who wants the file to hold what the model holds is told the --cast that does it.
    """
    wanted = {row.name: row.dtype for row in targets}
    written = sorted({step.dtype for step in steps if step.dtype in FLOAT_DTYPES})
    model = sorted({wanted[step.ms_name] for step in steps if wanted.get(step.ms_name) in FLOAT_DTYPES})
    if not written or not model or written == model:
        return None
    hint = f": rerun with --cast {model[0]} to match" if len(model) == 1 else ""
    return f"the file holds {' and '.join(written)}, the MindSpore model's parameters are {' and '.join(model)}{hint}"


def convert(config, output_format="ckpt", cast_to=None, allow_nonfinite=False, allow_overflow=False,
            allow_initial=False, max_shard_bytes=None):
    """Stage 3: write outputs/<name>/<name>.<format>; returns a summary dict.

    Refuses (Pt2MsError) a map whose null entries are stage 2's own "nothing found" unless `allow_initial`.
    With `max_shard_bytes`, writes safetensors shards of at most that size and their index into
    outputs/<name>/<name>.shards/ instead (pt2ms.formats.shards).
    """
    started = time.perf_counter()
    map_data = read_map(config.map_path)
    targets = target_rows(config)
    tensors = open_torch_checkpoint(config.torch.checkpoint, config.torch.state_dict_key, config.torch.trust_pickle)
    steps, left = plan(map_data, config.map_path, targets, tensors, cast_to)
    if not steps:
        raise Pt2MsError(f"{config.map_path}: no entry maps a PyTorch tensor; nothing to convert")
    used = {name for step in steps for name in step.torch_names}
    ignored_torch = set(map_data.get("ignored", {}).get("torch", {}))
    unused = [name for name in tensors if name not in used and name not in ignored_torch]
    initial = nothing_found(map_data, left)
    if initial and not allow_initial:
        refuse_initial(config.map_path, initial, unused)
    if max_shard_bytes and output_format != "safetensors":
        raise Pt2MsError(f"--max-shard-size writes safetensors shards; drop --format {output_format} or use "
                         "--format safetensors")
    path = config.output_dir / f"{config.name}.{output_format}"
    empty = [step for step in steps if 0 in step.shape]
    if empty and output_format == "ckpt":
        raise Pt2MsError(f"{config.map_path}: {empty[0].ms_name!r} has no elements (shape {list(empty[0].shape)}), which a "
                         ".ckpt cannot store (it reads back as a scalar); set its entry to null or use --format safetensors")
    remove_stale_parts(path)
    stats = {"overflow": {}, "bytes": 0}
    specs = [(step.ms_name, step.dtype, step.shape) for step in steps]
    arrays = _produce(steps, tensors, allow_nonfinite, allow_overflow, stats)
    shards = 0
    if max_shard_bytes:
        folder = shard_folder(config.output_dir, config.name)
        remove_stale_folders(folder)
        path, shards = write_shards(folder, config.name, specs, arrays, max_shard_bytes, metadata=MS_METADATA)
        checked = len(specs)
    else:
        if output_format == "safetensors":
            crc = write_safetensors(path, specs, arrays, metadata=MS_METADATA)
        else:
            crc = write_ckpt(path, specs, arrays)
        checked = check_file(path, crc, specs)
    ignored_ms = set(map_data.get("ignored", {}).get("mindspore", {}))
    return {"path": path, "converted": len(steps), "left": left, "nothing_found": initial, "bytes": stats["bytes"],
            "unused": unused, "ignored_ms": sorted(ignored_ms & {row.name for row in targets}),
            "ignored_torch": sorted(ignored_torch & set(tensors)), "overflow": stats["overflow"],
            "checked": checked, "hand_edits": len(hand_edits(map_data)), "seconds": time.perf_counter() - started,
            "dtype_note": dtype_note(steps, targets), "shards": shards}
