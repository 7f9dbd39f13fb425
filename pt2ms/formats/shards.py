"""A MindSpore checkpoint in safetensors shards, the layout MindSpore's loaders take for large models.

Stage 3's --max-shard-size writes outputs/<name>/<name>.shards/: the shards <name>-00001-of-00003.safetensors, ...
and param_name_map.json, {"metadata": {"total_size": bytes}, "weight_map": {parameter name: shard file}}. That
is what MindSpore's `unified_safetensors` writes and what `load_distributed_checkpoint(net, format="safetensors",
unified_safetensors_dir=folder)` reads (it reshards to the target's tensor/pipeline-parallel strategy when given
one), and what mindformers reads as MindSpore safetensors weights (`load_checkpoint` pointing at the folder,
`load_ckpt_format: safetensors`). Each shard can also be loaded alone with `mindspore.load_checkpoint(shard,
format="safetensors")`. The folder is written beside the final one and renamed into place when every shard has
been read back and checked, so that a half-written set never stands where a complete one was.
"""

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import check_file
from pt2ms.formats.files import owner_alive, write_json
from pt2ms.formats.safetensors_file import read_safetensors, write_safetensors
from pt2ms.formats.tensors import NUMPY_DTYPES

INDEX_NAME = "param_name_map.json"  # MindSpore's name for the index of a unified safetensors folder
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20,
         "GIB": 2**30, "TIB": 2**40}  # as Hugging Face's max_shard_size: GB decimal, GiB binary


def parse_size(text):
    """Bytes in "4GB", "500MB", "2GiB" or "1000000"; a Pt2MsError for anything else."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = found.group(2).upper() if found else None
    if not found or unit not in UNITS or float(found.group(1)) * UNITS[unit] < 1:
        raise Pt2MsError(f"--max-shard-size {text!r}: give a size such as 500MB, 4GB, 2GiB or a number of bytes")
    return int(float(found.group(1)) * UNITS[unit])


def shard_folder(output_dir, name):
    return Path(output_dir) / f"{name}.shards"


def is_index(path):
    """Whether `path` is a shard index (param_name_map.json, or a Hugging Face style *.index.json)."""
    path = Path(path)
    return path.name == INDEX_NAME or path.name.endswith(".index.json")


def plan_shards(specs, max_bytes):
    """Split (name, dtype, shape) specs, in order, into groups of at most `max_bytes` (a larger tensor alone)."""
    groups, size = [[]], 0
    for spec in specs:
        nbytes = math.prod(spec[2]) * np.dtype(NUMPY_DTYPES[spec[1]]).itemsize
        if groups[-1] and size + nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(spec)
        size += nbytes
    return groups


def write_shards(folder, name, specs, arrays, max_bytes, metadata=None):
    """Write the shards and param_name_map.json into `folder`, replacing what was there only once all are checked.

    `specs` lists (name, dtype, shape) and `arrays` yields the data in that order, one tensor at a time; each shard
    is read back and checked (its CRC-32 and its tensors) before the next is written. Returns (index path, shards).
    """
    folder = Path(folder)
    groups = plan_shards(specs, max_bytes)
    arrays = iter(arrays)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.{os.getpid()}.", suffix=".part"))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staging, 0o777 & ~mask)  # mkdtemp makes it 0700; the folder gets the usual permissions
    try:
        weight_map, total = {}, 0
        for number, group in enumerate(groups, 1):
            file_name = f"{name}-{number:05d}-of-{len(groups):05d}.safetensors"
            crc = write_safetensors(staging / file_name, group, (next(arrays) for _ in group), metadata)
            check_file(staging / file_name, crc, group)
            weight_map.update({spec[0]: file_name for spec in group})
            total += (staging / file_name).stat().st_size
        write_json(staging / INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": weight_map})
        _swap_in(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder / INDEX_NAME, len(groups)


def _swap_in(staging, folder):
    """Put the complete `staging` folder where `folder` was (the old one is removed after the rename)."""
    old = None
    if folder.exists():
        old = folder.parent / f".{folder.name}.{os.getpid()}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    try:
        os.replace(staging, folder)
    except OSError as error:
        if old:
            os.replace(old, folder)
        raise Pt2MsError(f"{folder}: cannot write it ({error.strerror or error})") from None
    if old:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_folders(folder):
    """Delete staging folders that killed earlier runs left beside `folder`."""
    folder = Path(folder)
    for part in folder.parent.glob(f".{folder.name}.*"):
        owner = re.match(rf"\.{re.escape(folder.name)}\.(\d+)\.", part.name)
        if owner and int(owner.group(1)) != os.getpid() and not owner_alive(int(owner.group(1))):
            shutil.rmtree(part, ignore_errors=True)


def weight_map(index_path):
    """{parameter name: shard path} from an index, each shard checked to lie in the index's folder."""
    index_path = Path(index_path)
    try:
        names = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, UnicodeDecodeError, RecursionError, ValueError, KeyError, TypeError) as error:
        raise Pt2MsError(f"{index_path}: not a shard index ({type(error).__name__}: {str(error)[:100]})") from None
    if not (isinstance(names, dict) and names and all(isinstance(v, str) for v in names.values())):
        raise Pt2MsError(f'{index_path}: "weight_map" must be a non-empty object of parameter name -> shard file')
    folder = index_path.parent.resolve()
    paths = {}
    for shard in set(names.values()):
        path = (folder / shard).resolve()
        if path.parent != folder or not path.name.endswith(".safetensors"):
            raise Pt2MsError(f"{index_path}: shard {shard!r} is not a .safetensors file beside the index; refused")
        if not path.is_file():
            raise Pt2MsError(f"{index_path}: shard {shard} is missing")
        paths[shard] = path
    return {name: paths[shard] for name, shard in names.items()}


def shard_files(index_path):
    """The shard files an index names, in the order of their first parameter."""
    return list(dict.fromkeys(weight_map(index_path).values()))


def read_shards(index_path):
    """name -> LazyTensor over all shards, in the index's order; the data stays on disk."""
    by_name = weight_map(index_path)
    opened = {path: read_safetensors(path) for path in dict.fromkeys(by_name.values())}
    tensors = {}
    for name, path in by_name.items():
        if name not in opened[path]:
            raise Pt2MsError(f"{index_path}: names {name!r} in {path.name}, which does not hold it")
        tensors[name] = opened[path][name]
    return tensors


def converted_outputs(output_dir, name):
    """Stage 3's outputs that exist: <name>.ckpt, <name>.safetensors and the shard folder's index."""
    candidates = [Path(output_dir) / f"{name}.{suffix}" for suffix in ("ckpt", "safetensors")]
    candidates.append(shard_folder(output_dir, name) / INDEX_NAME)
    return [path for path in candidates if path.is_file()]
