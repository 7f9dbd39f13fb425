"""How much memory a run needs and how much it has, told before anything is built.

A stage holds one block at a time (pt2ms.running.blocks), so what it needs is set by the largest block, not by
the model. The blocks are estimated from the checkpoint's names and shapes alone (an inventory or a
safetensors header): tensors under a numbered layer (`model.layers.7.`) of the list with the most values are
one block each; every other tensor belongs to its own layer. Memory available is the system's (MemAvailable)
or, when smaller, what the memory cgroup this process runs in still allows (v1 `memory.limit_in_bytes`, v2
`memory.max`): a container's or CI job's limit, not the machine's.
"""

import math
from pathlib import Path

from pt2ms.errors import Pt2MsError

GB = 1e9
FRAMEWORKS_BYTES = int(1.0 * GB)  # torch and MindSpore imported and running a forward pass on CPU (0.6 GB imported)
HOLDING_COPIES = 3                # a block as the file's tensor read, the framework's copy, and its partner's


def largest_block(shapes):
    """(block path, values) of the largest block among tensor name -> shape (the estimate in the module
    docstring), or None when there are no tensors."""
    per_list, per_block = {}, {}
    for name, shape in shapes.items():
        parts = name.split(".")
        for index in range(1, len(parts) - 1):  # every numbered level counts: the largest list is the unit
            if parts[index].isdigit():
                list_path = ".".join(parts[:index])
                per_list[list_path] = per_list.get(list_path, 0) + math.prod(shape)
    spine = max(per_list, key=per_list.get) if per_list else None
    for name, shape in shapes.items():
        path = _block_under(name, spine)
        per_block[path] = per_block.get(path, 0) + math.prod(shape)
    return max(per_block.items(), key=lambda item: item[1]) if per_block else None


def _block_under(name, spine):
    if spine and name.startswith(spine + "."):
        return ".".join(name.split(".")[:spine.count(".") + 2])
    return name.rpartition(".")[0] or name


def _read_int(path):
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def _file_cache(stat_path, keys):
    """Page cache charged to a cgroup (memory.stat): the kernel drops it before it kills anything, so a block
    read from the files does not count it against the limit (a checkpoint just read or written fills it)."""
    try:
        fields = dict(line.split() for line in Path(stat_path).read_text().splitlines() if line.count(" ") == 1)
    except (OSError, ValueError):
        return 0
    return next((int(fields[key]) for key in keys if key in fields), 0)


def cgroup_memory(proc_cgroup="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """(limit, usage) in bytes of the memory cgroup this process is in, or None when it sets no limit. Usage
    leaves out the page cache (file-backed pages, reclaimable)."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # v1
            folder = Path(root) / "memory" / path.lstrip("/")
            limit, usage = _read_int(folder / "memory.limit_in_bytes"), _read_int(folder / "memory.usage_in_bytes")
            cache = _file_cache(folder / "memory.stat", ("total_cache", "cache"))
            break
        if controllers == "":  # v2: one unified hierarchy
            folder = Path(root) / path.lstrip("/")
            limit, usage = _read_int(folder / "memory.max"), _read_int(folder / "memory.current")
            cache = _file_cache(folder / "memory.stat", ("file",))
            if limit is not None:
                break
    else:
        return None
    if limit is None or usage is None or limit >= 1 << 60:  # "no limit" reads as max or as about 2**63
        return None
    return limit, max(0, usage - cache)


def system_available(meminfo="/proc/meminfo"):
    """MemAvailable in bytes (None where /proc/meminfo does not say)."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_bytes():
    """(bytes available, where the figure comes from): the smaller of the system's and the cgroup's headroom."""
    found = [(value, "available on this machine") for value in [system_available()] if value is not None]
    cgroup = cgroup_memory()
    if cgroup is not None:
        limit, usage = cgroup
        found.append((max(0, limit - usage), f"left under this process's memory limit of {limit / GB:.1f} GB"))
    return min(found) if found else (None, "")


def check_largest_block_fits(shapes, source, available=None):
    """Refuse, in one line, a run whose largest block cannot be held: name it, the estimate and what is
    available. `shapes`: tensor name -> shape (float32 is assumed, as the models compute in it);
    `available`: (bytes, where) to use instead of measuring. Returns the estimate in bytes."""
    found = largest_block(shapes)
    if found is None:
        return 0
    path, values = found
    needed = HOLDING_COPIES * 4 * values + FRAMEWORKS_BYTES
    free, where = available if available is not None else available_bytes()
    if free is not None and needed > free:
        raise Pt2MsError(f"{source}: even one block does not fit: the largest, {path} ({values / 1e6:,.0f} M values, "
                         f"{4 * values / GB:.2f} GB in float32), needs about {needed / GB:.1f} GB with both "
                         f"frameworks loaded; {free / GB:.1f} GB is {where}")
    return needed
