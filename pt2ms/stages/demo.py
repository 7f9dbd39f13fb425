"""Seeded random weights for a bundled example, saved as the PyTorch checkpoint its config names.

Every tensor gets a value that differs from any default (BatchNorm statistics included), so that a wrong
map entry cannot hide behind an initial value. BatchNorm running statistics are measured on one seeded
batch: made-up statistics make the activations of a deep net fade away or blow up layer after layer, and
then two different inputs give nearly the same output, which would make stage 4 prove little.
"""

import math

from pt2ms.formats.files import atomic_open
from pt2ms.running.build import build_torch_model


def randomize(model, seed=0):
    """Give every parameter and floating buffer of a torch model seeded random values."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point():
                continue
            leaf = name.rpartition(".")[2]
            if leaf == "running_var":
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.dim() <= 1 or leaf in ("running_mean",):
                base = 1.0 if leaf == "weight" and tensor.dim() == 1 else 0.0
                tensor.copy_(base + 0.1 * torch.randn(tensor.shape, generator=generator))
            else:
                fan_in = max(1, tensor[0].numel())
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / math.sqrt(fan_in))
    return model


def calibrate_batchnorm(model, inputs):
    """Set BatchNorm running statistics to those of one forward pass on `inputs`."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or not inputs:
        return model
    model.eval()  # dropout and drop-connect stay off: only the norms see training mode
    for norm in norms:
        norm.train()
        norm.momentum = 1.0  # the statistics of this one batch become the running statistics
    with torch.no_grad():
        model(*inputs)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


def make_example_checkpoint(config):
    """Write a bundled example's inputs: seeded torch weights (unless real ones ship) and its template; returns paths."""
    import torch

    from pt2ms.running.build import import_object
    from pt2ms.running.models import make_inputs

    written = []
    if config.example.template:
        config.mindspore.template.parent.mkdir(parents=True, exist_ok=True)
        import_object(config.example.template, config.source)(str(config.mindspore.template))
        written.append(config.mindspore.template)
    if not config.torch.checkpoint.is_relative_to(config.paths.outputs):
        return written  # real weights that ship with a package: nothing to make

    model = randomize(build_torch_model(config), config.verify.seed)
    inputs = [torch.from_numpy(array) for array in make_inputs(config.verify.inputs, config.verify.seed + 7)]
    calibrate_batchnorm(model, inputs)
    with atomic_open(config.torch.checkpoint, "wb") as handle:
        torch.save(model.state_dict(), handle)
    return written + [config.torch.checkpoint]


def is_bundled_example(config):
    """True for the configs shipped in configs/ (their checkpoint is made here, not downloaded)."""
    from pt2ms.config import DEFAULT_CONFIG

    return config.source.parent == DEFAULT_CONFIG.parent


def make_missing_example(config):
    """Stage 1 on a fresh clone: write a bundled example's seeded checkpoint (and template) if missing; returns paths."""
    needed = [config.torch.checkpoint] + ([config.mindspore.template] if config.example.template else [])
    if not is_bundled_example(config) or all(path.is_file() for path in needed):
        return []
    return make_example_checkpoint(config)
