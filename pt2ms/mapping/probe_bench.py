"""The probe's bench: both models built empty, their recorded passes, and MindSpore weights scored block by
block (a candidate's values computed only when the block that holds them is read; running.blocks)."""

import contextlib
import functools
import math
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from pt2ms.config import HF_FACTORY
from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import open_torch_checkpoint
from pt2ms.formats.ckpt import FROM_MS_TYPE
from pt2ms.formats.inventory import strip_to_known
from pt2ms.formats.tensors import NUMPY_DTYPES, LazyTensor, as_float, cast
from pt2ms.mapping import transforms
from pt2ms.mapping.match_names import ignored_reason
from pt2ms.mapping.probe_units import parent_of
from pt2ms.running.blocks import initial_values
from pt2ms.running.devices import torch_device, use_ms_device
from pt2ms.running.models import cast_ms, cast_torch, common_path, load_torch, make_inputs
from pt2ms.running.recording import ForwardFailed, is_array, ms_numpy, record_ms, record_torch, torch_numpy


class Bench:
    """Both models built empty, one recorded pass each, and a way to score MindSpore weights block by block.

    Memory is bounded by one block (pt2ms/running/blocks.py): the recorded passes read each block's weights
    just before it runs and drop them after; scoring a candidate materialises only the block around the
    cell it runs, fed the inputs recorded for it. MindSpore weights are what the map (or the candidate being
    tried) makes of the PyTorch tensors, computed from the checkpoint when their block is read.
    """

    def __init__(self, config):
        import mindspore as ms

        from pt2ms.running.blocks import MsBlockWeights, TorchBlockWeights
        from pt2ms.running.build import build_ms_model, build_torch_model

        self.config = config
        self.model = build_torch_model(config, empty=True)
        self.tensors = _torch_tensors(config, self.model)
        cast_torch(self.model, config)  # both compute in [verify] dtype, as in stage 4
        self.torch_values = {}  # PyTorch tensor name -> an array set in place of the file's (set_torch_weights)
        self.torch_weights = TorchBlockWeights(self.model, {
            name: LazyTensor(tensor.dtype, tuple(tensor.shape), functools.partial(self._torch_value, name, tensor),
                             tensor.source, tensor.storage) for name, tensor in self.tensors.items()},
            device=torch_device(config))
        use_ms_device(config)  # [mindspore] device, before the net is built
        self.net = build_ms_model(config, empty=True)
        cast_ms(self.net, {}, config.verify.dtype)
        self.inputs = make_inputs(config.verify.inputs, config.verify.seed)
        self.tolerance = config.verify.tolerance
        self.params = {parameter.name: parameter for parameter in self.net.get_parameters()}
        self.dtypes = {name: _numpy_dtype(parameter.dtype) for name, parameter in self.params.items()}
        self.values = {}  # Parameter.name -> an array, or an Entry computed when its block is read
        reads = {name: LazyTensor(np.dtype(self.dtypes[name]).name, tuple(parameter.shape),
                                  functools.partial(self._ms_value, name)) for name, parameter in self.params.items()}
        self.ms_weights = MsBlockWeights(self.net, reads)
        # The PyTorch tensors last widened, up to one block's worth: scoring the candidates of a block rereads
        # the same tensors (every other weight of the block) once per candidate.
        self.recent, self.recent_bytes = OrderedDict(), 0
        self.recent_cap = 4 * max((block.numel for block in self.ms_weights.blocks), default=0)
        self.blocks = [block for block in self.ms_weights.blocks if block.whole]  # "": the model is one block
        self.materialised = []  # the MindSpore blocks read while scoring (after the recorded passes)
        self.cell_of = {}
        self.cells = dict(self.net.cells_and_names())
        for path, cell in self.cells.items():
            for parameter in cell._params.values():  # a cell's own Parameters, not its children's
                self.cell_of.setdefault(parameter.name, path)
        self.modules = dict(self.model.named_modules())
        self.ms = ms
        self.comparable = {}

    def set_torch_weights(self, values):
        """Set PyTorch tensors (name -> array) in place of the checkpoint's, for the recorded passes and the
        candidates made from them; returns what to pass back to restore the file's (the model is built empty:
        its own tensors are not there to change)."""
        previous = {}
        for name, array in values.items():
            name = strip_to_known(name, self.tensors)
            previous[name] = self.torch_values.get(name)
            self.torch_values[name] = np.asarray(array)
        return previous

    def restore_torch_weights(self, previous):
        for name, array in previous.items():
            if array is None:
                self.torch_values.pop(name, None)
            else:
                self.torch_values[name] = array

    def _torch_value(self, name, tensor):
        """What the PyTorch model reads for `name`: a value set in its place, in the file's dtype, or the file's."""
        if name not in self.torch_values:
            return tensor.read()
        return cast(self.torch_values[name], str(self.torch_values[name].dtype), tensor.dtype)[0]

    def torch_array(self, name):
        """A PyTorch tensor read from the checkpoint by name, as float32 when it is a float (bfloat16 widened)."""
        name = strip_to_known(name, self.tensors)
        tensor = self.tensors[name]
        if name in self.torch_values:
            return np.asarray(self.torch_values[name])
        if name in self.recent:
            self.recent.move_to_end(name)
            return self.recent[name]
        array = tensor.read()
        values = as_float(array, tensor.dtype)
        array = array if values is None else values.astype(np.float32, copy=False)
        self._remember(name, array)
        return array

    def _remember(self, name, array):
        """Keep `array` among the recent ones (read-only: a caller must not change what the next one reads),
        dropping the oldest past one block's worth."""
        if array.nbytes > self.recent_cap:
            return
        array.flags.writeable = False
        self.recent[name] = array
        self.recent_bytes += array.nbytes
        while self.recent_bytes > self.recent_cap:
            _, dropped = self.recent.popitem(last=False)
            self.recent_bytes -= dropped.nbytes

    def value(self, torch_value, transform):
        names = [torch_value] if isinstance(torch_value, str) else list(torch_value)
        return transforms.apply(transforms.parse(transform), [self.torch_array(name) for name in names])

    def shape_of(self, torch_value, transform):
        """The shape a map entry gives, from the tensors' shapes (nothing read)."""
        names = [torch_value] if isinstance(torch_value, str) else list(torch_value)
        return tuple(transforms.output_shape(transforms.parse(transform),
                                             [self.tensors[strip_to_known(name, self.tensors)].shape for name in names]))

    def entry(self, torch_value, transform):
        """A map entry's value, computed only when a block that holds it is read."""
        return Entry(torch_value, transform)

    def set_weights(self, values):
        """What the MindSpore parameters hold from now on (arrays, or Entries): read when their block is."""
        for name, value in values.items():
            self.values[self.own(name)] = value

    def _ms_value(self, name):
        value = self.values.get(name)
        if value is None:
            # A parameter no entry sets (null in the map) keeps its initial values, the same on every read.
            parameter = self.params[name]
            value = self.values[name] = initial_values(parameter)
        if isinstance(value, Entry):
            value = self.value(value.torch, value.transform)
        return np.asarray(value, dtype=self.dtypes[name])

    @contextlib.contextmanager
    def weights_for(self, cell_path):
        """The MindSpore weights a cell needs to run alone: the block around it, and any block inside it as it
        runs (hooks)."""
        block = next((b.path for b in self.blocks if not b.path or cell_path == b.path
                      or cell_path.startswith(b.path + ".")), None)
        with self.ms_weights.hold_while_running():
            if block is None:
                yield
                return
            with self.ms_weights.holding(block):
                yield

    def own(self, ms_name):
        """The model's Parameter.name for a map name (a template's training wrapper prefix dropped)."""
        return strip_to_known(ms_name, self.params)

    def cell_path(self, ms_name):
        return self.cell_of.get(self.own(ms_name), parent_of(self.own(ms_name)))

    def torch_module_of(self, torch_name):
        path = parent_of(torch_name)
        while path and strip_to_known(path, self.modules) not in self.modules:
            path = parent_of(path)  # a tensor the model holds fused (experts.0.gate_proj): its nearest module
        return strip_to_known(path, self.modules)

    def partner(self, cell_path, matches_by_cell):
        """The PyTorch module feeding every mapped parameter under a MindSpore cell: their common prefix."""
        modules = [self.torch_module_of(name) for path, names in matches_by_cell.items()
                   if path == cell_path or path.startswith(cell_path + ".") or not cell_path for name in names]
        if not modules:
            return None
        return common_path(modules)

    def record(self, cell_paths, module_paths):
        """One pass each: the PyTorch modules' inputs and outputs, the MindSpore cells' raw arguments."""
        with self.torch_weights.hold_while_running():
            self.torch_recording, torch_out = record_torch(self.model, self.inputs, watched=set(module_paths) - {""})
        self.torch_output = [torch_numpy(x) for x in _arrays(torch_out)]
        self.ms_args, handles = {}, []
        for path in cell_paths:
            if path and path in self.cells:
                handles.append(self.cells[path].register_forward_pre_hook(self._keep_args(path)))
        failure = None
        try:
            with self.ms_weights.hold_while_running():
                output = self.net(*[self.ms.Tensor(np.asarray(x)) for x in self.inputs])
                _ = [ms_numpy(x) for x in _arrays(output)]  # kernels run asynchronously: a missing one fails here
        except Exception as error:  # noqa: BLE001 - located below, then raised as ForwardFailed
            failure = error
        finally:
            for handle in handles:
                handle.remove()
        if failure is not None:
            with self.ms_weights.hold_while_running():
                _locate_ms_failure(self.net, self.inputs, failure)
        self._log_reads()

    def _log_reads(self):
        """From now on (scoring), note each MindSpore block read, by the hooks or around a cell: the summary
        lists them, so a probe shows it read only the blocks it probes."""
        read = self.ms_weights.materialise

        def logged(path):
            self.materialised.append(path)
            read(path)
        self.ms_weights.materialise = logged

    def _keep_args(self, path):
        def keep(_cell, args):
            self.ms_args.setdefault(path, tuple(args))
        return keep

    def next_comparable(self, pairs, start):
        """Index of the first block pair from `start` on that runs and compares (whatever the weights), or None."""
        for index in range(start, len(pairs)):
            if pairs[index] not in self.comparable:
                self.comparable[pairs[index]] = self.error(*pairs[index]) is not None
            if self.comparable[pairs[index]]:
                return index
        return None

    def error(self, cell_path, module_path):
        """Relative error of the MindSpore cell fed the PyTorch module's input, or None if they cannot be compared."""
        if not cell_path:
            args, expected = [self.ms.Tensor(np.asarray(x)) for x in self.inputs], self.torch_output
            cell = self.net
        else:
            record = self.torch_recording.records.get(module_path) if module_path else None
            args = list(self.ms_args.get(cell_path, ()))
            if module_path:
                if record is None or not record.inputs or not args or not is_array(args[0]) \
                        or tuple(args[0].shape) != record.inputs[0].shape:
                    return None
                args[0] = self.ms.Tensor(record.inputs[0])
                expected = record.output
            else:
                expected = self.torch_output
            cell = self.cells[cell_path]
        try:
            with self.weights_for(cell_path):
                got = [ms_numpy(x) for x in _arrays(cell(*args))]
        except Pt2MsError:
            raise
        except Exception:  # a cell that needs other arguments than it got is simply not comparable
            return None
        if not got or not expected or got[0].shape != expected[0].shape:
            return None
        worst = 0.0
        for mine, theirs in zip(got, expected):  # every output both give, in order, while their shapes agree
            if mine.shape != theirs.shape:
                break
            scale = max(float(np.abs(theirs).max()), 1e-12)
            error = float(np.abs(mine.astype(np.float64) - theirs).max()) / scale
            if not math.isfinite(error):  # NaN (a variance set negative) agrees with nothing; max() would skip it
                return math.inf
            worst = max(worst, error)
        return worst


@dataclass(frozen=True)
class Entry:
    """A map entry not computed yet: the PyTorch tensor(s) and the transform that make a MindSpore weight."""
    torch: object
    transform: str


def _torch_tensors(config, model):
    """The PyTorch checkpoint's tensors by the model's names (wrapper prefixes dropped), read lazily, checked
    to fit the model as stage 4 checks them (a tied weight saved once counts for both names; buffers the model
    does not register, such as an older transformers' position_ids, left out)."""
    checkpoint = open_torch_checkpoint(config.torch.checkpoint, config.torch.state_dict_key, config.torch.trust_pickle)
    expected = dict(model.state_dict(keep_vars=True))
    tensors = {strip_to_known(name, expected): tensor for name, tensor in checkpoint.items()
               if strip_to_known(name, expected) in expected
               or not ignored_reason(SimpleNamespace(name=name, dtype=tensor.dtype), (), False)}
    owners = defaultdict(list)
    for name, parameter in model.named_parameters(remove_duplicate=False):
        owners[id(parameter)].append(name)
    for names in owners.values():
        held = next((name for name in names if name in tensors), None)
        tensors.update({name: tensors[held] for name in names if held and name not in tensors})
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected]
    if (missing or unexpected) and config.torch.model == HF_FACTORY:
        return _converted_by_transformers(config, tensors)
    if missing or unexpected:
        raise Pt2MsError(f"{config.torch.checkpoint}: does not fit the PyTorch model {config.torch.model}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return tensors


def _converted_by_transformers(config, file_tensors):
    """A Hugging Face folder whose files transformers converts on load (per-expert MoE tensors fused): the model's
    tensors as its own from_pretrained makes them, held in memory, beside the files' tensors the map names."""
    loaded = load_torch(config)
    tensors = dict(file_tensors)
    for name, value in loaded.state_dict().items():
        array = torch_numpy(value)
        tensors[name] = LazyTensor(str(array.dtype), tuple(array.shape), functools.partial(lambda a: a, array))
    return tensors


def _numpy_dtype(ms_dtype):
    """The NumPy dtype candidate values are made in: the parameter's own, but float32 for a bfloat16 or float16
    one (set from float32 values, which MindSpore rounds), as the probe read them before."""
    name = FROM_MS_TYPE.get(str(ms_dtype), str(ms_dtype).lower())
    return np.dtype(np.float32 if name in ("bfloat16", "float16") else NUMPY_DTYPES.get(name, np.float32))


def _locate_ms_failure(net, inputs, failure):
    """Raise ForwardFailed naming the MindSpore layer whose forward failed (a run waiting on every layer)."""
    try:
        record_ms(net, inputs, sync=True)
    except ForwardFailed as located:
        raise ForwardFailed("MindSpore", located.layer, failure) from failure
    raise ForwardFailed("MindSpore", None, failure) from failure


def _arrays(value):
    from pt2ms.running import compare

    return [x for _, x in compare.flatten(value) if is_array(x)]
