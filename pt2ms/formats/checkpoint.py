"""Opening any supported checkpoint as an ordered dict of name -> LazyTensor.

Torch side: .pth/.pt/.bin (pickles, read safely), .safetensors, and sharded checkpoints (an
*.index.json whose "weight_map" names each tensor's shard). MindSpore side: .ckpt and .safetensors.
"""

import json
import zlib
from pathlib import Path

import numpy as np

from pt2ms.errors import Pt2MsError
from pt2ms.formats.ckpt import read_ckpt
from pt2ms.formats.files import file_crc
from pt2ms.formats.pth import load_pth
from pt2ms.formats.safetensors_file import read_safetensors
from pt2ms.formats.tensors import LazyTensor

# Where training scripts put the weights inside a saved dict, most specific first.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "ema", "model_ema",
                   "state_dict_ema", "net", "network", "params", "weights")


def _is_state_dict(value):
    return isinstance(value, dict) and value and any(isinstance(item, LazyTensor) for item in value.values())


def find_state_dict(loaded, path, key=None):
    """The dict of tensors inside what a .pth held, and the key path it was found under."""
    if key:
        value = loaded
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise Pt2MsError(f"{path}: no entry {key!r} (state_dict_key); top-level keys: {_keys(loaded)}")
            value = value[part]
        if not _is_state_dict(value):
            raise Pt2MsError(f"{path}: entry {key!r} holds no tensors")
        return value, key
    if not isinstance(loaded, dict):
        raise Pt2MsError(f"{path}: holds a {type(loaded).__name__}, not a state dict (a dict of name -> tensor)")
    if not loaded:
        raise Pt2MsError(f"{path}: the state dict is empty")
    tensors = sum(isinstance(item, LazyTensor) for item in loaded.values())
    if tensors and tensors >= len(loaded) / 2:
        return loaded, ""
    for name in STATE_DICT_KEYS:
        if _is_state_dict(loaded.get(name)):
            inner, inner_key = find_state_dict(loaded[name], path)
            return inner, ".".join(part for part in (name, inner_key) if part)
    candidates = [name for name, value in loaded.items() if _is_state_dict(value)]
    if len(candidates) == 1:
        return loaded[candidates[0]], candidates[0]
    if not tensors and not candidates:
        raise Pt2MsError(f"{path}: holds no tensors, neither at the top level nor one dict down "
                         f"(keys: {_keys(loaded)}); is it a checkpoint of weights?")
    raise Pt2MsError(f"{path}: cannot tell which entry holds the weights (keys: {_keys(loaded)}); "
                     "name it with state_dict_key under [torch]")


def _keys(value):
    return ", ".join(list(map(str, value))[:12]) if isinstance(value, dict) else type(value).__name__


def _only_tensors(state_dict, path):
    tensors = {name: value for name, value in state_dict.items() if isinstance(value, LazyTensor)}
    if not tensors:
        raise Pt2MsError(f"{path}: the state dict holds no tensors")
    return tensors


def _read_sharded(path, trust_pickle):
    weight_map = _weight_map(path)
    shards = {}
    tensors = {}
    for name, shard in weight_map.items():
        if shard not in shards:
            shards[shard] = open_torch_checkpoint(_shard_path(path, shard), trust_pickle=trust_pickle)
        if name not in shards[shard]:
            raise Pt2MsError(f"{path}: index names {name!r} in {shard}, which does not hold it")
        tensors[name] = shards[shard][name]
    return tensors


def _weight_map(path):
    """The index's {"weight_map": {tensor name: shard file}}, refused unless it has exactly that structure."""
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, UnicodeDecodeError, RecursionError, ValueError, KeyError, TypeError) as error:
        raise Pt2MsError(f"{path}: not a sharded-checkpoint index ({type(error).__name__}: {str(error)[:100]})") from None
    if not (isinstance(weight_map, dict) and weight_map
            and all(isinstance(key, str) and isinstance(value, str) for key, value in weight_map.items())):
        raise Pt2MsError(f'{path}: "weight_map" must be a non-empty object of tensor name -> shard file name')
    return weight_map


def _shard_path(index, shard):
    """A shard in the index's folder: never the index itself, another index, or a file outside that folder."""
    folder = index.parent.resolve()
    try:
        resolved = (folder / shard).resolve()
    except (OSError, RuntimeError, ValueError) as error:  # RuntimeError: a symlink loop on Python 3.11
        raise Pt2MsError(f"{index}: shard {shard!r}: {error}") from None
    if not resolved.is_relative_to(folder):
        raise Pt2MsError(f"{index}: shard {shard!r} lies outside the index's folder {folder}; refused")
    if resolved.name.endswith(".index.json") or resolved == index.resolve():
        raise Pt2MsError(f"{index}: shard {shard!r} is an index itself; a shard must be a .safetensors or .bin file")
    return resolved


def open_torch_checkpoint(path, state_dict_key=None, trust_pickle=False):
    """Name -> LazyTensor for a PyTorch checkpoint of any supported kind, in file order."""
    path = Path(path)
    if not path.is_file():
        raise Pt2MsError(f"{path}: checkpoint file not found")
    if path.name.endswith(".index.json"):
        return _read_sharded(path, trust_pickle)
    if path.suffix == ".safetensors":
        tensors = read_safetensors(path)
        if not tensors:
            raise Pt2MsError(f"{path}: the checkpoint holds no tensors")
        return _checked_names(tensors, path)
    loaded = load_pth(path, trust_pickle)
    state_dict, _ = find_state_dict(loaded, path, state_dict_key)
    return _checked_names(_only_tensors(state_dict, path), path)


def open_ms_checkpoint(path):
    """Name -> LazyTensor for a MindSpore .ckpt or .safetensors file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise Pt2MsError(f"{path}: checkpoint file not found")
    tensors = read_safetensors(path) if path.suffix == ".safetensors" else read_ckpt(path)
    if not tensors:
        raise Pt2MsError(f"{path}: the checkpoint holds no tensors")
    return _checked_names(tensors, path)


def _checked_names(tensors, path):
    """Refuse tensor names that no text file can hold: not strings, or not valid Unicode (lone surrogates)."""
    for name in tensors:
        if not isinstance(name, str):
            raise Pt2MsError(f"{path}: a tensor name is a {type(name).__name__} ({str(name)[:60]!r}), not a string")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise Pt2MsError(f"{path}: tensor name {name[:100]!r} is not valid Unicode; rename it in the "
                             "checkpoint") from None
    return tensors


FULL_CHECK_BYTES = 4 << 30  # above this, the read-back check samples tensors instead of re-reading all


def checksum(array):
    """CRC-32 of an array's bytes in C order."""
    return zlib.crc32(memoryview(np.require(array, requirements="C").reshape(-1)).cast("B"))


def check_file(path, crc, specs):
    """Prove a written file: every byte has the CRC-32 taken while writing, and it opens to the planned tensors."""
    if file_crc(path) != crc:
        raise Pt2MsError(f"{path}: read-back check failed: the file on disk differs from what was written")
    written = open_ms_checkpoint(path)
    for name, dtype, shape in specs:
        found = written.get(name)
        if found is None or found.dtype != dtype or tuple(found.shape) != tuple(shape):
            raise Pt2MsError(f"{path}: read-back check failed for {name!r}: planned {dtype} {list(shape)}, the file "
                             f"holds {'nothing' if found is None else f'{found.dtype} {list(found.shape)}'}")
    return len(specs)


def check_written(path, written, checksums, total_bytes):
    """Compare a written file's tensors with the checksums taken while writing; returns how many were checked."""
    names = list(checksums)
    if total_bytes > FULL_CHECK_BYTES:
        names = names[:: max(1, len(names) // 16)] + [names[-1]]
    for name in names:
        if name not in written or checksum(written[name].read()) != checksums[name]:
            raise Pt2MsError(f"{path}: read-back check failed for {name!r}: the file on disk differs from what was written")
    return len(names)
