"""The largest block estimated from names and shapes, the memory available (cgroup limits included), the refusal."""

import pytest

from pt2ms.errors import Pt2MsError
from pt2ms.running.memory import (
    FRAMEWORKS_BYTES,
    available_bytes,
    cgroup_memory,
    check_largest_block_fits,
    largest_block,
    system_available,
)

LLAMA = {"model.embed_tokens.weight": (100, 8), "lm_head.weight": (100, 8), "model.norm.weight": (8,),
         **{f"model.layers.{i}.{part}.weight": (32, 8) for i in range(4) for part in ("q", "k", "mlp.up")}}


def test_largest_block_is_a_numbered_layer_or_a_big_lone_layer():
    assert largest_block(LLAMA) == ("model.embed_tokens", 800)
    wide = {**LLAMA, "model.layers.2.mlp.down.weight": (64, 8)}
    assert largest_block(wide) == ("model.layers.2", 3 * 256 + 512)
    experts = {f"layers.0.experts.{e}.w": (10, 10) for e in range(8)} | {"layers.1.w": (10, 10)}
    assert largest_block(experts) == ("layers.0", 800)  # the outer list is the unit, not one expert
    assert largest_block({}) is None


def test_refusal_names_the_block_the_estimate_and_what_is_available():
    with pytest.raises(Pt2MsError) as raised:
        check_largest_block_fits({"h.0.w": (1000, 1000), "h.1.w": (1000, 1000)}, "ck.safetensors",
                                 available=(int(1e9), "left under this process's memory limit of 2.0 GB"))
    message = str(raised.value)
    assert "\n" not in message and message.startswith("ck.safetensors: even one block does not fit: the largest, h.0")
    assert "0.00 GB in float32" in message and "1.0 GB is left under this process's memory limit" in message
    fits = check_largest_block_fits({"h.0.w": (1000, 1000)}, "ck", available=(int(4e9), "available"))
    assert fits == 3 * 4 * 1_000_000 + FRAMEWORKS_BYTES


def _cgroup_files(root, v1=None, v2=None):
    """A fake /sys/fs/cgroup under `root`: {file name: text} for a v1 memory cgroup `job` and a v2 cgroup `u`,
    with the /proc/self/cgroup files that point at them (root/v1, root/v2)."""
    for folder, files, proc in ((root / "memory" / "job", v1, "5:cpu:/\n4:memory:/job\n0::/\n"),
                                (root / "u", v2, "0::/u\n")):
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (files or {}).items():
            (folder / name).write_text(text)
        (root / ("v1" if folder.name == "job" else "v2")).write_text(proc)


def test_cgroup_v1_and_v2_limits_are_read(tmp_path):
    _cgroup_files(tmp_path, v1={"memory.limit_in_bytes": "2147483648\n", "memory.usage_in_bytes": "1000\n"},
                  v2={"memory.max": "max\n", "memory.current": "5\n"})
    assert cgroup_memory(tmp_path / "v1", tmp_path) == (2147483648, 1000)
    assert cgroup_memory(tmp_path / "v2", tmp_path) is None  # no limit set
    (tmp_path / "u" / "memory.max").write_text("1073741824\n")
    assert cgroup_memory(tmp_path / "v2", tmp_path) == (1073741824, 5)
    assert cgroup_memory(tmp_path / "missing", tmp_path) is None


def test_page_cache_charged_to_the_cgroup_is_not_counted_as_used(tmp_path):
    """A checkpoint just written fills the cgroup with page cache the kernel reclaims: stage 4 after stage 3 at
    3B, under a 6 GiB limit, was refused with "0.6 GB left" when 5.8 GB of the usage was cache."""
    _cgroup_files(tmp_path, v1={"memory.limit_in_bytes": "6000\n", "memory.usage_in_bytes": "5800\n",
                                "memory.stat": "cache 5000\nrss 400\ntotal_cache 5300\ntotal_rss 500\n"},
                  v2={"memory.max": "6000\n", "memory.current": "5800\n",
                      "memory.stat": "anon 700\nfile 5100\nkernel 0\n"})
    assert cgroup_memory(tmp_path / "v1", tmp_path) == (6000, 500)
    assert cgroup_memory(tmp_path / "v2", tmp_path) == (6000, 700)


def test_available_is_at_most_the_machines():
    free, where = available_bytes()
    assert 0 < free <= system_available() and where
