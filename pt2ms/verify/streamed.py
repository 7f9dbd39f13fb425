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
from pt2ms.formats.inventory import read_inventory
from pt2ms.running import streaming as weights

FLOAT32 = 4  # bytes per value: both sides compute in float32


def both_models_bytes(config):
    """What both models in float32 take, from stage 1's inventories (nothing is built)."""
    return sum(FLOAT32 * row.numel for side in ("torch_params.csv", "ms_params.csv")
               for row in read_inventory(config.output_dir / side))


def choose(config, asked, available=None):
    """(stream or not, why): asked for with --stream, or both models would not fit in the memory available
    (`available` bytes; by default what this process may still take)."""
    if asked:
        return True, "asked for (--stream)"
    needed = both_models_bytes(config)
    available = available_bytes() if available is None else available
    if available is not None and needed > available:
        return True, (f"both models in float32 take {gib(needed)}, more than the {gib(available)} of memory "
                      "available")
    return False, None


def available_bytes():
    """Memory this process may still take: the least of what the system has free, the cgroup's limit less its
    use, and the address-space limit less what is mapped; None when none can be read."""
    found = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = open("/proc/meminfo").read()
        found.append(int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit != "max":
            found.append(int(limit) - int(open("/sys/fs/cgroup/memory.current").read()))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        with contextlib.suppress(OSError, ValueError, IndexError):
            mapped = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
            found.append(soft - mapped)
    return max(0, min(found)) if found else None


def gib(count):
    return f"{count / 2**30:.2f} GiB"


def peak_rss_bytes():
    """The process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Streamed:
    """Both models built empty with their block weights on demand; `weights_for` serves isolation."""

    def __init__(self, config, ckpt_path, map_data, reason):
        self.reason = reason
        self.torch = weights.TorchBlockWeights.from_config(config)
        self.ms = weights.MsBlockWeights.from_checkpoint(config, ckpt_path, map_data)
        self.model, self.net = self.torch.model, self.ms.net
        self.notes = list(self.ms.notes)
        self.torch.attach()
        self.ms.attach()
        self._held = None  # the MindSpore block materialised for the isolated cells inside it

    @contextlib.contextmanager
    def weights_for(self, cell_path):
        """A MindSpore cell with its weights while it runs alone: the block around it stays materialised for
        the next cells inside it (rows come in execution order); a cell that is a block or holds blocks
        materialises them itself, through the hooks."""
        block = self.ms.block_around(cell_path)
        if self._held is not None and self._held != block:
            self.ms.release(self._held)
            self._held = None
        if block is not None and self._held is None:
            self.ms.materialise(block)
            self._held = block
        yield

    def close(self):
        """Release what isolation kept and remove the hooks."""
        if self._held is not None:
            self.ms.release(self._held)
            self._held = None
        self.torch.detach()
        self.ms.detach()

    def figures(self):
        """What the report says of the run: that it streamed, why, and its peak memory."""
        return {"streamed": True, "stream_reason": self.reason,
                "largest_block_bytes": max(self.torch.largest_block_bytes(), self.ms.largest_block_bytes()),
                "peak_rss_bytes": peak_rss_bytes()}


def open_streamed(config, ckpt_path, map_data, reason):
    """Both models built empty, their blocks to be materialised as they run (see the module docstring)."""
    if not config.mindspore.model:
        raise Pt2MsError(f"{config.source}: stage 4 needs [mindspore] model (a factory), not only a template")
    return Streamed(config, ckpt_path, map_data, reason)
