"""Running a model once with hooks: the order its layers run in, and what chosen layers took and gave.

Stage 1 records execution order (to give the matcher each layer's real position), stage 2's probe and
stage 4 record the inputs and outputs of paired layers. One recorder serves both frameworks: a PyTorch
module and a MindSpore cell both take forward pre-hooks and forward hooks.

Order is the order in which layers *start* (pre-hooks), so a container comes before its children, and a
layer called twice keeps its first call. The stack of layers running at any moment names the layer a
failing forward pass failed in.

A recording can also follow the data (`units`): which unit's output feeds each unit, and through which
other modules. On the PyTorch side it follows functional calls too (`interpolate(mode='bicubic')`, `pad`,
`gelu`: recorded with their arguments by a TorchFunctionMode); on the MindSpore side only tensors handed
from cell to cell unchanged are followed (an op in between makes the producer unknown, "?"). Stage 4 uses
it to pair branches, to tell where a difference arises between two layers, and which layers consume a
layer's output.
"""

from dataclasses import dataclass, field

import numpy as np

from pt2ms.running import compare

# Functional calls worth naming when they run between layers: they change values in ways a port can get
# wrong (arithmetic, reshapes and indexing are followed but not named).
NAMED_CALLS = {
    "interpolate", "upsample", "upsample_bilinear", "upsample_nearest", "grid_sample", "pad", "gelu", "relu",
    "relu6", "silu", "mish", "hardswish", "hardsigmoid", "sigmoid", "tanh", "elu", "leaky_relu", "softmax",
    "log_softmax", "layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm", "normalize",
    "avg_pool1d", "avg_pool2d", "max_pool1d", "max_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_max_pool2d", "dropout", "conv1d", "conv2d", "linear", "scaled_dot_product_attention",
    "pixel_shuffle", "roll", "cumsum", "erf", "exp", "sqrt", "rsqrt", "mean", "var", "std",
}
ROOT = "input"  # the producer of the model's own inputs


class ForwardFailed(Exception):
    """A model's forward pass raised: which side, in which layer (None: outside any layer), and the error."""

    def __init__(self, side, layer, error):
        super().__init__(f"{side} forward failed in {layer or 'the top-level forward'}: "
                         f"{type(error).__name__}: {first_line(error)}")
        self.side, self.layer, self.error = side, layer, error


def first_line(error):
    """An error's first line that says something (MindSpore opens with rules of dashes and "- ..." headings)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip().strip("-=").strip()]
    telling = [line for line in lines if not line.startswith("- ")]
    return (telling or lines or [type(error).__name__])[0]


@dataclass
class Record:
    inputs: list = None            # the arrays among the positional inputs of the first call
    output: list = None            # the arrays in the output of the first call
    calls: int = 0


@dataclass
class Recording:
    """What one forward pass showed: the first-call order of every layer, and records of watched ones."""
    watched: set = field(default_factory=set)
    order: list = field(default_factory=list)       # layer paths in the order they started (first call)
    records: dict = field(default_factory=dict)     # path -> Record, for watched layers
    enabled: bool = True
    stack: list = field(default_factory=list)       # layers running now, outermost first
    failed_in: str | None = None                    # the innermost layer running when the forward raised
    units: set | None = None                        # follow the data between these layers
    leaves: set = field(default_factory=set)        # layers without children
    types: dict = field(default_factory=dict)       # path -> type name
    shapes: dict = field(default_factory=dict)      # path -> the shape of its first input array (first call)
    feeds: dict = field(default_factory=dict)       # unit -> [(producers, steps)] per input array
    calls: list = field(default_factory=list)       # [(innermost running layer, call label)] outside units
    sources: dict = field(default_factory=dict)     # id(tensor) -> (frozenset of producers, tuple of steps)
    keep: list = field(default_factory=list)        # tensors whose ids are in sources (ids stay unique)
    busy: bool = False
    sync: bool = False                              # wait for each layer's output (asynchronous MindSpore
                                                    # kernels otherwise fail in a later layer)

    def position(self):
        """Layer path -> its index in execution order."""
        return {name: index for index, name in enumerate(self.order)}

    def pre_hook(self, name, to_numpy):
        seen = set()

        def started(_layer, inputs):
            self.stack.append(name)
            if self.enabled and name not in seen:
                seen.add(name)
                self.order.append(name)
                first = next((x for _, x in compare.flatten(tuple(inputs)) if is_array(x)), None)
                if first is not None:
                    self.shapes[name] = tuple(first.shape)
                if name in self.watched:
                    # Copied now: an in-place layer (ReLU(inplace=True)) overwrites its input as it runs.
                    self.busy = True
                    record = self.records.setdefault(name, Record())
                    record.inputs = [to_numpy(x) for _, x in compare.flatten(tuple(inputs)) if is_array(x)]
                    self.busy = False
                if self.units is not None and name in self.units:
                    self.feeds[name] = [self._source(x, name) for _, x in compare.flatten(tuple(inputs)) if is_array(x)]
        return started

    def hook(self, name, to_numpy):
        def finished(_layer, inputs, output):
            if self.sync:
                for _, x in compare.flatten(output):
                    if is_array(x):
                        to_numpy(x)  # raises here, in this layer, when its kernel failed
            if self.stack and self.stack[-1] == name:
                self.stack.pop()
            if not self.enabled:
                return
            self.busy = True
            try:
                if self.units is not None:
                    self._follow(name, inputs, output)
                if name not in self.watched:
                    return
                record = self.records.setdefault(name, Record())
                record.calls += 1
                if record.calls == 1:
                    record.output = [to_numpy(x) for _, x in compare.flatten(output) if is_array(x)]
            finally:
                self.busy = False
        return finished

    # --- following the data (PyTorch) ---

    def _source(self, tensor, name=None):
        found = self.sources.get(id(tensor))
        if found is not None:
            return found
        # Made inside a unit by code we do not follow (BatchNormAct2d's batch_norm before its act): that unit.
        inside = [unit for unit in self.stack if unit in self.units and unit != name]
        return (frozenset([inside[-1]]) if inside else frozenset(["?"]), ())

    def _set(self, tensor, source):
        self.sources[id(tensor)] = source
        self.keep.append(tensor)

    def _follow(self, name, inputs, output):
        outputs = [x for _, x in compare.flatten(output) if is_array(x)]
        if name in self.units:
            for x in outputs:
                current = self.sources.get(id(x))
                # A unit's output made by a unit inside it (the act of BatchNormAct2d) stays that inner unit's.
                if current is None or not any(p.startswith(name + ".") for p in current[0]):
                    self._set(x, (frozenset([name]), ()))
        elif name in self.leaves and not any(unit in self.units for unit in self.stack):
            merged = merge([self._source(x) for _, x in compare.flatten(tuple(inputs)) if is_array(x)])
            step = f"{name} ({self.types.get(name, '?')})"
            for x in outputs:
                self._set(x, (merged[0], merged[1] + (step,)))

    def follow_call(self, func, args, kwargs, result):
        """A functional call outside any unit: its outputs come from its inputs' producers, plus this call."""
        if any(unit in self.units for unit in self.stack) or (self.stack and self.stack[-1] in self.leaves):
            return
        inputs = [x for x in _arrays(args) + _arrays(kwargs) if id(x) in self.sources]
        outputs = _arrays(result)
        if not inputs or not outputs:
            return
        producers, steps = merge([self.sources[id(x)] for x in inputs])
        name = getattr(func, "__name__", "").strip("_")
        if name in NAMED_CALLS:
            label = call_label(name, args, kwargs)
            steps += (label,)
            self.calls.append((self.stack[-1] if self.stack else "", label))
        for x in outputs:
            self._set(x, (producers, steps))


def merge(sources):
    """One (producers, steps) from several: producers joined, steps kept in first-seen order."""
    producers = frozenset().union(*[p for p, _ in sources]) if sources else frozenset(["?"])
    steps = tuple(dict.fromkeys(step for _, found in sources for step in found))
    return producers, steps


def _arrays(value):
    if isinstance(value, dict):
        return [x for inner in value.values() for x in _arrays(inner)]
    if isinstance(value, (list, tuple)):
        return [x for inner in value for x in _arrays(inner)]
    return [value] if is_array(value) else []


def call_label(name, args, kwargs):
    """interpolate(scale_factor=2, mode='bicubic'): the call's name and its non-tensor, non-None arguments."""
    shown = [repr(_plain(a)) for a in args[1:] if not _arrays(a) and a is not None]
    shown += [f"{key}={_plain(value)!r}" for key, value in kwargs.items() if value is not None and not _arrays(value)]
    return f"{name}({', '.join(shown)})"


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype")


def torch_numpy(tensor):
    # A copy: an in-place op later in forward (ReLU(inplace=True)) would otherwise rewrite what we recorded.
    tensor = tensor.detach().cpu()  # from [torch] device
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy().copy()


def ms_numpy(tensor):
    import mindspore as ms

    if tensor.dtype in (ms.bfloat16, ms.float16):
        tensor = tensor.astype(ms.float32)
    return tensor.asnumpy()


def _attach(layers, recording, to_numpy):
    """Hooks on every named layer; returns the handles to remove."""
    handles = []
    for name, layer in layers:
        if not name:
            continue  # the model itself
        recording.types[name] = type(layer).__name__
        children = layer.named_children() if hasattr(layer, "named_children") else layer.name_cells().items()
        if not any(True for _ in children):
            recording.leaves.add(name)
        handles.append(layer.register_forward_pre_hook(recording.pre_hook(name, to_numpy)))
        handles.append(layer.register_forward_hook(recording.hook(name, to_numpy)))
    return handles


def _call_mode(recording):
    """A TorchFunctionMode that follows functional calls between units (none when not following)."""
    import contextlib

    from torch.overrides import TorchFunctionMode

    if recording.units is None:
        return contextlib.nullcontext()

    class FollowCalls(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            if recording.enabled and not recording.busy:
                recording.follow_call(func, args, kwargs, result)
            return result
    return FollowCalls()


def _holding(weights):
    """The weights' hold_while_running (pt2ms.running.blocks), or nothing for a model that holds its own."""
    import contextlib

    return weights.hold_while_running() if weights is not None else contextlib.nullcontext()


def record_torch(model, inputs, watched=(), units=None, weights=None):
    """Run a torch model once on NumPy `inputs`; returns (Recording, outputs).

    units: layer paths to follow the data between (see the module docstring), or None not to follow it.
    weights: a TorchBlockWeights for a model built empty: each block's weights are read just before it runs
    and dropped after, so memory holds one block (what is recorded is NumPy, on the CPU).
    """
    import torch

    recording = Recording(set(watched), units=set(units) if units is not None else None)
    handles = _attach(model.named_modules(), recording, torch_numpy)
    tensors = [torch.from_numpy(np.asarray(x)) for x in inputs]
    for x in tensors:
        if recording.units is not None:
            recording._set(x, (frozenset([ROOT]), ()))
    try:
        with torch.no_grad(), _holding(weights), _call_mode(recording):
            output = model(*tensors)
    except Exception as error:
        recording.failed_in = recording.stack[-1] if recording.stack else None
        raise ForwardFailed("PyTorch", recording.failed_in, error) from error
    finally:
        for handle in handles:
            handle.remove()
        recording.keep, recording.sources = [], {}
    return recording, output


def record_ms(net, inputs, watched=(), sync=False, units=None, weights=None):
    """Run a MindSpore cell once on NumPy `inputs` (PyNative); returns (Recording, outputs).

    weights: an MsBlockWeights for a net built empty (see record_torch).

    A failure is located by running again with every layer's output waited for (`sync`): MindSpore runs
    kernels asynchronously, so an error otherwise surfaces in whatever layer comes next.
    """
    import mindspore as ms

    recording = Recording(set(watched), sync=sync, units=set(units) if units is not None else None)
    handles = _attach(net.cells_and_names(), recording, ms_numpy)
    tensors = [ms.Tensor(np.asarray(x)) for x in inputs]
    for x in tensors:
        if recording.units is not None:
            recording._set(x, (frozenset([ROOT]), ()))
    try:
        with _holding(weights):
            output = net(*tensors)
    except Exception as error:
        recording.failed_in = recording.stack[-1] if recording.stack else None
        if not sync:
            for handle in handles:
                handle.remove()
            handles = []
            try:
                record_ms(net, inputs, sync=True, weights=weights)
            except ForwardFailed as located:
                raise ForwardFailed("MindSpore", located.layer, error) from error
        raise ForwardFailed("MindSpore", recording.failed_in, error) from error
    finally:
        for handle in handles:
            handle.remove()
        recording.keep, recording.sources = [], {}
    return recording, output
