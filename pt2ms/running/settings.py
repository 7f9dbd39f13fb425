"""A layer's settings that shapes do not show (stride, padding, eps, GELU approximation, ...), in one vocabulary.

Both frameworks' layers are read into the same keys with the same meaning, so that two paired layers can be
compared setting by setting:
  stride, dilation, groups   ints (a tuple whose entries are all equal becomes one int)
  padding                    the padding actually applied: an int or tuple of symmetric pads, or "same" where
                             MindSpore's pad_mode='same' is not symmetric (an even span, or stride > 1 on an
                             input it does not fit); with the input's size known, what 'same' really pads
  padding_mode               zeros, reflect, replicate, circular
  bias                       whether the layer adds a bias
  eps                        normalisation epsilon
  momentum                   BatchNorm running-statistics momentum in PyTorch's convention (weight of the new
                             batch); MindSpore cells store 1 - momentum, which is read back here
  norm_axis                  the first normalised axis of a LayerNorm, counted from the end (-1: last)
  approximate                GELU: "none" (exact erf), "tanh", or "sigmoid" (x * sigmoid(1.702 x): transformers'
                             QuickGELU, MindSpore's FastGelu)
  activation                 an activation built into the layer (MindSpore Dense(activation=...)), or absent
  ceil_mode, count_include_pad, kernel_size   pooling
  mode, align_corners        upsampling
  p                          dropout probability
  negative_slope             LeakyReLU
  dim                        softmax/flatten axis
  weight_layout              "in_out" for a layer that stores its 2-D weight (in, out) and computes x @ W
                             (mindformers' Linear with transpose_b=False, Hugging Face's Conv1D); absent for (out, in)
Only settings that exist on a layer are listed; a key on one side only is itself worth showing.
"""

import json

# (setting, PyTorch attribute names, MindSpore attribute names): the first attribute found is read.
ATTRIBUTES = [
    ("stride", ("stride",), ("stride",)),
    ("dilation", ("dilation",), ("dilation",)),
    ("groups", ("groups",), ("group", "groups")),
    ("padding_mode", ("padding_mode",), ("padding_mode",)),
    ("eps", ("eps",), ("eps", "epsilon")),
    ("approximate", ("approximate",), ("approximate",)),
    ("ceil_mode", ("ceil_mode",), ("ceil_mode",)),
    ("count_include_pad", ("count_include_pad",), ("count_include_pad",)),
    ("mode", ("mode",), ("mode",)),
    ("align_corners", ("align_corners",), ("align_corners",)),
    ("p", ("p",), ("p",)),
    ("negative_slope", ("negative_slope",), ("alpha",)),
    ("dim", ("dim", "start_dim"), ("axis", "start_dim")),
]
# PyTorch layers that store their 2-D weight (in, out) and compute x @ W: Hugging Face's GPT-2 Conv1D.
TORCH_IN_OUT = {"Conv1D"}
# Layer kinds whose MindSpore cells carry one leading dummy spatial dim (MindSpore builds them on 2-D ops).
MS_ONE_D = {"Conv1d", "Conv1dTranspose", "MaxPool1d", "AvgPool1d"}
POOLS = ("MaxPool", "AvgPool")
# GELUs whose formula is fixed by their class (transformers.activations, MindSpore's FastGelu), as `approximate`.
# transformers' GELUActivation and GELUTanh keep theirs in `act` (a function, or a partial naming it).
CLASS_APPROXIMATE = {
    "GELUActivation": "none", "NewGELUActivation": "tanh", "FastGELUActivation": "tanh",
    "AccurateGELUActivation": "tanh", "GELUTanh": "tanh", "PytorchGELUTanh": "tanh", "QuickGELUActivation": "sigmoid",
    "FastGelu": "sigmoid",
}
# MindSpore pooling keeps some settings on its primitive only.
PRIMITIVE_ATTRIBUTES = {"ceil_mode": "ceil_mode", "count_include_pad": "count_include_pad"}


def _collapse(value):
    """(2, 2) -> 2; lists -> tuples; other values unchanged."""
    if isinstance(value, (list, tuple)):
        value = tuple(_collapse(item) for item in value)
        return value[0] if value and all(item == value[0] for item in value) else value
    return value


def _first(layer, names):
    for name in names:
        if name in vars(layer) or hasattr(type(layer), name) and not callable(getattr(type(layer), name)):
            value = getattr(layer, name, None)
            if value is not None and not callable(value):
                return value
    return None


def _per_dim(value, count):
    return tuple(value) if isinstance(value, (tuple, list)) else (value if value is not None else 1,) * count


def _symmetric_same(kernel, stride, dilation, size=None):
    """The symmetric padding equal to pad_mode='same', or "same" where 'same' pads unevenly (or may, for all
    this knows). size: the input's spatial dims, when known.

    'same' pads (ceil(n / s) - 1) * s + d * (k - 1) + 1 - n in all (at least 0), the odd one at the end: a
    1-wide kernel never pads, a kernel no wider than its stride pads nothing on inputs the stride divides.
    """
    count = len(kernel) if isinstance(kernel, tuple) else len(size) if size else 1
    kernels = _per_dim(kernel, count)  # one int stands for every dim (settings collapse equal entries)
    sizes = tuple(size)[-count:] if size and len(size) >= count else (None,) * count
    pads = []
    for k, s, d, n in zip(kernels, _per_dim(stride, count), _per_dim(dilation, count), sizes):
        span = d * (k - 1) + 1
        if n is not None:
            total = max((-(-n // s) - 1) * s + span - n, 0)
        elif s == 1 or span == 1:
            total = max(span - 1, 0) if s == 1 else 0
        else:
            return "same"  # stride > 1 on an input of unknown size: the padding depends on it
        if total % 2:
            return "same"
        pads.append(total // 2)
    return _collapse(tuple(pads))


def torch_settings(module, size=None):
    """The settings of a torch module, as a dict in this module's vocabulary (size: its input's spatial dims,
    when known, for the padding of padding='same')."""
    found = {}
    for key, torch_names, _ in ATTRIBUTES:
        value = _first(module, torch_names)
        if value is not None:
            found[key] = _collapse(value)
    name = type(module).__name__
    if hasattr(module, "padding") and not callable(module.padding):
        padding = _collapse(module.padding)
        if padding == "same":
            padding = _symmetric_same(_collapse(module.kernel_size), found.get("stride", 1), found.get("dilation", 1),
                                      size)
        found["padding"] = 0 if padding == "valid" else padding
    if hasattr(module, "kernel_size") and name.startswith(POOLS):
        found["kernel_size"] = _collapse(module.kernel_size)
    if name.startswith(POOLS) and found.get("stride") is None and "kernel_size" in found:
        found["stride"] = found["kernel_size"]  # torch pools default their stride to the kernel
    if "bias" in dict(module.named_parameters(recurse=False)) or hasattr(module, "bias"):
        found["bias"] = getattr(module, "bias", None) is not None
    if name.startswith("BatchNorm") or name == "SyncBatchNorm":
        found["momentum"] = module.momentum
    if name == "LayerNorm":
        found["norm_axis"] = -len(module.normalized_shape)
    approximate = found.get("approximate", _class_approximate(module))
    if approximate is not None:
        found["approximate"] = str(approximate)
    if name in TORCH_IN_OUT:
        found["weight_layout"] = "in_out"
    if name == "Upsample" and found.get("align_corners") is None:
        found["align_corners"] = False
    return _plain(found)


def ms_settings(cell, size=None):
    """The settings of a MindSpore cell (nn or mint), as a dict in this module's vocabulary (size: its input's
    spatial dims, when known: what pad_mode='same' pads depends on it at stride > 1)."""
    found = {}
    name = type(cell).__name__
    for key, _, ms_names in ATTRIBUTES:
        value = _first(cell, ms_names)
        if value is not None:
            found[key] = _collapse(value[1:] if name in MS_ONE_D and isinstance(value, tuple) else value)
    _ms_primitive_settings(cell, found)
    if name.startswith(POOLS):
        found["kernel_size"] = _collapse(cell.kernel_size)
    padding = _ms_padding(cell, found, size)
    if padding is not None:
        found["padding"] = padding
    if hasattr(cell, "has_bias"):
        found["bias"] = bool(cell.has_bias)
    elif "bias" in {p.name.rpartition(".")[2] for p in cell.get_parameters(expand=False)}:
        found["bias"] = True
    if name.startswith("BatchNorm") and getattr(cell, "momentum", None) is not None:  # BatchNorm3d: in bn2d
        found["momentum"] = round(float(cell.momentum), 12)  # stored as 1 - momentum: PyTorch's convention
    if name == "LayerNorm" and hasattr(cell, "begin_norm_axis"):
        found["norm_axis"] = cell.begin_norm_axis
    if isinstance(found.get("approximate"), bool):  # older MindSpore: approximate=True meant tanh
        found["approximate"] = "tanh" if found["approximate"] else "none"
    if "approximate" not in found and _class_approximate(cell) is not None:
        found["approximate"] = _class_approximate(cell)
    activation = getattr(cell, "activation", None) if getattr(cell, "activation_flag", False) else None
    if activation is not None:
        found["activation"] = _activation_name(activation)
    if vars(cell).get("transpose_b") is False:  # mindformers' Linear(transpose_b=False) stores its weight (in, out)
        found["weight_layout"] = "in_out"
    if isinstance(found.get("mode"), str) and name.startswith(("Upsample", "Resize", "Interpolate")):
        found["mode"] = found["mode"].lower()
    return _plain(found)


def _class_approximate(layer):
    """The GELU formula a layer's class fixes ("none", "tanh", "sigmoid"), or None for other layers."""
    approximate = CLASS_APPROXIMATE.get(type(layer).__name__)
    act = vars(layer).get("act")
    keywords = getattr(act, "keywords", None)  # functools.partial(gelu, approximate="tanh")
    if isinstance(keywords, dict) and "approximate" in keywords:
        return str(keywords["approximate"])
    return approximate


def _primitive_attr(cell, attr):
    """An attribute of one of the cell's primitives (MindSpore pooling keeps settings there), or None."""
    for value in vars(cell).values():
        attrs = getattr(value, "attrs", None)
        if isinstance(attrs, dict) and attr in attrs:
            return attrs[attr]
    return None


def _ms_primitive_settings(cell, found):
    for key, attr in PRIMITIVE_ATTRIBUTES.items():
        value = _primitive_attr(cell, attr)
        if value is not None and key not in found:
            found[key] = _collapse(value)


def _ms_padding(cell, found, size=None):
    """The padding a MindSpore cell applies, in the shared vocabulary (see the module docstring)."""
    pad_mode = getattr(cell, "pad_mode", None)
    if pad_mode is None:
        return _collapse(cell.padding) if hasattr(cell, "padding") and not callable(cell.padding) else None
    pad_mode = str(pad_mode).lower()
    if pad_mode == "valid":
        return 0
    if pad_mode == "same":
        kernel = getattr(cell, "kernel_size", 1)
        if type(cell).__name__ in MS_ONE_D and isinstance(kernel, tuple):
            kernel = kernel[1:]
        return _symmetric_same(_collapse(kernel), found.get("stride", 1), found.get("dilation", 1), size)
    padding = _collapse(getattr(cell, "padding", None))
    if padding is None:  # AvgPool2d keeps it on its 3-D primitive: (front, back, top, bottom, left, right)
        padding = _collapse(_primitive_attr(cell, "pad") or 0)
        if isinstance(padding, tuple) and len(padding) == 6:
            padding = _collapse(padding[2:]) if padding[2:4] != padding[4:] or padding[2] != padding[3] \
                else padding[2]
    if isinstance(padding, tuple) and len(padding) == 4 and padding[0] == padding[1] and padding[2] == padding[3]:
        padding = _collapse((padding[0], padding[2]))  # (top, bottom, left, right) -> per-dim symmetric
    if isinstance(padding, tuple) and len(padding) == 3 and type(cell).__name__.startswith(POOLS):
        padding = _collapse(padding[1:])  # 2-D pools run on a 3-D primitive: (depth, h, w)
    return padding


def _activation_name(activation):
    text = type(activation).__name__
    approximate = getattr(activation, "approximate", None)
    return f"{text}(approximate={approximate})" if approximate is not None else text


def _plain(found):
    """JSON-friendly values: tuples as lists, floats rounded past float32 noise, other objects as text."""
    def plain(value):
        if isinstance(value, tuple):
            return [plain(item) for item in value]
        if isinstance(value, float):
            return float(f"{value:.6g}")
        if isinstance(value, (bool, int, str)) or value is None:
            return value
        return str(value)
    return {key: plain(value) for key, value in sorted(found.items())}


def settings_text(settings):
    """A compact JSON string for inventories (keys sorted)."""
    return json.dumps(settings, separators=(",", ":"), sort_keys=True) if settings else ""


def differences(ms, torch):
    """[(setting, MindSpore value, PyTorch value)] for settings the two layers state differently.

    A setting only one side states is not a difference (a MindSpore Dense has no dropout p), except the
    built-in activation, which changes what the layer computes.
    """
    found = []
    for key in sorted(set(ms) | set(torch)):
        if key in ms and key in torch and ms[key] != torch[key]:
            found.append((key, ms[key], torch[key]))
        elif key == "activation" and key in ms:
            found.append((key, ms[key], None))
    return found


def paired_settings(pairs, modules, cells, sizes=None):
    """For [(cell, module)] pairs: (the settings that differ, one dict per setting in the order of `pairs`;
    {module path: {setting: value}} of those both layers state alike, which stage 4 names around a block's
    inline code).

    sizes: {module path: its input's spatial dims} from a recorded pass; both layers are fed alike.
    """
    found, alike, sizes = [], {}, sizes or {}
    for cell, module in pairs:
        size = sizes.get(module)
        ms, torch = ms_settings(cells[cell], size), torch_settings(modules[module], size)
        alike[module] = {key: value for key, value in torch.items() if key in ms and ms[key] == value}
        for key, ms_value, torch_value in differences(ms, torch):
            found.append({"torch": module, "mindspore": cell, "torch_type": type(modules[module]).__name__,
                          "mindspore_type": type(cells[cell]).__name__, "setting": key,
                          "mindspore_value": ms_value, "torch_value": torch_value})
    return found, alike
