"""Running a model once with hooks: the order its layers run in, and what chosen layers took and gave.

Stage 1 records execution order (to give the matcher each layer's real position), stage 2's probe and
stage 4 record the inputs and outputs of paired layers. One recorder serves both frameworks: a PyTorch
module and a MindSpore cell both take forward pre-hooks and forward hooks.

Order is the order in which layers *start* (pre-hooks), so a container comes before its children, and a
layer called twice keeps its first call.
"""

from dataclasses import dataclass, field

import numpy as np

from . import compare


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

    def position(self):
        """Layer path -> its index in execution order."""
        return {name: index for index, name in enumerate(self.order)}

    def pre_hook(self, name):
        seen = set()

        def started(_layer, _inputs):
            if self.enabled and name not in seen:
                seen.add(name)
                self.order.append(name)
        return started

    def hook(self, name, to_numpy):
        def finished(_layer, inputs, output):
            if not self.enabled or name not in self.watched:
                return
            record = self.records.setdefault(name, Record())
            record.calls += 1
            if record.calls == 1:
                record.inputs = [to_numpy(x) for _, x in compare.flatten(tuple(inputs)) if is_array(x)]
                record.output = [to_numpy(x) for _, x in compare.flatten(output) if is_array(x)]
        return finished


def is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype")


def torch_numpy(tensor):
    # A copy: an in-place op later in forward (ReLU(inplace=True)) would otherwise rewrite what we recorded.
    tensor = tensor.detach()
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
        handles.append(layer.register_forward_pre_hook(recording.pre_hook(name)))
        if name in recording.watched:
            handles.append(layer.register_forward_hook(recording.hook(name, to_numpy)))
    return handles


def record_torch(model, inputs, watched=()):
    """Run a torch model once on NumPy `inputs`; returns (Recording, outputs)."""
    import torch

    recording = Recording(set(watched))
    handles = _attach(model.named_modules(), recording, torch_numpy)
    try:
        with torch.no_grad():
            output = model(*[torch.from_numpy(np.asarray(x)) for x in inputs])
    finally:
        for handle in handles:
            handle.remove()
    return recording, output


def record_ms(net, inputs, watched=()):
    """Run a MindSpore cell once on NumPy `inputs` (PyNative); returns (Recording, outputs)."""
    import mindspore as ms

    recording = Recording(set(watched))
    handles = _attach(net.cells_and_names(), recording, ms_numpy)
    try:
        output = net(*[ms.Tensor(np.asarray(x)) for x in inputs])
    finally:
        for handle in handles:
            handle.remove()
    return recording, output
