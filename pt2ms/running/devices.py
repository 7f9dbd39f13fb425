"""Where each model runs: [torch] device and [mindspore] device, applied where models run with their weights.

Stage 4 and stage 2's probe run on these devices; stage 1 records on the CPU (it runs each model once with
its initial weights, for the order of its layers, which no device changes). A device the machine lacks is a
one-line error naming the key, before anything is built.
"""

from pt2ms.errors import Pt2MsError


def torch_device(config):
    """The torch.device of [torch] device, refused unless this machine's torch can use it."""
    import torch

    name = config.torch.device
    kind, _, index = name.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count <= int(index or 0):
            have = f"it has {count}" if count else "torch.cuda.is_available() is False"
            raise Pt2MsError(f"{config.source}: [torch] device = {name!r}: this machine has no such CUDA device "
                             f"({have}); set device = \"cpu\" or another device")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise Pt2MsError(f"{config.source}: [torch] device = {name!r}: torch.backends.mps.is_available() is False "
                         "on this machine; set device = \"cpu\"")
    return torch.device(name)


def use_ms_device(config):
    """Set MindSpore's device to [mindspore] device (mindspore.set_device, before any kernel runs).

    MindSpore takes one device per process, fixed once a kernel has run: asking again for the device already in
    use is a no-op, asking for another one is a one-line error.
    """
    import mindspore as ms
    from mindspore.hal import is_available

    name = config.mindspore.device
    target, _, index = name.partition(":")
    current = ms.get_current_device()
    if current.device_target == target and int(index or current.device_id) == current.device_id:
        return name
    if not _quietly(is_available, target):
        raise Pt2MsError(f"{config.source}: [mindspore] device = {name!r}: this MindSpore ({ms.__version__}) cannot "
                         f"use {target} on this machine; set device = \"CPU\" or install MindSpore's {target} build")
    try:
        ms.set_device(target, int(index) if index else None)
    except (RuntimeError, ValueError) as error:
        raise Pt2MsError(f"{config.source}: [mindspore] device = {name!r}: {str(error).splitlines()[0]} (MindSpore "
                         f"already runs on {current.device_target} in this process)") from None
    return name


def _quietly(check, *args):
    """Run a MindSpore check without the multi-line plugin warnings it logs (the error we raise says it in one)."""
    import logging

    from mindspore.log import _get_logger  # MindSpore's own logger; no public switch for its level

    logger = _get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return check(*args)
    finally:
        logger.setLevel(level)
