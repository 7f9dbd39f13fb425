"""Blocks: the unit of memory. A model built empty holds its weights one block at a time, read by name.

A *block* is a layer whose parameters are held together: each child of the model's largest list of layers
(`ModuleList`, `Sequential`, `CellList`, `SequentialCell`: the transformer layers of an LLM, the stages of a
CNN), and, around that list, every other layer with parameters (embeddings, the final norm, the head) as a
block of its own. A layer on the way down to the list keeps its own parameters (a ViT's `cls_token` on the
model itself) as a block that holds only those (`Block.whole` False). A model without such a list is one block.

    from pt2ms.running.blocks import TorchBlockWeights, MsBlockWeights, blocks_of_torch, empty_torch

    model = empty_torch(build)                        # parameters on the meta device, buffers real
    weights = TorchBlockWeights(model, open_torch_checkpoint(path))
    with weights.hold_while_running():                # each block read just before it runs, dropped after
        output = model(x)
    with weights.holding("model.layers.3"):           # or one block by hand (run it on recorded inputs)
        y = weights.layer("model.layers.3")(h)

`TorchBlockWeights(model, tensors)`: `tensors` maps checkpoint names to LazyTensors
(`pt2ms.formats.checkpoint.open_torch_checkpoint`: safetensors and zip `.pth` read one tensor per `.read()`);
wrapper prefixes (`module.`) are dropped and a tied weight missing from the file (`lm_head.weight` saved once
as `embed_tokens.weight`) is read under its partner's name. `.materialise(path)` puts real tensors into the
block's parameters (accelerate's `set_module_tensor_to_device`, which casts a bf16 file to the model's
float32), `.release(path)` puts the meta parameters back, so the data is freed. Buffers (BatchNorm
statistics) are small and stay real: those the file holds are loaded once, when the object is made.

`MsBlockWeights(net, tensors=None)` does the same for a MindSpore Cell built under
`mindspore.nn.utils.no_init_parameters()`: `tensors` maps `Parameter.name` to LazyTensors (a converted
checkpoint, `open_ms_checkpoint`); with None (stage 1, before anything is converted) each Parameter gets its
own initialiser's values. Materialising puts a real Parameter of the same name in the cell's place of the
empty one; releasing puts the empty one back. MindSpore initialises a cell's empty parameters when it is
first called, before any hook runs, so while held every cell is marked initialised (its `_init_flag`).

Both sides: `.blocks` (list of Block, definition order), `.layer(path)`, `.missing` (names not in `tensors`, or there
with another shape, that ran with random values when `missing="random"`; with "error", the default, such a
name is refused),
`.touched()` (MindSpore: empty Parameters that something used outside their block, so ran on random values).
"""

import gc
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from pt2ms.errors import Pt2MsError
from pt2ms.formats.ckpt import FROM_MS_TYPE
from pt2ms.formats.inventory import strip_to_known
from pt2ms.formats.tensors import bfloat16_to_float32, cast

LIST_TYPES = ("ModuleList", "Sequential", "CellList", "SequentialCell")
# A collection costs tens of milliseconds: released MindSpore blocks are collected once this many bytes wait.
COLLECT_BYTES = 64 << 20


@dataclass(frozen=True)
class Block:
    path: str        # the layer it hangs on ("" is the model itself)
    names: tuple     # its parameters' checkpoint names (torch: state-dict keys; MindSpore: Parameter.name)
    numel: int       # values in those parameters
    whole: bool      # True: the layer and all under it; False: only the layer's own parameters


def _join(path, name):
    return f"{path}.{name}" if path else name


def find_blocks(root, children, own, size):
    """Blocks of a layer tree: children(layer) -> [(name, child)], own(layer) -> [(name, parameter)],
    size(parameter) -> values. Returns [(path, layer, whole, slots)] in definition order, a slot being
    (owner layer, attribute, parameter, attribute path)."""
    layers, sizes = {}, {}

    def walk(path, layer):
        layers[path] = layer
        sizes[path] = sum(size(p) for _, p in own(layer)) + sum(walk(_join(path, n), c) for n, c in children(layer))
        return sizes[path]

    walk("", root)
    lists = [path for path, layer in layers.items() if type(layer).__name__ in LIST_TYPES
             and len(children(layer)) >= 2 and sizes[path]]
    if not lists:
        return [("", root, True, _slots("", root, children, own))]
    spine = max(lists, key=lambda path: (sizes[path], -path.count(".")))
    found = []

    def cover(path, layer):
        if path == spine or not (path == "" or spine.startswith(path + ".")):
            if sizes[path] and path != spine:
                found.append((path, layer, True, _slots(path, layer, children, own)))
            if path == spine:
                for name, child in children(layer):
                    child_path = _join(path, name)
                    if sizes[child_path]:
                        found.append((child_path, child, True, _slots(child_path, child, children, own)))
            return
        mine = [(layer, attr, p, _join(path, attr)) for attr, p in own(layer)]
        if mine:
            found.append((path, layer, False, mine))
        for name, child in children(layer):
            cover(_join(path, name), child)

    cover("", root)
    return found


def _slots(path, layer, children, own):
    """A slot for every parameter under `layer`, a shared one under each of its owners."""
    slots = [(layer, attr, p, _join(path, attr)) for attr, p in own(layer)]
    for name, child in children(layer):
        slots += _slots(_join(path, name), child, children, own)
    return slots


# --- PyTorch ---------------------------------------------------------------------------------------------

def _torch_children(module):
    return [(name, child) for name, child in module._modules.items() if child is not None]


def _torch_own(module):
    return [(name, p) for name, p in module._parameters.items() if p is not None]


def _torch_blocks(model):
    return find_blocks(model, _torch_children, _torch_own, lambda p: p.numel())


def blocks_of_torch(model):
    """The blocks of a torch module (see the module docstring), names as in its state dict."""
    return _as_blocks(_torch_blocks(model), lambda slot: slot[3])


def _torch_names(model):
    """id(parameter) -> its state-dict names (a tied parameter has several)."""
    names = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    return names


def _as_blocks(found, name_of):
    blocks = []
    for path, _, whole, slots in found:
        names = tuple(dict.fromkeys(name_of(slot) for slot in slots))
        unique = {id(slot[2]): slot[2] for slot in slots}
        blocks.append(Block(path, names, sum(math.prod(p.shape) for p in unique.values()), whole))
    return blocks


def empty_torch(build):
    """`build()` with no parameter memory: parameters on the meta device (accelerate's init_empty_weights),
    buffers real, so values computed at construction (rotary frequencies) are kept."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = build()
    # init_empty_weights gives every registered parameter a fresh meta tensor, which unties a tied LM head;
    # transformers ties it again with its own method (a plain module's ties made in __init__ stay untied).
    if callable(getattr(model, "tie_weights", None)):
        model.tie_weights()
    return model


class _BlockWeights:
    """What both sides' block weights share: holding one block for a `with`."""

    @contextmanager
    def holding(self, path):
        """The block materialised inside the `with`, released after."""
        self.materialise(path)
        try:
            yield self._layers[path]
        finally:
            self.release(path)

    @contextmanager
    def _hooked(self, **after_options):
        """Hooks on every block: materialised just before it runs, released after it; whatever is still held
        (a run that failed) released at the end. `after_options` go to the framework's forward-hook call."""
        handles = []
        for block in self.blocks:
            layer, path = self._layers[block.path], block.path
            handles.append(layer.register_forward_pre_hook(lambda *_, path=path: self.materialise(path)))
            handles.append(layer.register_forward_hook(lambda *_, path=path: self.release(path), **after_options))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            for path in list(self._held):
                self.release(path)


class TorchBlockWeights(_BlockWeights):
    """A torch model's weights held one block at a time, read by name from `tensors` (see the module docstring)."""

    def __init__(self, model, tensors, device="cpu", missing="error"):
        names = _torch_names(model)
        self.model, self.device, self.on_missing, self.missing = model, device, missing, []
        found = _torch_blocks(model)
        self.blocks = _as_blocks(found, lambda slot: slot[3])
        self._layers = {path: layer for path, layer, _, _ in found}
        self._slots = {path: slots for path, _, _, slots in found}
        self._names = names
        known = {name for group in names.values() for name in group} | dict(model.named_buffers()).keys()
        self._tensors = {strip_to_known(name, known): tensor for name, tensor in tensors.items()}
        self._held = set()
        self._load_buffers()

    def layer(self, path):
        return self._layers[path]

    def _load_buffers(self):
        from accelerate.utils import set_module_tensor_to_device

        for name, buffer in self.model.named_buffers():
            if name in self._tensors and self._fits(name, buffer):
                owner, _, attr = name.rpartition(".")
                set_module_tensor_to_device(self.model.get_submodule(owner), attr, self.device,
                                            value=self._torch_value(name))

    def _fits(self, name, like):
        """Whether the file's tensor has the model's shape; with missing="error" a misfit is refused."""
        tensor = self._tensors[name]
        if tuple(tensor.shape) == tuple(like.shape):
            return True
        if self.on_missing != "random":
            raise Pt2MsError(f"{tensor.source or 'checkpoint'}: {name!r} is {list(tensor.shape)} in the file, "
                             f"{list(like.shape)} in the model")
        return False

    def _torch_value(self, name):
        import torch

        tensor = self._tensors[name]
        array = tensor.read()
        value = torch.from_numpy(np.require(array, requirements="C"))
        return value.view(torch.bfloat16) if tensor.dtype == "bfloat16" else value

    def _value_of(self, parameter, name):
        import torch

        # Its own name first, then a tied partner's (a tied lm_head saved once, as the embedding).
        for alias in [name, *self._names[id(parameter)]]:
            if alias in self._tensors and self._fits(alias, parameter):
                return self._torch_value(alias)
        if self.on_missing != "random":
            raise Pt2MsError(f"checkpoint: holds no tensor {name!r} that the PyTorch model has")
        self.missing.append(name)
        generator = torch.Generator().manual_seed(len(self.missing))
        if parameter.dtype.is_floating_point:
            return torch.randn(parameter.shape, generator=generator) * 0.02
        return torch.zeros(parameter.shape, dtype=parameter.dtype)

    def materialise(self, path):
        """Read the block's tensors into its parameters (no-op when it is held already)."""
        from accelerate.utils import set_module_tensor_to_device

        if path in self._held:
            return
        for owner, attr, shell, name in self._slots[path]:
            set_module_tensor_to_device(owner, attr, self.device, value=self._value_of(shell, name))
        self._held.add(path)

    def release(self, path):
        """Put the block's empty (meta) parameters back; its data is freed."""
        for owner, attr, shell, _ in self._slots[path]:
            owner._parameters[attr] = shell
        self._held.discard(path)

    def hold_while_running(self):
        """Forward hooks on every block: materialised just before it runs, released after (errors too)."""
        return self._hooked(always_call=True)


# --- MindSpore -------------------------------------------------------------------------------------------

def _ms_children(cell):
    return [(name, child) for name, child in cell._cells.items() if child is not None]


def _ms_own(cell):
    return [(name, p) for name, p in cell._params.items() if p is not None]


def _ms_blocks(net):
    return find_blocks(net, _ms_children, _ms_own, lambda p: math.prod(p.shape))


def blocks_of_ms(net):
    """The blocks of a MindSpore cell (see the module docstring), names as Parameter.name."""
    return _as_blocks(_ms_blocks(net), lambda slot: slot[2].name)


def empty_ms(build):
    """`build()` with no parameter memory: Parameters stay uninitialised (`has_init`) until data is set."""
    from mindspore.nn.utils import no_init_parameters

    with no_init_parameters():
        return build()


class MsBlockWeights(_BlockWeights):
    """A MindSpore cell's weights held one block at a time (see the module docstring)."""

    def __init__(self, net, tensors=None, missing="error"):
        self.net, self.on_missing, self.missing = net, missing, []
        found = _ms_blocks(net)
        self.blocks = _as_blocks(found, lambda slot: slot[2].name)
        self._layers = {path: layer for path, layer, _, _ in found}
        self._numel, self._waiting = {block.path: block.numel for block in self.blocks}, 0
        self._slots = {path: slots for path, _, _, slots in found}
        names = {p.name for p in net.get_parameters()}
        self._tensors = None if tensors is None else {strip_to_known(n, names): t for n, t in tensors.items()}
        self._held = set()
        self._empty = {id(shell): shell for slots in self._slots.values() for _, _, shell, _ in slots
                       if shell.has_init}

    def layer(self, path):
        return self._layers[path]

    def touched(self):
        """Names of empty Parameters that were initialised behind our back (used outside their block)."""
        return [shell.name for shell in self._empty.values() if not shell.has_init]

    def _value_of(self, shell):
        import mindspore as ms
        from mindspore.common.initializer import initializer

        found = self._tensors.get(shell.name) if self._tensors is not None else None
        if found is not None and (tuple(found.shape) == tuple(shell.shape) or self.on_missing != "random"):
            return _ms_tensor(found, shell)
        if self._tensors is not None:
            if self.on_missing != "random":
                raise Pt2MsError(f"checkpoint: holds no tensor {shell.name!r} that the MindSpore model has")
            self.missing.append(shell.name)
        if not shell.has_init:
            return None  # built with data (a Parameter made from a Tensor): it holds its memory anyway
        init = shell.init if shell.init is not None else ms.common.initializer.Normal(0.02)
        return initializer(init, shell.shape, shell.dtype).init_data()

    def materialise(self, path):
        """Put a real Parameter (same name, data read or initialised) in place of each empty one of the block."""
        from mindspore import Parameter

        if path in self._held:
            return
        for cell, attr, shell, _ in self._slots[path]:
            data = self._value_of(shell)
            if data is not None:
                cell._params[attr] = Parameter(data, name=shell.name, requires_grad=shell.requires_grad)
        self._held.add(path)

    def release(self, path):
        """Put the block's empty Parameters back; the data is freed."""
        for cell, attr, shell, _ in self._slots[path]:
            cell._params[attr] = shell
        self._held.discard(path)
        # A MindSpore Parameter sits in a reference cycle with its ParamInfo: without a collection its data
        # outlives the block (measured: 8 blocks of 134 MB all still resident after the run, 1.1 GB against 0.07).
        self._waiting += 4 * self._numel.get(path, 0)
        if self._waiting >= COLLECT_BYTES:
            gc.collect()
            self._waiting = 0

    @contextmanager
    def hold_while_running(self):
        """Cell pre-hooks materialise each block as it starts, forward hooks release it when it ends."""
        cells = [cell for _, cell in self.net.cells_and_names()]
        flags = [(cell, cell._init_flag) for cell in cells]
        for cell in cells:
            cell._self_check()      # what a first call does besides initialising the parameters
            cell._init_flag = True  # that initialising would fill the empty Parameters before our hook runs
        try:
            with self._hooked():
                yield self
        finally:
            for cell, flag in flags:
                cell._init_flag = flag


def initial_values(parameter):
    """A Parameter's initial values as an array (its initialiser run once), leaving an empty one empty."""
    from mindspore.common.initializer import initializer

    from pt2ms.running.recording import ms_numpy

    if not parameter.has_init:
        return ms_numpy(parameter.value())
    return ms_numpy(initializer(parameter.init, parameter.shape, parameter.dtype).init_data())


def _ms_tensor(lazy, shell):
    """A LazyTensor's data as a MindSpore Tensor of the Parameter's dtype and shape."""
    import mindspore as ms

    if tuple(lazy.shape) != tuple(shell.shape):
        raise Pt2MsError(f"{lazy.source or 'checkpoint'}: {shell.name!r} is {list(lazy.shape)} in the file, "
                         f"{list(shell.shape)} in the model")
    target = FROM_MS_TYPE.get(str(shell.dtype), str(shell.dtype).lower())
    array = lazy.read()
    if target == "bfloat16":  # NumPy has no bfloat16: widen, then let MindSpore round
        widened = bfloat16_to_float32(array) if lazy.dtype == "bfloat16" else cast(array, lazy.dtype, "float32")[0]
        return ms.Tensor(widened).astype(ms.bfloat16)
    return ms.Tensor(np.require(cast(array, lazy.dtype, target)[0], requirements="C"))
