"""Stage 4 --train, the steps themselves: losses, optimizers, and one step (or `steps`) on each side.

Each side records, on the first step, its output, its parameters' gradients and the gradient flowing into
each watched layer (PyTorch: a hook on the layer's output tensor; MindSpore: Cell.register_backward_hook,
which runs only when a gradient reaches the cell). A float64 copy of the PyTorch model gives the reference
that measures float32 noise.
"""

from collections import Counter

from pt2ms.running import compare
from pt2ms.running.build import call_factory
from pt2ms.running.recording import ms_numpy, torch_numpy

# How a training step's numbers are judged (pt2ms.verify.training compares, train_report words it).
# A gradient is measured against its own scale, but never one below this share of the model's largest
# gradient: an analytically zero gradient is float noise on both sides, and noise against noise would read as
# a 100% error. Seen: a conv bias just before a training-mode BatchNorm (noise 3e-9 of the largest), a
# BatchNorm's beta whose output reaches only training-mode BatchNorms (EfficientNet-b0: 2.5e-7). A gradient
# wrong by more than tolerance * 1e-2 of the largest (1e-6 at the default) is still caught.
GRADIENT_FLOOR = 1e-2
# An update (after - before) is never measured against less than this share of the parameter's magnitude:
# each side rounds the stored parameter to float32 (1.2e-7 of it), whatever the size of the update.
PARAMETER_FLOOR = 1e-2
# Default tolerance for gradients, updates and statistics: a backward pass sums over the batch and every
# position, so its float32 noise is larger than a forward's (EfficientNet-b0: 9e-5 after the floor above).
# Real training differences are far above it (a sum-vs-mean loss: the batch size; a frozen parameter: 100%).
TRAIN_TOLERANCE = 1e-3
# Deep nets in training mode amplify float32 rounding in their gradients (ResNet-50 with batch 2: PyTorch's own
# float32 gradients differ from float64 ones by up to 0.1 relative). Each gradient's noise is measured as
# PyTorch float32 against a float64 copy of the model, and MindSpore differs only beyond NOISE_FACTOR times it.
NOISE_FACTOR = 10

LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
ADAM_EPSILON = 1e-8  # both frameworks' default


def torch_loss_fn(train, source):
    import torch.nn.functional as F

    if train.torch_loss:
        return call_factory(train.torch_loss, {}, source)
    if train.loss == "cross_entropy":
        return lambda output, labels: F.cross_entropy(output, labels.long())
    return F.mse_loss


def ms_loss_fn(train, source):
    import mindspore as ms
    from mindspore import ops

    if train.mindspore_loss:
        return call_factory(train.mindspore_loss, {}, source)
    if train.loss == "cross_entropy":
        return lambda output, labels: ops.cross_entropy(output, labels.astype(ms.int32))
    return ops.mse_loss


def torch_optimizer(train, params):
    import torch

    kinds = {"sgd": lambda: torch.optim.SGD(params, lr=train.lr, weight_decay=train.weight_decay),
             "momentum": lambda: torch.optim.SGD(params, lr=train.lr, momentum=train.momentum,
                                                 weight_decay=train.weight_decay),
             "adam": lambda: torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay),
             "adamw": lambda: torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)}
    return kinds[train.optimizer]()


def ms_optimizer(train, params):
    """MindSpore's optimizer; one parameter group so that weight decay reaches gamma/beta as in PyTorch."""
    from mindspore import nn

    decay = 0.0 if train.optimizer == "adamw" else train.weight_decay  # adamw decays apart (ms_step)
    groups = [{"params": params, "weight_decay": decay}]
    kinds = {"sgd": lambda: nn.SGD(groups, learning_rate=train.lr),
             "momentum": lambda: nn.Momentum(groups, learning_rate=train.lr, momentum=train.momentum),
             "adam": lambda: nn.Adam(groups, learning_rate=train.lr, eps=ADAM_EPSILON),
             "adamw": lambda: nn.Adam(groups, learning_rate=train.lr, eps=ADAM_EPSILON)}
    return kinds[train.optimizer]()


# --- the steps -----------------------------------------------------------------------------------------

def first_output(output):
    """The array a loss is computed on: the model's first output (logits of a ModelOutput, output[0] of a tuple)."""
    return compare.flatten(output)[0][1]


def watch_torch(model, watched, flowing, calls, order):
    """Forward hooks: the execution order of modules, their call counts, and for `watched` modules the
    gradient flowing into them (the gradient of their first output, first call); returns the handles."""
    def keep(name, grad):
        flowing.setdefault(name, torch_numpy(grad))  # returns None: the gradient itself is left alone

    def hook(_module, _inputs, output, name):
        order.append(name)
        calls[name] += 1
        tensor = first_output(output) if name in watched and calls[name] == 1 else None
        if getattr(tensor, "requires_grad", False):
            tensor.register_hook(lambda grad: keep(name, grad))
    return [module.register_forward_hook(lambda m, i, o, name=name: hook(m, i, o, name))
            for name, module in model.named_modules() if name]


def torch_steps(model, inputs, labels, train, source, watched):
    """Run the steps; returns losses, step-1 output, gradients and flowing gradients, the modules' order."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch_optimizer(train, params) if params else None
    loss_fn = torch_loss_fn(train, source)
    order, calls, flowing = [], Counter(), {}
    handles = watch_torch(model, watched, flowing, calls, order)
    losses, output, grads = [], None, {}
    try:
        for step in range(train.steps):
            model.zero_grad(set_to_none=True)
            out = first_output(model(*[torch.from_numpy(x) for x in inputs]))
            loss = loss_fn(out, torch.from_numpy(labels))
            loss.backward()
            if step == 0:
                for handle in handles:
                    handle.remove()
                output = torch_numpy(out)
                grads = {name: torch_numpy(p.grad) for name, p in model.named_parameters() if p.grad is not None}
            losses.append(float(loss.detach()))
            if optimizer:
                _match_adam_epsilon(optimizer, train, step + 1)
                optimizer.step()
    finally:
        for handle in handles:
            handle.remove()
    return {"losses": losses, "output": output, "grads": grads, "order": list(dict.fromkeys(order)),
            "flowing": {name: grad for name, grad in flowing.items() if calls[name] == 1}}


def _match_adam_epsilon(optimizer, train, step):
    """PyTorch's eps so that its Adam runs MindSpore's formula.

    MindSpore adds eps to sqrt(v) before the bias correction (lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v)
    + eps)), PyTorch after it; the two agree when PyTorch's eps is eps / sqrt(1 - b2^t). At step 1 that is 32
    times 1e-8, which moves updates of gradients near 1e-6 by percents.
    """
    if train.optimizer in ("adam", "adamw"):
        for group in optimizer.param_groups:
            group["eps"] = ADAM_EPSILON / (1 - group["betas"][1] ** step) ** 0.5


def torch_reference_grads(model, inputs, labels, train, source, watched):
    """Step-1 gradients (and flowing gradients) of a float64 copy of the PyTorch model: the reference for
    float32 noise."""
    import copy

    import torch

    twin = copy.deepcopy(model).double()
    flowing, calls = {}, Counter()
    handles = watch_torch(twin, watched, flowing, calls, [])
    as_double = [torch.from_numpy(x).double() if x.dtype.kind == "f" else torch.from_numpy(x) for x in inputs]
    target = torch.from_numpy(labels)
    try:
        out = first_output(twin(*as_double))
        torch_loss_fn(train, source)(out, target.double() if target.is_floating_point() else target).backward()
    finally:
        for handle in handles:
            handle.remove()
    grads = {name: p.grad.numpy() for name, p in twin.named_parameters() if p.grad is not None}
    return grads, flowing


def watch_ms(net, watched, flowing):
    """Backward hooks on `watched` cells: the gradient flowing into each (of its first output); the handles."""
    cells = dict(net.cells_and_names())

    def hook(name):
        def record(_cell, _grad_input, grad_output):
            grad = first_output(grad_output) if grad_output is not None else None
            if grad is not None:
                flowing.setdefault(name, ms_numpy(grad))
        return record
    return [cells[name].register_backward_hook(hook(name)) for name in watched if name in cells]


def ms_steps(net, inputs, labels, train, source, watched):
    """Run the steps in PyNative mode; returns losses, step-1 output, gradients by Parameter.name and the
    gradients flowing into `watched` cells."""
    import mindspore as ms
    from mindspore import ops

    params = net.trainable_params()
    optimizer = ms_optimizer(train, params) if params else None
    loss_fn = ms_loss_fn(train, source)
    captured = {}

    def forward(*args):
        out = first_output(net(*args[:-1]))
        captured["output"] = out
        return loss_fn(out, args[-1])

    grad_fn = ms.value_and_grad(forward, None, optimizer.parameters) if optimizer else None
    losses, output, grads, flowing = [], None, {}, {}
    handles = watch_ms(net, watched, flowing) if grad_fn else []
    for step in range(train.steps):
        args = [ms.Tensor(x) for x in inputs] + [ms.Tensor(labels)]
        if grad_fn is None:
            loss, step_grads = forward(*args), ()
        else:
            loss, step_grads = grad_fn(*args)
        if step == 0:
            for handle in handles:
                handle.remove()
            output = ms_numpy(captured["output"])
            grads = {p.name: ms_numpy(g) for p, g in zip(params, step_grads)}
        losses.append(float(loss.asnumpy()))
        if optimizer:
            if train.optimizer == "adamw":
                for p in params:
                    ops.assign(p, p * (1.0 - train.lr * train.weight_decay))
            optimizer(step_grads)
    return {"losses": losses, "output": output, "grads": grads, "flowing": flowing}
