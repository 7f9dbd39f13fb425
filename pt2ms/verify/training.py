"""Stage 4 --train: one training step on both models, compared through the map and localised.

Both models take the same batch with their normalisation layers in training mode (batch statistics, running
statistics updated) and every other layer in inference mode, so dropout and stochastic depth are off on both
sides: random masks cannot be made equal across frameworks, and a layer reading `self.training` to drop
paths stays deterministic. A dropout present on one side only is still reported, from the two layer lists.
Then loss, backward and the optimizer step(s). Compared through the map (transforms included): the training
forward's output, the loss, every parameter's gradient, which parameters train on each side, each
parameter's update, and the running statistics after the step(s). The first divergence is searched from the
loss backwards (pt2ms.verify.train_report): the first layer, counting from the loss, whose own gradients differ while
the gradient flowing into it agrees, or whose incoming gradient already differs. The steps themselves are in
pt2ms.verify.train_steps.
"""

import numpy as np

from pt2ms.config import TrainSection
from pt2ms.errors import Pt2MsError
from pt2ms.formats.inventory import strip_to_known
from pt2ms.mapping import transforms
from pt2ms.mapping.mapfile import parse_value
from pt2ms.running import compare
from pt2ms.running.build import call_factory
from pt2ms.running.models import make_inputs
from pt2ms.running.recording import ms_numpy, torch_numpy
from pt2ms.verify.pairing import entry_links, pair_layers
from pt2ms.verify.train_steps import (
    GRADIENT_FLOOR,
    LOSSES,
    NOISE_FACTOR,
    OPTIMIZERS,
    PARAMETER_FLOOR,
    TRAIN_TOLERANCE,
    first_output,
    ms_steps,
    torch_reference_grads,
    torch_steps,
)

SETTINGS_WORDS = (
    "Normalisation layers in training mode (batch statistics, running statistics updated), every other layer "
    "in inference mode: dropout and stochastic depth are off on both sides. Weight decay, when set, reaches "
    "every trainable parameter on both sides (PyTorch's rule; MindSpore's own default skips names holding "
    "gamma or beta, so pt2ms passes MindSpore one parameter group). `adamw` runs a decoupled decay "
    "p -= lr * weight_decay * p and then Adam on both sides (torch.optim.AdamW's algorithm; MindSpore's "
    "nn.AdamWeightDecay has no bias correction). MindSpore's Adam adds eps before the bias correction, PyTorch's "
    "after it: PyTorch's eps is set each step to 1e-8 / sqrt(1 - beta2^t), so both run MindSpore's formula.")


# --- setting up both sides -------------------------------------------------------------------------------

def check_settings(config):
    """Refuse a [verify.train] value that cannot work, naming it; returns the section (defaults without one)."""
    train, source = config.verify.train or TrainSection(), config.source
    problems = []
    if train.labels == "dataset" and not config.verify.dataset:
        problems.append('labels = "dataset" without a [verify] dataset')
    if train.loss not in LOSSES and not (train.torch_loss and train.mindspore_loss):
        problems.append(f"loss {train.loss!r} (use {', '.join(LOSSES)}, or torch_loss and mindspore_loss factories)")
    if bool(train.torch_loss) != bool(train.mindspore_loss):
        problems.append("torch_loss and mindspore_loss go together (one loss factory per side)")
    if train.optimizer not in OPTIMIZERS:
        problems.append(f"optimizer {train.optimizer!r} (use {', '.join(OPTIMIZERS)})")
    for key in ("lr", "momentum", "weight_decay"):
        value = getattr(train, key)
        if not _is_number(value) or value < 0:
            problems.append(f"{key} {value!r} (a number >= 0)")
    if train.tolerance is not None and (not _is_number(train.tolerance) or train.tolerance <= 0):
        problems.append(f"tolerance {train.tolerance!r} (a number > 0)")
    if isinstance(train.steps, bool) or not isinstance(train.steps, int) or train.steps < 1:
        problems.append(f"steps {train.steps!r} (a whole number >= 1)")
    if problems:
        raise Pt2MsError(f"{source}: [verify.train]: bad {problems[0]}")
    return train


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_torch_norm(module):
    """A module whose forward changes in training mode other than by randomness: BatchNorm, InstanceNorm."""
    import torch

    return isinstance(module, torch.nn.modules.batchnorm._NormBase)


def is_ms_norm(cell):
    return hasattr(cell, "moving_mean") or (hasattr(cell, "running_mean") and "Norm" in type(cell).__name__)


def set_train_modes(model, net):
    """Norm layers train, everything else infers; returns the norm layers' names on each side."""
    model.eval()
    net.set_train(False)
    torch_norms = [name for name, module in model.named_modules() if is_torch_norm(module)]
    ms_norms = [name for name, cell in net.cells_and_names() if is_ms_norm(cell)]
    for name, module in model.named_modules():
        if name in torch_norms:
            module.train()
    for name, cell in net.cells_and_names():
        if name in ms_norms:
            cell.set_train(True)
    return torch_norms, ms_norms


def dropout_layers(model, net):
    """{"torch": [(name, p)], "mindspore": [(name, p)]}: dropout layers that would drop something in training."""
    torch_side = [(name, float(getattr(m, "p", 0.0))) for name, m in model.named_modules()
                  if "Dropout" in type(m).__name__ and getattr(m, "p", 0.0)]
    ms_side = []
    for name, cell in net.cells_and_names():
        if "Dropout" in type(cell).__name__:
            # nn.Dropout(p=...) keeps a stale keep_prob beside p; p wins when set.
            p = getattr(cell, "p", None)
            p = 1.0 - float(getattr(cell, "keep_prob", 1.0)) if p is None else float(p)
            if p:
                ms_side.append((name, p))
    return {"torch": torch_side, "mindspore": ms_side}


def make_labels(train, config, torch_output):
    """The batch's labels or regression target, as a NumPy array."""
    if train.labels == "dataset":
        return _dataset_labels(config)
    if train.labels is not None:
        return make_inputs([train.labels], config.verify.seed + 1, config.source)[0]
    rng = np.random.default_rng(config.verify.seed + 1)
    shape = torch_output.shape
    if train.loss == "cross_entropy":
        # (N, C, ...) logits: a class index in [0, C) per sample (and position).
        return rng.integers(0, shape[1], size=(shape[0], *shape[2:])).astype(np.int64)
    return rng.standard_normal(shape).astype(np.float32)


def _dataset_labels(config):
    dataset = call_factory(config.verify.dataset, config.verify.dataset_kwargs, config.source, "[verify] dataset")
    field = config.verify.dataset_inputs
    samples = [dataset[index] for index in range(min(config.verify.batch_size, len(dataset)))]
    if not all(isinstance(s, (tuple, list)) and len(s) > field for s in samples):
        raise Pt2MsError(f"{config.source}: [verify.train] labels = \"dataset\": samples have no field {field} "
                         f"after the {field} input(s)")
    return np.stack([np.asarray(sample[field]) for sample in samples])


# --- comparing through the map ---------------------------------------------------------------------------

def _through_map(entry, arrays):
    """PyTorch arrays as the MindSpore entry sees them (the entry's transform applied)."""
    return transforms.apply(transforms.parse(entry.transform), arrays)


def floored_metric(ms_value, torch_value, floor, tolerance):
    """compare.metrics with the scale never below `floor`, and a verdict."""
    metric = compare.metrics(ms_value, torch_value)
    if metric.get("compared") and np.isfinite(metric["relative"]) and metric["scale"] < floor:
        metric["relative"] = metric["max_abs"] / floor
        metric["floored"] = True
    metric["verdict"] = compare.verdict(metric, tolerance)
    return metric


def entries(ms_rows, map_data, model, net):
    """One row per mapped MindSpore parameter: names, entry, the torch owner module, trainability each side;
    and the map entries that name no tensor of the built models."""
    torch_params = dict(model.named_parameters())
    torch_buffers = dict(model.named_buffers())
    known = set(torch_params) | set(torch_buffers)
    modules = {name for name, _ in model.named_modules()}
    ms_params = net.parameters_dict()
    rows, unmatched = [], []
    for row in ms_rows:
        value = map_data["map"].get(row.name)
        # A template saved from a training wrapper names optimizer.x what the bare model calls x.
        ms_name = strip_to_known(row.name, ms_params)
        if value is None:
            continue
        entry = parse_value(value, row.name, "map")
        torch_names = [strip_to_known(name, known) for name in entry.torch_names]
        if ms_name not in ms_params or not all(name in known for name in torch_names):
            unmatched.append(row.name)
            continue
        owner = strip_to_known(torch_names[0].rpartition(".")[0], modules)
        buffer = any(name in torch_buffers for name in torch_names)
        rows.append({"mindspore": ms_name, "torch": torch_names if len(torch_names) > 1 else torch_names[0],
                     "torch_names": torch_names, "entry": entry, "owner": owner,
                     "cell": (row.path or row.name).rpartition(".")[0], "statistic": buffer,
                     "ms_trains": bool(ms_params[ms_name].requires_grad),
                     "torch_trains": not buffer and all(torch_params[n].requires_grad for n in torch_names)})
    return rows, unmatched


def snapshot(rows, model, net):
    """Values of every mapped tensor on both sides, for updates (after - before)."""
    torch_state = {name: torch_numpy(t) for name, t in model.state_dict(keep_vars=True).items()}
    ms_params = net.parameters_dict()
    # asnumpy() can share memory with the Parameter, which the optimizer then updates in place: copy.
    return {row["mindspore"]: (ms_numpy(ms_params[row["mindspore"]]).copy(),
                               _through_map(row["entry"], [torch_state[n] for n in row["torch_names"]]))
            for row in rows}


def _trains_words(row):
    if row["ms_trains"]:
        return "trains in MindSpore only (PyTorch's tensor has requires_grad=False)"
    return "trains in PyTorch only (MindSpore's Parameter has requires_grad=False)"


def compare_gradients(rows, torch_grads, ms_grads, reference_grads, tolerance):
    """Per-entry gradient rows; a parameter trained on one side only is a difference by itself."""
    largest = max((float(np.max(np.abs(g))) for g in torch_grads.values() if g.size), default=0.0)
    floor = max(GRADIENT_FLOOR * largest, compare.TINY)
    result = []
    for row in rows:
        if row["statistic"] or not (row["ms_trains"] or row["torch_trains"]):
            continue
        item = {"mindspore": row["mindspore"], "torch": row["torch"], "layer": row["owner"]}
        if row["ms_trains"] != row["torch_trains"]:
            item.update(verdict="differ", trains_one_side=True, note=_trains_words(row))
        elif not all(n in torch_grads for n in row["torch_names"]) or row["mindspore"] not in ms_grads:
            item.update(verdict="not compared", note="no gradient reached it on one side (unused in this forward)")
        else:
            torch_grad = _through_map(row["entry"], [torch_grads[n] for n in row["torch_names"]])
            reference = _through_map(row["entry"], [reference_grads[n] for n in row["torch_names"]])
            noise = floored_metric(torch_grad, reference, floor, tolerance).get("relative", 0.0)
            allowed = max(tolerance, NOISE_FACTOR * noise)
            metric = floored_metric(ms_grads[row["mindspore"]], torch_grad, floor, allowed)
            item.update(relative=metric.get("relative"), noise=noise, cosine=metric.get("cosine"),
                        scale=metric.get("scale"), verdict=metric["verdict"],
                        **({"floored": True} if metric.get("floored") else {}))
        result.append(item)
    return result


def compare_after(rows, before, after, noise, tolerance):
    """Updates (after - before) of trainable entries, and statistics' values after the step(s)."""
    updates = {name: (after[name][0] - before[name][0], after[name][1] - before[name][1]) for name in after}
    largest = max((float(np.max(np.abs(t))) for _, t in updates.values() if t.size), default=0.0)
    floor = max(GRADIENT_FLOOR * largest, compare.TINY)
    after_step, statistics = [], []
    for row in rows:
        name = row["mindspore"]
        item = {"mindspore": name, "torch": row["torch"], "layer": row["owner"]}
        if row["statistic"]:
            item["mindspore_layer"] = row["cell"]
            metric = compare.metrics(*after[name])
            before_metric = compare.metrics(*before[name])
            item.update(relative=metric.get("relative"), before=before_metric.get("relative"),
                        verdict=compare.verdict(metric, tolerance))
            statistics.append(item)
        elif row["ms_trains"] or row["torch_trains"]:
            magnitude = float(np.max(np.abs(before[name][1]))) if before[name][1].size else 0.0
            allowed = max(tolerance, NOISE_FACTOR * noise.get(name, 0.0))  # an update carries its gradient's noise
            metric = floored_metric(*updates[name], max(floor, PARAMETER_FLOOR * magnitude), allowed)
            item.update(relative=metric.get("relative"), verdict=metric["verdict"],
                        ms_moved=bool(np.any(updates[name][0])), torch_moved=bool(np.any(updates[name][1])))
            after_step.append(item)
    return after_step, statistics


# --- the whole check -------------------------------------------------------------------------------------

def train_check(config, model, net, map_data, ms_rows, inputs, layers=()):
    """Run config's training step(s) on both (already loaded) models; the "train" dict of verify.json.

    layers: stage 4's inference layer results; gradients flowing into layers that did not agree there (a
    boundary drawn elsewhere, such as an activation fused into a Dense) are not compared. The models are
    left trained: call this after the inference comparison.
    """
    import torch

    from pt2ms.verify.train_report import backward_ranks, localise

    train = check_settings(config)
    tolerance = train.tolerance if train.tolerance is not None else TRAIN_TOLERANCE
    rows, unmatched = entries(ms_rows, map_data, model, net)
    modules, cells = dict(model.named_modules()), dict(net.cells_and_names())
    pairs = {owner: cell for cell, owner in pair_layers(entry_links(ms_rows, map_data, set(modules)), set(modules), set(cells))}
    agreeing = {layer["torch"] for layer in layers if layer.get("verdict") in compare.AGREEMENT}
    watched = {owner: cell for owner, cell in pairs.items() if not layers or owner in agreeing}
    with torch.no_grad():  # the output's shape, for default labels; in inference mode, so no statistic moves
        probe = first_output(model.eval()(*[torch.from_numpy(x) for x in inputs]))
    torch_norms, ms_norms = set_train_modes(model, net)
    before = snapshot(rows, model, net)
    labels = make_labels(train, config, torch_numpy(probe))
    reference = torch_reference_grads(model, inputs, labels, train, config.source, set(watched))
    torch_run = torch_steps(model, inputs, labels, train, config.source, set(watched))
    ms_run = ms_steps(net, inputs, labels, train, config.source, set(watched.values()))
    result = {
        "settings": _settings(train, tolerance, labels),
        "norm_layers": {"torch": len(torch_norms), "mindspore": len(ms_norms)},
        "dropout": dropout_layers(model, net),
        **compare_steps(rows, before, snapshot(rows, model, net), torch_run, ms_run, reference, tolerance,
                        config.verify.tolerance),
        "flowing": compare_flowing(watched, modules, torch_run, ms_run, reference[1], tolerance),
        "not_in_models": unmatched,
    }
    ranks = backward_ranks(result["gradients"] + result["flowing"], torch_run["order"])
    for row, rank in zip(result["gradients"] + result["flowing"], ranks):
        row["rank"] = rank
    context = {"modules": modules, "cells": cells, "pairs": pairs, "labels_size": int(labels.size),
               "output_size": int(torch_run["output"].size), "output_rows": int(torch_run["output"].shape[0])}
    detail = localise(result, context)
    compared = any(row["verdict"] in compare.AGREEMENT for row in result["gradients"])
    if detail is None and not compared:  # agreement over nothing is no agreement
        detail = {"kind": "not compared", "torch": None, "mindspore": None,
                  "text": "No gradient could be compared through the map: NOT VERIFIED "
                          f"({len(rows)} entries found in both models, {len(unmatched)} not)."}
    result.update(agree=detail is None, first_divergence=detail["text"] if detail else None,
                  first_divergence_detail=detail)
    return result


def compare_steps(rows, before, after, torch_run, ms_run, reference, tolerance, output_tolerance):
    """The training-mode output, the losses, the gradients, the updates and the statistics, compared."""
    output = compare.metrics(ms_run["output"], torch_run["output"])
    output["verdict"] = compare.verdict(output, output_tolerance)
    losses = [{"step": i + 1, "torch": t, "mindspore": m, **_loss_metric(m, t, tolerance)}
              for i, (t, m) in enumerate(zip(torch_run["losses"], ms_run["losses"]))]
    gradients = compare_gradients(rows, torch_run["grads"], ms_run["grads"], reference[0], tolerance)
    noise = {row["mindspore"]: row.get("noise", 0.0) for row in gradients}
    after_step, statistics = compare_after(rows, before, after, noise, tolerance)
    return {"output": output, "loss": losses, "gradients": gradients, "after_step": after_step,
            "statistics": statistics}


def compare_flowing(watched, modules, torch_run, ms_run, reference, tolerance):
    """Per paired layer (called once), the gradient flowing into it from the loss side, both frameworks."""
    result = []
    hooks_work = bool(ms_run["flowing"])
    for owner, cell in watched.items():
        torch_grad, ms_grad = torch_run["flowing"].get(owner), ms_run["flowing"].get(cell)
        note = {}
        if torch_grad is not None and ms_grad is None and hooks_work:
            # MindSpore runs a cell's backward hook only when a gradient reaches the cell.
            ms_grad, note = np.zeros_like(torch_grad), {"note": "no gradient reached the MindSpore cell"}
        if torch_grad is None or ms_grad is None:
            continue
        noise = compare.metrics(torch_grad, reference[owner]).get("relative", 0.0) if owner in reference else 0.0
        metric = compare.metrics(ms_grad, torch_grad)
        result.append({"torch": owner, "mindspore": cell, "layer": owner, "type": type(modules[owner]).__name__,
                       "relative": metric.get("relative"), "noise": noise,
                       "verdict": compare.verdict(metric, max(tolerance, NOISE_FACTOR * noise)), **note})
    return result


def _settings(train, tolerance, labels):
    return {"loss": train.loss if not train.torch_loss else f"{train.torch_loss} / {train.mindspore_loss}",
            "optimizer": train.optimizer, "lr": train.lr, "weight_decay": train.weight_decay,
            "momentum": train.momentum if train.optimizer == "momentum" else None, "steps": train.steps,
            "labels": _labels_words(train), "labels_shape": list(labels.shape), "tolerance": tolerance,
            "modes": SETTINGS_WORDS}


def _loss_metric(ms_loss, torch_loss, tolerance):
    metric = compare.metrics(np.array([ms_loss]), np.array([torch_loss]))
    return {"relative": metric.get("relative"), "verdict": compare.verdict(metric, tolerance)}


def _labels_words(train):
    if train.labels == "dataset":
        return "the dataset's next field"
    if train.labels is not None:
        return f"seeded {train.labels.dtype} {list(train.labels.shape)}"
    return "seeded class indices" if train.loss == "cross_entropy" else "seeded normal target shaped like output 0"
