"""MindSpore blocks whose weights are freed when released, not when the run ends.

A MindSpore Parameter is in a reference cycle with its ParamInfo (`param_info.obj` is the Parameter), which
only Python's cyclic collector breaks: a block released by pt2ms/running/blocks.py (its Parameters swapped
back for the empty ones) keeps its memory until a collection happens to run. Measured on a stack of 16
Dense(2048, 2048) blocks: every block read stayed resident through the forward pass (+294 MB at the peak),
against about three blocks (+54 MB) with a collection after each release. A collection costs tens of
milliseconds, so one runs only once released blocks add up to COLLECT_BYTES.
"""

import gc

from pt2ms.running.blocks import MsBlockWeights

COLLECT_BYTES = 64 << 20
FLOAT32 = 4


class FreedMsBlockWeights(MsBlockWeights):
    """MsBlockWeights that collects released Parameters once COLLECT_BYTES of them are waiting."""

    def __init__(self, net, tensors=None, missing="error"):
        super().__init__(net, tensors, missing)
        self._numel = {block.path: block.numel for block in self.blocks}
        self._waiting = 0

    def release(self, path):
        super().release(path)
        self._waiting += FLOAT32 * self._numel.get(path, 0)
        if self._waiting >= COLLECT_BYTES:
            gc.collect()
            self._waiting = 0
