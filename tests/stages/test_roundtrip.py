"""Round trips through stage 3 and back (pt2ms.stages.reverse): every tensor comes back bit for bit.

Each case is a tiny project on disk: a PyTorch checkpoint, a MindSpore template .ckpt (names and shapes of
the target), a hand-written map, and stage 1's inventories. Stage 3 writes the .ckpt, MindSpore must load
it with the right dtypes and values, and the reverse direction must give back the very bytes we started from.
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from pt2ms.config import load_config
from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import open_ms_checkpoint
from pt2ms.formats.ckpt import TO_MS_TYPE, write_ckpt
from pt2ms.formats.safetensors_file import read_safetensors
from pt2ms.stages.convert import convert
from pt2ms.stages.reverse import reverse
from pt2ms.stages.show import show
from tests.conftest import run_script

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int8,
          torch.uint8, torch.bool]


def sample(dtype, shape, seed, specials=False):
    """Seeded values covering the dtype's range; with `specials`, floats start with -0.0, ±inf, NaN, a subnormal."""
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    if dtype.is_floating_point:
        values = torch.randn(shape, generator=generator, dtype=torch.float64) * 3
        if specials:
            odd = torch.tensor([-0.0, float("inf"), float("-inf"), float("nan"), torch.finfo(dtype).tiny / 4],
                               dtype=torch.float64)[: values.numel()]
            values.view(-1)[: len(odd)] = odd
        return values.to(dtype)
    info = torch.iinfo(dtype)
    low, high = max(info.min, -2**62), min(info.max, 2**62)
    return torch.randint(low, high, shape, generator=generator, dtype=dtype)


def raw(tensor):
    """A tensor's bytes in C order (bfloat16 as its bit patterns)."""
    tensor = tensor.contiguous()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    return tensor.numpy().tobytes()


def torch_dtype_name(tensor):
    return str(tensor.dtype).removeprefix("torch.")


def make_project(directory, checkpoint, tensors, ms_names=None, mapping=None, templates=None):
    """Template, map, config and stage-1 inventories for `tensors` (torch name -> tensor); returns the config.

    `ms_names` renames torch names to MindSpore names (default: "ms." + name); `mapping` and `templates`
    (MindSpore name -> (dtype, shape)) replace the plain one-to-one map when a case needs transforms.
    """
    ms_names = ms_names or {name: f"ms.{name}" for name in tensors}
    mapping = mapping or {ms_names[name]: name for name in tensors}
    templates = templates or {ms_names[name]: (torch_dtype_name(t), tuple(t.shape)) for name, t in tensors.items()}
    specs = [(name, dtype, shape) for name, (dtype, shape) in templates.items()]
    zeros = (np.zeros(shape, dtype=np.uint16 if dtype == "bfloat16" else dtype) for _, dtype, shape in specs)
    write_ckpt(directory / "template.ckpt", specs, zeros)
    (directory / "maps").mkdir(exist_ok=True)
    (directory / "maps" / "rt.json").write_text(json.dumps({"map": mapping}, indent=2))
    config_path = directory / "rt.toml"
    config_path.write_text(f'name = "rt"\n[torch]\ncheckpoint = "{checkpoint}"\n[mindspore]\n'
                           'template = "template.ckpt"\n[paths]\nmaps = "maps"\noutputs = "outputs"\n')
    config = load_config(config_path)
    show(config)
    return config


def assert_same(restored, original):
    """Same names, dtypes, shapes and bytes."""
    assert list(restored) == list(original)
    for name, tensor in original.items():
        got = restored[name]
        assert (got.dtype, tuple(got.shape)) == (tensor.dtype, tuple(tensor.shape)), name
        assert raw(got) == raw(tensor), name


def assert_mindspore_reads(ckpt_path, originals):
    """mindspore.load_checkpoint sees each MindSpore name with the original's dtype and bytes."""
    import mindspore as ms

    loaded = ms.load_checkpoint(str(ckpt_path))
    for ms_name, tensor in originals.items():
        parameter = loaded[ms_name]
        assert str(parameter.dtype) == TO_MS_TYPE[torch_dtype_name(tensor)], ms_name
        assert tuple(parameter.shape) == tuple(tensor.shape), ms_name
        assert parameter.asnumpy().tobytes() == raw(tensor), ms_name


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: str(dtype).removeprefix("torch."))
def test_pth_to_ckpt_to_pth_is_bit_exact(tmp_path, dtype):
    base = sample(dtype, (6, 4), seed=1, specials=True)
    shared = sample(dtype, (5, 3), seed=2, specials=True)
    state = {
        "layer.weight": sample(dtype, (4, 6), seed=0, specials=True),
        "layer.scale": sample(dtype, (), seed=3, specials=True),       # 0-d
        "layer.kernel": base.t(),                       # non-contiguous: saved as a strided view of `base`
        "embed.weight": shared,                         # tied: two keys, one storage
        "head.weight": shared,
    }
    assert not state["layer.kernel"].is_contiguous()
    torch.save(state, tmp_path / "weights.pth")
    config = make_project(tmp_path, "weights.pth", state)
    assert convert(config, "ckpt", allow_nonfinite=True)["converted"] == len(state)
    assert_mindspore_reads(config.output_dir / "rt.ckpt", {f"ms.{name}": t for name, t in state.items()})
    summary = reverse(config)
    assert summary["restored"] == len(state)
    assert not summary["missing"] and not summary["disagree"] and not summary["recast"] and not summary["unused"]
    restored = torch.load(summary["path"], weights_only=True)
    assert_same(restored, state)
    assert restored["embed.weight"].untyped_storage().data_ptr() == restored["head.weight"].untyped_storage().data_ptr()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: str(dtype).removeprefix("torch."))
def test_safetensors_to_ckpt_to_safetensors_is_bit_exact(tmp_path, dtype):
    # safetensors files hold neither views nor shared storage: plain, 0-d and odd-sized tensors only.
    state = {"block.weight": sample(dtype, (3, 7), seed=4, specials=True), "block.bias": sample(dtype, (7,), seed=5, specials=True),
             "block.gain": sample(dtype, (), seed=6, specials=True)}
    save_file(state, tmp_path / "weights.safetensors")
    config = make_project(tmp_path, "weights.safetensors", state)
    convert(config, "ckpt", allow_nonfinite=True)
    assert_mindspore_reads(config.output_dir / "rt.ckpt", {f"ms.{name}": t for name, t in state.items()})
    summary = reverse(config, output_format="safetensors")
    restored = load_file(summary["path"])
    assert_same({name: restored[name] for name in state}, state)
    # The reversed file keeps the original's data order (safetensors sorts the header, not the data).
    assert list(read_safetensors(summary["path"])) == list(read_safetensors(tmp_path / "weights.safetensors"))


def test_sharded_safetensors_round_trip(tmp_path):
    shards = {"model-00001-of-00002.safetensors": {"enc.weight": sample(torch.bfloat16, (8, 4), 7),
                                                   "enc.bias": sample(torch.bfloat16, (8,), 8)},
              "model-00002-of-00002.safetensors": {"dec.weight": sample(torch.float32, (4, 8), 9)}}
    weight_map = {}
    for shard, tensors in shards.items():
        save_file(tensors, tmp_path / shard)
        weight_map.update({name: shard for name in tensors})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    state = {name: tensor for tensors in shards.values() for name, tensor in tensors.items()}
    config = make_project(tmp_path, "model.safetensors.index.json", state)
    convert(config, "ckpt")
    summary = reverse(config, output_format="safetensors")
    restored = load_file(summary["path"])
    assert_same({name: restored[name] for name in state}, state)


@pytest.mark.parametrize("key", ["model", "state_dict", "ema"])
def test_nested_state_dict_round_trip(tmp_path, key):
    state = {"conv.weight": sample(torch.float32, (2, 3, 3, 3), 10), "conv.bias": sample(torch.float16, (2,), 11)}
    torch.save({key: state, "epoch": 7, "optimizer": {"param_groups": [{"lr": 0.1}]}}, tmp_path / "weights.pth")
    config = make_project(tmp_path, "weights.pth", state)
    convert(config, "ckpt")
    assert_same(torch.load(reverse(config)["path"], weights_only=True), state)


def test_dataparallel_prefix_round_trip(tmp_path):
    state = {"module.fc.weight": sample(torch.float32, (3, 4), 12), "module.fc.bias": sample(torch.float32, (3,), 13)}
    torch.save(state, tmp_path / "weights.pth")
    config = make_project(tmp_path, "weights.pth", state, ms_names={name: name.removeprefix("module.") for name in state})
    convert(config, "ckpt")
    assert_mindspore_reads(config.output_dir / "rt.ckpt", {name.removeprefix("module."): t for name, t in state.items()})
    assert_same(torch.load(reverse(config)["path"], weights_only=True), state)


def transform_project(tmp_path, dtype=torch.float32, mapping_changes=None):
    """A checkpoint whose map uses every transform, a tied pair and an unmapped step counter."""
    state = {
        "attn.qkv.weight": sample(dtype, (6, 4), 20),             # chunk(3, 0, i) -> q, k, v
        "a.bias": sample(dtype, (4,), 21), "b.bias": sample(dtype, (2,), 22),  # cat(0) -> ab.bias
        "conv1d.weight": sample(dtype, (4, 2, 3), 23),           # reshape to MindSpore's 4-D Conv1d kernel
        "proj.weight": sample(dtype, (3, 5), 24),                # transpose(0, 1)
        "fused.weight": sample(dtype, (8, 6), 25),               # transpose(0, 1) | chunk(2, 1, i)
        "emb.weight": sample(dtype, (5, 4), 26),                 # one tensor feeding two parameters (tied)
        "bn.num_batches_tracked": torch.tensor(3),               # never mapped
    }
    mapping = {
        "q.weight": {"torch": "attn.qkv.weight", "transform": "chunk(3, 0, 0)"},
        "k.weight": {"torch": "attn.qkv.weight", "transform": "chunk(3, 0, 1)"},
        "v.weight": {"torch": "attn.qkv.weight", "transform": "chunk(3, 0, 2)"},
        "ab.bias": {"torch": ["a.bias", "b.bias"], "transform": "cat(0)"},
        "conv1d.weight": {"torch": "conv1d.weight", "transform": "reshape(4, 2, 1, 3)"},
        "proj.weight": {"torch": "proj.weight", "transform": "transpose(0, 1)"},
        "fused.left": {"torch": "fused.weight", "transform": "transpose(0, 1) | chunk(2, 1, 0)"},
        "fused.right": {"torch": "fused.weight", "transform": "transpose(0, 1) | chunk(2, 1, 1)"},
        "emb.embedding_table": {"torch": "emb.weight", "tied": True},
        "head.weight": {"torch": "emb.weight", "tied": True},
    }
    name = str(dtype).removeprefix("torch.")
    templates = {"q.weight": (name, (2, 4)), "k.weight": (name, (2, 4)), "v.weight": (name, (2, 4)),
                 "ab.bias": (name, (6,)), "conv1d.weight": (name, (4, 2, 1, 3)), "proj.weight": (name, (5, 3)),
                 "fused.left": (name, (6, 4)), "fused.right": (name, (6, 4)),
                 "emb.embedding_table": (name, (5, 4)), "head.weight": (name, (5, 4))}
    torch.save(state, tmp_path / "weights.pth")
    config = make_project(tmp_path, "weights.pth", state, mapping=mapping, templates=templates)
    data = json.loads(config.map_path.read_text())
    data["ignored"] = {"torch": {"bn.num_batches_tracked": "BatchNorm step counter"}}
    data["map"].update(mapping_changes or {})
    config.map_path.write_text(json.dumps(data))
    return config, state


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_every_transform_is_inverted(tmp_path, dtype):
    config, state = transform_project(tmp_path, dtype)
    convert(config, "ckpt")
    summary = reverse(config)
    assert summary["missing"] == {} and summary["ignored_torch"] == ["bn.num_batches_tracked"]
    expected = {name: tensor for name, tensor in state.items() if name != "bn.num_batches_tracked"}
    assert_same(torch.load(summary["path"], weights_only=True), expected)


def test_tied_copies_that_drifted_apart_are_reported(tmp_path):
    config, state = transform_project(tmp_path)
    convert(config, "ckpt")
    written = open_ms_checkpoint(config.output_dir / "rt.ckpt")
    arrays = {name: tensor.read() for name, tensor in written.items()}
    arrays["head.weight"] = arrays["head.weight"] + 1
    drifted = tmp_path / "drifted.ckpt"
    write_ckpt(drifted, [(name, t.dtype, t.shape) for name, t in written.items()], arrays.values())
    summary = reverse(config, source=drifted, output_format="safetensors")
    assert summary["disagree"] == [("emb.embedding_table", "head.weight")]
    assert raw(load_file(summary["path"])["emb.weight"]) == raw(state["emb.weight"])


def test_missing_chunk_piece_leaves_the_fused_tensor_out_and_says_why(tmp_path):
    config, _ = transform_project(tmp_path, mapping_changes={"v.weight": None})
    convert(config, "ckpt")
    summary = reverse(config)
    assert list(summary["missing"]) == ["attn.qkv.weight"] and "piece 2" in summary["missing"]["attn.qkv.weight"]
    assert "attn.qkv.weight" not in torch.load(summary["path"], weights_only=True)


def test_bad_input_raises_pt2ms_error(tmp_path):
    config, _ = transform_project(tmp_path)
    with pytest.raises(Pt2MsError, match="no rt.ckpt or rt.safetensors"):
        reverse(config)
    convert(config, "ckpt")
    with pytest.raises(Pt2MsError, match="unknown output format"):
        reverse(config, output_format="ckpt")
    data = json.loads(config.map_path.read_text())
    data["map"]["proj.weight"] = "proj.weight"  # no transpose: the checkpoint's [5, 3] no longer fits
    config.map_path.write_text(json.dumps(data))
    with pytest.raises(Pt2MsError, match=r"shape mismatch for 'proj.weight'.*\[5, 3\]"):
        reverse(config)


def test_a_cast_in_stage_3_is_kept_and_listed(tmp_path):
    config, state = transform_project(tmp_path)
    convert(config, "ckpt", cast_to="float16")
    summary = reverse(config)
    assert summary["recast"]["proj.weight"] == ("float32", "float16")
    assert raw(torch.load(summary["path"], weights_only=True)["proj.weight"]) == raw(state["proj.weight"].half())


def test_reverse_from_the_command_line_gives_back_the_original_bytes(mapped_project):
    root = mapped_project.parent
    assert run_script("3_pth2ckpt.py", "--config", str(mapped_project))[0] == 0
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(mapped_project), "--reverse")
    assert code == 0, stderr
    assert "restored 15 PyTorch tensors" in stdout and "missing 0" in stdout
    original = torch.load(root / "weights.pth", weights_only=True)
    # BatchNorm's num_batches_tracked counters are listed as ignored: MindSpore has no place for them.
    original = {name: tensor for name, tensor in original.items() if not name.endswith("num_batches_tracked")}
    assert_same(torch.load(root / "outputs" / "tiny" / "tiny.reversed.pth", weights_only=True), original)


@pytest.mark.parametrize("args, says", [(["--format", "pth"], "--format pth is for the reverse direction"),
                                        (["--reverse", "--format", "ckpt"], "use --format pth or safetensors")])
def test_direction_and_format_must_agree(mapped_project, args, says):
    code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(mapped_project), *args)
    assert code == 2 and says in stderr and stderr.count("\n") == 1
