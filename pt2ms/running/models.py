"""Both models with their weights loaded (strictly, wrapper prefixes dropped), and the seeded inputs they run on.

Stage 1 runs them once (execution order), stage 2's probe and stage 4 run them with the real weights.
"""

from collections import Counter

import numpy as np

from pt2ms.config import HF_FACTORY
from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import open_torch_checkpoint
from pt2ms.formats.inventory import strip_to_known
from pt2ms.formats.tensors import FLOAT_DTYPES
from pt2ms.running.build import build_ms_model, build_torch_model
from pt2ms.running.devices import torch_device, use_ms_device
from pt2ms.running.hf import load_folder

NUMPY_INPUT_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64,
                      "int64": np.int64, "int32": np.int32, "bool": np.bool_}


def make_inputs(specs, seed, source="the config"):
    """Seeded inputs: normal(0, 1) floats, uniform integers in [low, high)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for index, spec in enumerate(specs):
        dtype = NUMPY_INPUT_DTYPES.get(spec.dtype)
        if dtype is None:
            raise Pt2MsError(f"{source}: [verify] inputs: input {index}: dtype {spec.dtype!r} is not supported (use one of {', '.join(NUMPY_INPUT_DTYPES)})")
        if any(size < 1 for size in spec.shape):
            # An input without values gives outputs without values: the run would verify nothing.
            raise Pt2MsError(f"{source}: [verify] inputs: input {index} has shape {list(spec.shape)}; "
                             "give every dimension a size of at least 1")
        if np.issubdtype(dtype, np.floating):
            arrays.append(rng.standard_normal(spec.shape).astype(dtype))
        else:
            arrays.append(rng.integers(spec.low, spec.high, size=spec.shape).astype(dtype))
    return arrays


# --- loading both models -------------------------------------------------------------------------------

def common_path(paths):
    """The longest dotted prefix all layer paths share ("" for the model itself): the smallest enclosing layer."""
    parts = [path.split(".") if path else [] for path in paths]
    common = []
    for words in zip(*parts):
        if len(set(words)) > 1:
            break
        common.append(words[0])
    return ".".join(common)


def load_torch(config):
    """The PyTorch model with the checkpoint loaded strictly (wrapper prefixes such as module. dropped).

    A Hugging Face folder with no factory is loaded by transformers itself (running.hf.load_folder), so its
    key renames and weight conversions apply: the model may hold its tensors under other names than the files.
    """
    import torch

    if config.torch.model == HF_FACTORY:
        return load_folder(**config.torch.kwargs)
    model = build_torch_model(config)
    expected = model.state_dict()
    state = {}
    for name, tensor in open_torch_checkpoint(config.torch.checkpoint, config.torch.state_dict_key,
                                              config.torch.trust_pickle).items():
        array = tensor.read()
        value = torch.from_numpy(array).view(torch.bfloat16) if tensor.dtype == "bfloat16" else torch.from_numpy(array)
        state[strip_to_known(name, expected)] = value
    # A tied weight (an LM head sharing the embedding) is saved once, e.g. by save_pretrained: loading its
    # partner fills it, because in the model the two are one tensor.
    tied = _tied_to_loaded(model, state)
    missing = [name for name in expected if name not in state and name not in tied]
    unexpected = [name for name in state if name not in expected]
    if missing or unexpected:
        raise Pt2MsError(f"{config.torch.checkpoint}: does not fit the PyTorch model {config.torch.model}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.load_state_dict(state, strict=not tied)
    return model.eval()


def _tied_to_loaded(model, state):
    """Names of the model's parameters that share their tensor with one the checkpoint holds."""
    owners = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(parameter), []).append(name)
    return {name for names in owners.values() if any(n in state for n in names) for name in names
            if name not in state}


def load_ms(config, ckpt_path, map_data):
    """The MindSpore model with the converted checkpoint loaded; fails on anything not loaded by mistake.

    Returns (net, notes, casts): every float tensor of the checkpoint and every float parameter of the model is
    cast to [verify] dtype first (load_param_into_net refuses a bf16 tensor for a float32 Parameter), and `casts`
    counts what was cast, as {(what, from dtype, to dtype): count}.
    """
    import mindspore as ms

    use_ms_device(config)
    net = build_ms_model(config)
    params = read_ms_parameters(ckpt_path)
    names = {parameter.name for parameter in net.get_parameters()}
    # A checkpoint written for a training wrapper's names (optimizer.x) loads into the bare model as x.
    params = {strip_to_known(name, names): value for name, value in params.items()}
    casts = cast_ms(net, params, config.verify.dtype)
    param_not_load, ckpt_not_load = ms.load_param_into_net(net, params, strict_load=True)
    deliberate = {strip_to_known(name, names) for name, value in map_data["map"].items() if value is None}
    missing = [name for name in param_not_load if name not in deliberate]
    if missing or ckpt_not_load:
        raise Pt2MsError(f"{ckpt_path}: does not fit the MindSpore model: not loaded {missing[:5]}, "
                         f"unused in the checkpoint {list(ckpt_not_load)[:5]}")
    notes = [f"{name}: left at its initial value (null in the map)" for name in param_not_load]
    net.set_train(False)
    return net, notes, casts


def read_ms_parameters(ckpt_path):
    """name -> Parameter from stage 3's output: one .ckpt/.safetensors file, or a shard index (read by MindSpore)."""
    import mindspore as ms

    from pt2ms.formats.shards import is_index, shard_files

    try:
        if is_index(ckpt_path):
            params = {}
            for shard in shard_files(ckpt_path):
                params.update(ms.load_checkpoint(str(shard), format="safetensors"))
            return params
        return ms.load_checkpoint(str(ckpt_path), format=ckpt_path.suffix.lstrip("."))
    except Pt2MsError:
        raise
    except Exception as error:
        raise Pt2MsError(f"{ckpt_path}: MindSpore cannot load it ({str(error).splitlines()[0]}); run stage 3 first") from None


def _float_name(dtype):
    """"bfloat16" for a float dtype of either framework (mstype BFloat16, torch.bfloat16), None for others."""
    name = str(dtype).lower().removeprefix("torch.")
    return name if name in FLOAT_DTYPES else None


def cast_ms(net, params, dtype):
    """Cast the model's float parameters and the checkpoint's float tensors to `dtype` in place; returns the casts.

    Inputs are cast too where the dtype is not float32 (Cell.to_float, MindSpore's own way; it takes float16 and
    bfloat16; float64 inputs are cast at the model's entry).
    """
    import mindspore as ms

    target, casts = getattr(ms, dtype), Counter()
    for parameter in net.get_parameters():
        before = _float_name(parameter.dtype)
        if before and before != dtype:
            parameter.set_dtype(target)
            casts[("model parameters", before, dtype)] += 1
    for name, value in params.items():
        before = _float_name(value.dtype)
        if before and before != dtype:
            params[name] = ms.Parameter(value.astype(target), name=value.name, requires_grad=value.requires_grad)
            casts[("checkpoint tensors", before, dtype)] += 1
    if dtype in ("float16", "bfloat16"):
        net.to_float(target)
    elif dtype == "float64":
        net.register_forward_pre_hook(lambda _cell, inputs: tuple(_ms_cast(x, target) for x in inputs))
    return casts


def _ms_cast(value, target):
    return value.astype(target) if hasattr(value, "dtype") and _float_name(value.dtype) else value


def cast_torch(model, config):
    """Move the PyTorch model to [torch] device and cast it to [verify] dtype (floats only); returns the casts.

    The count of checkpoint tensors cast comes from stage 1's inventory (the checkpoint's own dtypes):
    load_state_dict already cast them into the model's dtype, and .to() casts the model. Inputs go to the device,
    and float inputs are cast, at the model's entry.
    """
    import torch

    from pt2ms.formats.inventory import read_inventory

    dtype, casts, device = config.verify.dtype, Counter(), torch_device(config)
    target = getattr(torch, dtype)
    for parameter in list(model.parameters()) + list(model.buffers()):
        before = _float_name(parameter.dtype)
        if before and before != dtype:
            casts[("model parameters", before, dtype)] += 1
    if any(tensor.is_meta for tensor in model.parameters()):
        model.to(dtype=target)  # built empty: its blocks are read onto the device as they run (running.blocks)
    else:
        model.to(device=device, dtype=target)
    inventory = config.output_dir / "torch_params.csv"
    for row in read_inventory(inventory) if inventory.is_file() else []:
        if row.dtype in FLOAT_DTYPES and row.dtype != dtype:
            casts[("checkpoint tensors", row.dtype, dtype)] += 1
    if dtype != "float32" or device.type != "cpu":
        model.register_forward_pre_hook(lambda _module, inputs: tuple(
            (x.to(device, target) if x.is_floating_point() else x.to(device)) if torch.is_tensor(x) else x
            for x in inputs))
    return casts


def cast_summary(dtype, torch_casts, ms_casts):
    """One sentence on what stage 4 cast: "cast 14 tensors bfloat16 -> float32 on the MindSpore side; ..."."""
    parts = []
    for side, casts in (("MindSpore", ms_casts), ("PyTorch", torch_casts)):
        done = [f"{count} {what} {before} -> {after}" for (what, before, after), count in sorted(casts.items())]
        parts.append(f"cast {', '.join(done)} on the {side} side" if done else f"nothing cast on the {side} side")
    return f"both models computed in {dtype}: " + "; ".join(parts)
