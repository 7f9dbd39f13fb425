"""Models whose weights live on disk until a block runs: built empty, each block's parameters read from the
checkpoint by name just before its forward and released after it (forward pre-hooks and hooks).

A block is a child of the model, or an element of a list of layers (ModuleList / Sequential, CellList /
SequentialCell) the model holds, found top down: the transformer layers of an LLM, the stages of a CNN.
Parameters the model itself owns (a class token, a position table) stay materialised throughout.
Both sides read with pt2ms/formats' lazy readers, which read one tensor without the whole file.
"""

import contextlib
import math

import numpy as np

from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import open_ms_checkpoint, open_torch_checkpoint
from pt2ms.formats.inventory import strip_to_known
from pt2ms.formats.tensors import as_float

LIST_TYPES = {"ModuleList", "Sequential", "ModuleDict", "CellList", "SequentialCell", "CellDict"}


def _children(layer):
    return list(layer.named_children()) if hasattr(layer, "named_children") else list(layer.name_cells().items())


def find_blocks(root):
    """Block paths, top down: the root's children, lists of layers opened into their elements."""
    found = []

    def visit(prefix, layer):
        for name, child in _children(layer):
            path = f"{prefix}{name}"
            if type(child).__name__ in LIST_TYPES and _children(child):
                visit(path + ".", child)
            else:
                found.append(path)
    visit("", root)
    return found


def block_around(blocks, path):
    """The block strictly holding layer `path` (the layer needs it materialised to run alone), else None."""
    return next((block for block in blocks if path.startswith(block + ".")), None)


@contextlib.contextmanager
def _empty_torch():
    """Parameters created on the meta device, buffers where they are (accelerate's init_empty_weights)."""
    import torch

    register = torch.nn.Module.register_parameter

    def on_meta(module, name, parameter):
        register(module, name, parameter)
        if parameter is not None:
            kind = type(module._parameters[name])
            module._parameters[name] = kind(module._parameters[name].to("meta"), requires_grad=parameter.requires_grad)
    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


class _Blocks:
    """What both sides share: the blocks, which are materialised, the hooks."""

    def __init__(self, root):
        self.blocks = find_blocks(root)
        self.layers = dict(self._layers(root))
        self.materialised, self.handles, self.log = set(), [], []

    def block_around(self, path):
        return block_around(self.blocks, path)

    def attach(self):
        for block in self.blocks:
            layer = self.layers[block]
            self.handles.append(layer.register_forward_pre_hook(lambda _layer, _args, b=block: self.materialise(b)))
            self.handles.append(layer.register_forward_hook(lambda _layer, _args, _out, b=block: self.release(b)))

    def detach(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def materialise(self, block):
        if block in self.materialised:
            return
        self.log.append(block)
        for name in self.names[block]:
            self._set(name)
        self.materialised.add(block)

    def release(self, block):
        if block not in self.materialised:
            return
        self._sync()
        for name in self.names[block]:
            self._drop(name)
        self.materialised.discard(block)

    def largest_block_bytes(self):
        return max((4 * sum(self.numels[name] for name in names) for names in self.names.values()), default=0)

    def _sync(self):
        pass


class TorchBlockWeights(_Blocks):
    """The PyTorch model built with its parameters on the meta device, its blocks read from the checkpoint."""

    def __init__(self, model, checkpoint, source):
        import torch

        super().__init__(model)
        self.model, self.torch = model, torch
        expected = model.state_dict(keep_vars=True)
        self.lazy = {strip_to_known(name, expected): tensor for name, tensor in checkpoint.items()}
        owners = {}
        for name, parameter in model.named_parameters(remove_duplicate=False):
            owners.setdefault(id(parameter), []).append(name)
        # A tied weight (an LM head sharing the embedding) is saved once: read it under its partner's name.
        self.read_as = {name: next((n for n in names if n in self.lazy), name) for names in owners.values()
                        for name in names}
        missing = [name for name in expected if self.read_as.get(name, name) not in self.lazy]
        unexpected = [name for name in self.lazy if name not in expected]
        if missing or unexpected:
            raise Pt2MsError(f"{source}: does not fit the PyTorch model: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        self.numels = {name: math.prod(value.shape) for name, value in expected.items()}
        self.meta = {name: value for name, value in expected.items() if value.is_meta}
        self.names = {block: [name for name in self.meta if name.startswith(block + ".")] for block in self.blocks}
        in_blocks = {name for names in self.names.values() for name in names}
        for name in expected:
            # The model's own parameters, and buffers (built in place, small): read once, held throughout.
            if name not in in_blocks:
                self._set(name)

    @classmethod
    def from_config(cls, config):
        from pt2ms.running.build import build_torch_model

        with _empty_torch():
            model = build_torch_model(config)
        checkpoint = open_torch_checkpoint(config.torch.checkpoint, config.torch.state_dict_key,
                                           config.torch.trust_pickle)
        return cls(model.eval(), checkpoint, config.torch.checkpoint)

    @staticmethod
    def _layers(root):
        return root.named_modules()

    def _owner(self, name):
        path, _, leaf = name.rpartition(".")
        return self.model.get_submodule(path), leaf

    def _set(self, name):
        torch = self.torch
        lazy = self.lazy[self.read_as.get(name, name)]
        array = lazy.read()
        value = torch.from_numpy(np.ascontiguousarray(array))
        value = value.view(torch.bfloat16) if lazy.dtype == "bfloat16" else value
        module, leaf = self._owner(name)
        current = module._parameters.get(leaf) if leaf in module._parameters else module._buffers[leaf]
        value = value.to(current.dtype)
        if leaf in module._parameters:
            module._parameters[leaf] = torch.nn.Parameter(value, requires_grad=False)
        else:
            module._buffers[leaf] = value

    def _drop(self, name):
        module, leaf = self._owner(name)
        if leaf in module._parameters:
            module._parameters[leaf] = self.meta[name]
        else:
            module._buffers[leaf] = self.meta[name]


class MsBlockWeights(_Blocks):
    """The MindSpore model built under no_init_parameters(), its blocks read from the converted checkpoint."""

    def __init__(self, net, checkpoint, ckpt_path, map_data):
        import mindspore as ms

        super().__init__(net)
        self.net, self.ms = net, ms
        parameters = {parameter.name: parameter for parameter in net.get_parameters()}
        self.lazy = {strip_to_known(name, parameters): tensor for name, tensor in checkpoint.items()}
        deliberate = {strip_to_known(name, parameters) for name, value in map_data["map"].items() if value is None}
        not_loaded = [name for name in parameters if name not in self.lazy]
        missing = [name for name in not_loaded if name not in deliberate]
        unused = [name for name in self.lazy if name not in parameters]
        if missing or unused:
            raise Pt2MsError(f"{ckpt_path}: does not fit the MindSpore model: not loaded {missing[:5]}, "
                             f"unused in the checkpoint {unused[:5]}")
        for name in not_loaded:  # left at its initial value (null in the map): initialised, held throughout
            parameters[name].init_data()
        self.parameters = {name: p for name, p in parameters.items() if name in self.lazy}
        self.shapes = {name: tuple(p.shape) for name, p in self.parameters.items()}
        self.numels = {name: math.prod(shape) for name, shape in self.shapes.items()}
        self.notes = [f"{name}: checkpoint holds {self.lazy[name].dtype}, the model casts it to {p.dtype}"
                      for name, p in self.parameters.items() if self.lazy[name].dtype != _ms_dtype_name(p.dtype)]
        self.notes += [f"{name}: left at its initial value (null in the map)" for name in not_loaded]
        owned = {}
        for block in self.blocks:
            owned[block] = [p.name for p in self.layers[block].get_parameters() if p.name in self.parameters]
        self.names = owned
        in_blocks = {name for names in owned.values() for name in names}
        for name in self.parameters:
            if name not in in_blocks:
                self._set(name)
            else:
                self._drop(name)

    @classmethod
    def from_checkpoint(cls, config, ckpt_path, map_data):
        from mindspore.nn.utils import no_init_parameters

        from pt2ms.running.build import build_ms_model

        with no_init_parameters():
            net = build_ms_model(config)
        return cls(net, open_ms_checkpoint(ckpt_path), ckpt_path, map_data)

    @staticmethod
    def _layers(root):
        return root.cells_and_names()

    def _set(self, name):
        lazy, parameter = self.lazy[name], self.parameters[name]
        if tuple(lazy.shape) != self.shapes[name]:
            raise Pt2MsError(f"{lazy.source}: {name} holds shape {list(lazy.shape)}, the MindSpore model "
                             f"{list(self.shapes[name])}")
        array = lazy.read()
        widened = as_float(array, lazy.dtype)  # bfloat16 arrives as its bits
        array = widened if widened is not None else array
        parameter.set_data(self.ms.Tensor(np.ascontiguousarray(array)).astype(parameter.dtype), slice_shape=True)

    def _drop(self, name):
        parameter = self.parameters[name]
        # A one-element stand-in: set_data(slice_shape=True) lets the shape change; _set restores it.
        parameter.set_data(self.ms.Tensor(np.zeros((1,) * len(self.shapes[name]), np.float32)).astype(parameter.dtype),
                           slice_shape=True)

    def _sync(self):
        # Kernels run asynchronously: wait for them before the weights they read are swapped out
        # (mindspore.runtime.synchronize() logs an error on CPU; the PyNative executor's sync does not).
        from mindspore.common.api import _pynative_executor

        _pynative_executor.sync()


def _ms_dtype_name(dtype):
    return {"Float32": "float32", "Float16": "float16", "BFloat16": "bfloat16", "Float64": "float64",
            "Int32": "int32", "Int64": "int64", "Bool": "bool"}.get(str(dtype), str(dtype).lower())
