"""Both models with their weights loaded (strictly, wrapper prefixes dropped), and the seeded inputs they run on.

Stage 1 runs them once (execution order), stage 2's probe and stage 4 run them with the real weights.
"""

import numpy as np

from pt2ms.config import HF_FACTORY
from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import open_torch_checkpoint
from pt2ms.formats.inventory import strip_to_known
from pt2ms.running.build import build_ms_model, build_torch_model
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
    """The MindSpore model with the converted checkpoint loaded; fails on anything not loaded by mistake."""
    import mindspore as ms

    net = build_ms_model(config)
    try:
        params = ms.load_checkpoint(str(ckpt_path), format=ckpt_path.suffix.lstrip("."))
    except Exception as error:
        raise Pt2MsError(f"{ckpt_path}: MindSpore cannot load it ({str(error).splitlines()[0]}); run stage 3 first") from None
    names = {parameter.name for parameter in net.get_parameters()}
    # A checkpoint written for a training wrapper's names (optimizer.x) loads into the bare model as x.
    params = {strip_to_known(name, names): value for name, value in params.items()}
    dtypes = {name: str(value.dtype) for name, value in params.items()}
    param_not_load, ckpt_not_load = ms.load_param_into_net(net, params, strict_load=True)
    deliberate = {strip_to_known(name, names) for name, value in map_data["map"].items() if value is None}
    missing = [name for name in param_not_load if name not in deliberate]
    if missing or ckpt_not_load:
        raise Pt2MsError(f"{ckpt_path}: does not fit the MindSpore model: not loaded {missing[:5]}, "
                         f"unused in the checkpoint {list(ckpt_not_load)[:5]}")
    notes = [f"{name}: checkpoint holds {dtypes[name]}, the model casts it to {parameter.dtype}"
             for name, parameter in net.parameters_dict().items()
             if name in dtypes and dtypes[name] != str(parameter.dtype)]
    notes += [f"{name}: left at its initial value (null in the map)" for name in param_not_load]
    net.set_train(False)
    return net, notes
