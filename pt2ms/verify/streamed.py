"""Stage 4 streamed: both models built empty, each block's weights read by name just before it runs and
released after, so memory is bounded by one block (and the activations recorded), not by the models.

Stage 4 then runs exactly as in memory (pt2ms/stages/verify.py): the PyTorch model's forward materialises
its blocks one after another from the PyTorch checkpoint; the MindSpore model's forward materialises its
own from the converted checkpoint and chains its own blocks' outputs, so errors accumulate as in memory;
each layer run alone (isolation) gets the block around it materialised first (`weights_for`). Only the
weights move: verdicts, causes and reports are the in-memory ones, plus how much memory the run took.

Chosen when both models in float32 would not fit in the memory available (estimated from stage 1's
inventories before anything is built), or with `4_verify.py --stream`.
"""

import contextlib
import resource

from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import open_ms_checkpoint, open_torch_checkpoint
from pt2ms.formats.ckpt import FROM_MS_TYPE
from pt2ms.formats.inventory import read_inventory, strip_to_known
from pt2ms.formats.shards import is_index, read_shards
from pt2ms.formats.tensors import from_numpy
from pt2ms.running import blocks, memory
from pt2ms.running.devices import torch_device, use_ms_device
from pt2ms.running.models import cast_ms, cast_torch

FLOAT32 = 4  # bytes per value: both sides compute in float32


def _inventories(config):
    return [row for side in ("torch_params.csv", "ms_params.csv") for row in read_inventory(config.output_dir / side)]


def both_models_bytes(config):
    """What both models in float32 take, from stage 1's inventories (nothing is built)."""
    return sum(FLOAT32 * row.numel for row in _inventories(config))


def choose(config, asked, available=None):
    """(stream or not, why): asked for with --stream, or both models would not fit in the memory available
    (`available`: (bytes, where the figure comes from); by default pt2ms.running.memory measures it)."""
    if asked:
        return True, "asked for (--stream)"
    try:
        needed = both_models_bytes(config)
    except Pt2MsError:  # an inventory missing: nothing to estimate from (stage 4 reports what it lacks itself)
        return False, None
    free, where = available if available is not None else memory.available_bytes()
    if free is not None and needed > free:
        return True, f"both models in float32 take {needed / memory.GB:.2f} GB, more than the {free / memory.GB:.2f} GB {where}"
    return False, None


def refuse_unholdable(config, available=None):
    """Raise, in one line and before anything is built, when even the largest block of either model cannot be
    held (pt2ms.running.memory); nothing to check without stage 1's inventories."""
    for side in ("torch_params.csv", "ms_params.csv"):
        try:
            rows = read_inventory(config.output_dir / side)
        except Pt2MsError:
            continue
        memory.check_largest_block_fits({row.name: tuple(row.shape) for row in rows}, config.output_dir / side,
                                        available=available)


def peak_rss_bytes():
    """The process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Streamed:
    """Both models built empty with their block weights read as they run; `weights_for` serves isolation."""

    def __init__(self, config, ckpt_path, map_data, reason):
        from pt2ms.running.build import build_ms_model, build_torch_model

        self.reason = reason
        self.model = build_torch_model(config, empty=True)
        torch_tensors = _fitting_torch(config, self.model)
        torch_casts = cast_torch(self.model, config)  # both compute in [verify] dtype, as in memory
        self.torch = blocks.TorchBlockWeights(self.model, torch_tensors, device=torch_device(config))
        use_ms_device(config)
        self.net = build_ms_model(config, empty=True)
        ms_casts = cast_ms(self.net, {}, config.verify.dtype)
        ms_tensors, self.notes = _fitting_ms(ckpt_path, self.net, map_data)
        self.casts = torch_casts, ms_casts
        self.ms = blocks.MsBlockWeights(self.net, ms_tensors)
        self.whole = [block.path for block in self.ms.blocks if block.whole]
        self._running = contextlib.ExitStack()
        self._running.enter_context(self.torch.hold_while_running())
        self._running.enter_context(self.ms.hold_while_running())
        self._held = None  # the MindSpore block kept for the isolated cells inside it

    @contextlib.contextmanager
    def weights_for(self, cell_path):
        """A MindSpore cell with its weights while it runs alone. The block around it stays materialised for
        the next cells inside it (rows come in execution order); a cell that is a block, or holds blocks,
        has them read by their hooks as it runs."""
        block = next((path for path in self.whole if cell_path.startswith(path + ".") or (not path and cell_path)),
                     None)
        if self._held is not None and self._held != block:
            self.ms.release(self._held)
        self._held = block
        if block is not None:
            self.ms.materialise(block)  # nothing to do when it is held already
        yield

    def close(self):
        """Release every block and remove the hooks."""
        self._held = None
        self._running.close()

    def figures(self):
        """What the report says of the run: that it streamed, why, and its peak memory."""
        largest = max(block.numel for block in self.torch.blocks + self.ms.blocks)
        return {"streamed": True, "stream_reason": self.reason, "largest_block_bytes": FLOAT32 * largest,
                "peak_rss_bytes": peak_rss_bytes()}


def _fitting_torch(config, model):
    """The PyTorch checkpoint's tensors (read lazily), refused as stage 4 in memory refuses them when they do
    not fit the model (a tied weight saved once fills its partner)."""
    tensors = open_torch_checkpoint(config.torch.checkpoint, config.torch.state_dict_key, config.torch.trust_pickle)
    expected = model.state_dict(keep_vars=True)
    names = {strip_to_known(name, expected) for name in tensors}
    owners = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(parameter), []).append(name)
    tied = {name for group in owners.values() if any(n in names for n in group) for name in group}
    missing = [name for name in expected if name not in names and name not in tied]
    unexpected = [name for name in names if name not in expected]
    if missing or unexpected:
        raise Pt2MsError(f"{config.torch.checkpoint}: does not fit the PyTorch model {config.torch.model}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return tensors


def _fitting_ms(ckpt_path, net, map_data):
    """The converted checkpoint's tensors by Parameter.name (read lazily) and the load notes, refused as stage 4
    in memory refuses them; a parameter the map leaves null keeps its initial values, the same on every read."""
    parameters = {parameter.name: parameter for parameter in net.get_parameters()}
    try:
        files = read_shards(ckpt_path) if is_index(ckpt_path) else open_ms_checkpoint(ckpt_path)
        tensors = {strip_to_known(name, parameters): tensor for name, tensor in files.items()}
    except Pt2MsError as error:
        raise Pt2MsError(f"{ckpt_path}: cannot be read ({error}); run stage 3 first") from None
    deliberate = {strip_to_known(name, parameters) for name, value in map_data["map"].items() if value is None}
    not_loaded = [name for name in parameters if name not in tensors]
    missing = [name for name in not_loaded if name not in deliberate]
    unused = [name for name in tensors if name not in parameters]
    if missing or unused:
        raise Pt2MsError(f"{ckpt_path}: does not fit the MindSpore model: not loaded {missing[:5]}, "
                         f"unused in the checkpoint {unused[:5]}")
    notes = [f"{name}: checkpoint holds {tensor.dtype}, the model casts it to {parameters[name].dtype}"
             for name, tensor in tensors.items() if tensor.dtype != _dtype_name(parameters[name].dtype)]
    notes += [f"{name}: left at its initial value (null in the map)" for name in not_loaded]
    for name in not_loaded:
        tensors[name] = from_numpy(blocks.initial_values(parameters[name]))
    return tensors, notes


def _dtype_name(ms_dtype):
    return FROM_MS_TYPE.get(str(ms_dtype), str(ms_dtype).lower())


def open_streamed(config, ckpt_path, map_data, reason):
    """Both models built empty, their blocks read as they run (see the module docstring); close() when done."""
    refuse_unholdable(config)
    return Streamed(config, ckpt_path, map_data, reason)
