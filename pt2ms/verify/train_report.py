"""Stage 4 --train: where training parts (in words), the "Training" section of verify.md, and its plot.

The search for the first divergence follows the order a training step runs in: the training-mode forward,
the loss, then the gradients from the loss backwards, then the optimizer's update, then the running
statistics; a dropout present on one side only (off in the check itself) comes last.
"""

import math

from pt2ms.formats.files import atomic_open
from pt2ms.verify.train_steps import GRADIENT_FLOOR, NOISE_FACTOR, PARAMETER_FLOOR

HINTS = (  # (words in the layer's type, hint), first match wins
    ("norm", "a norm layer's gradients depend on batch statistics: compare affine/requires_grad of gamma and "
             "beta, epsilon, and whether it uses batch statistics in training (use_batch_statistics)"),
    ("conv", "a convolution's weight gradient depends on padding, stride and groups that the forward may hide "
             "at this input size; check tied or shared weights"),
    ("linear", "a dense layer's gradient differs for a transposed weight used through a transpose in forward, "
               "or weights shared with another layer on one side only (tied embeddings)"),
    ("dense", "a dense layer's gradient differs for weights shared with another layer on one side only "
              "(tied embeddings), or a transposed weight"),
    ("embed", "an embedding's gradient differs with another padding index (its row gets no gradient) or a table "
              "tied to the output layer on one side only"),
)


def _hint(layer_type):
    kind = layer_type.lower()
    return next((text for key, text in HINTS if key in kind),
                "check the layer's hyperparameters and whether its parameters are shared")


def backward_ranks(gradients, order):
    """Rank of each gradient row's layer counting from the loss (0 = nearest); layers that never ran go last."""
    position = {name: index for index, name in enumerate(order)}
    return [len(order) - position[row["layer"]] - 1 if row["layer"] in position else len(order)
            for row in gradients]


def localise(train, context):
    """The first place where training parts, as {"kind", "torch", "mindspore", "text"}; None when it agrees."""
    for check in (_forward, _loss, _gradients, _updates, _statistics, _dropout):
        found = check(train, context)
        if found:
            return found
    return None


def _forward(train, context):
    output = train["output"]
    if output["verdict"] != "differ":
        return None
    norms = train["norm_layers"]
    count = f" PyTorch has {norms['torch']} norm layers, MindSpore {norms['mindspore']}." \
        if norms["torch"] != norms["mindspore"] else ""
    return {"kind": "forward", "torch": None, "mindspore": None,
            "text": f"In training mode the outputs already differ (relative error "
                    f"{output.get('relative', math.inf):.2e})"
                    " before any gradient: a layer behaves differently in training mode, e.g. a BatchNorm that "
                    "keeps using its running statistics (use_batch_statistics=False) or another epsilon that "
                    f"only batch statistics reveal.{count} Stage 4 without --train locates inference differences."}


def _loss(train, context):
    step = train["loss"][0] if train["loss"] else None
    if step is None or step["verdict"] != "differ":
        return None
    ratio = step["mindspore"] / step["torch"] if step["torch"] else math.inf
    sizes = {context["labels_size"], context["output_size"], context["output_rows"]}
    reason = ""
    for size in sorted(sizes):
        if size > 1 and math.isclose(ratio, size, rel_tol=1e-3):
            reason = f" MindSpore's loss is {size} times PyTorch's: it sums where PyTorch averages ({size} terms)."
        elif size > 1 and math.isclose(ratio, 1 / size, rel_tol=1e-3):
            reason = f" PyTorch's loss is {size} times MindSpore's: it sums where MindSpore averages ({size} terms)."
    return {"kind": "loss", "torch": None, "mindspore": None,
            "text": f"The loss differs while the training-mode outputs agree: PyTorch {step['torch']:.6g}, MindSpore "
                    f"{step['mindspore']:.6g} (ratio {ratio:.4g}).{reason} The two loss functions differ "
                    "(reduction sum vs mean, label smoothing, class weights); every gradient scales with it."}


def _layer_words(context, torch_name):
    cell = context["pairs"].get(torch_name)
    module = context["modules"].get(torch_name)
    kind = type(module).__name__ if module is not None else "?"
    return f"{torch_name or '(top level)'} (MindSpore {cell or '?'}, {kind})", cell, kind


def _gradients(train, context):
    """Walk the layers from the loss backwards: the first whose own gradients differ while the gradient
    flowing into it agrees, or the first whose incoming gradient already differs."""
    flowing = {row["layer"]: row for row in train["flowing"]}
    params = {}
    for row in train["gradients"]:
        params.setdefault(row["layer"], []).append(row)
    ranks = {row["layer"]: row["rank"] for row in train["gradients"] + train["flowing"]}
    previous = None
    for layer in sorted(ranks, key=ranks.get):
        name, cell, kind = _layer_words(context, layer)
        one_side = [row for row in params.get(layer, []) if row.get("trains_one_side")]
        if one_side:
            listed = "; ".join(f"{row['mindspore']} <- {row['torch']}: {row['note']}" for row in one_side)
            return {"kind": "trains on one side", "torch": layer, "mindspore": cell,
                    "text": f"Counting from the loss, training first differs at {name}: {listed}. A parameter "
                            "frozen on one side is a difference by itself: set requires_grad the same on both sides."}
        inflow = flowing.get(layer)
        if inflow and inflow["verdict"] == "differ":
            return {"kind": "between layers", "torch": layer, "mindspore": cell, "after": previous,
                    "text": _between_words(name, inflow, previous)}
        differing = [row for row in params.get(layer, []) if row["verdict"] == "differ"]
        if differing:
            first = differing[0]
            incoming = "while the gradient flowing into it agrees" if inflow else \
                "while every layer nearer the loss agrees (the gradient flowing into it was not compared)"
            return {"kind": "in layer", "torch": layer, "mindspore": cell,
                    "text": f"Counting from the loss, gradients first differ at {name}: {first['mindspore']} <- "
                            f"{first['torch']} (relative error {first['relative']:.2e}, float32 noise "
                            f"{first['noise']:.2e}), {incoming}. This layer's backward computes something else: "
                            f"{_hint(kind)}."}
        previous = layer
    return None


def _between_words(name, inflow, previous):
    where = f"everything from the loss down to {previous} agrees" if previous else "no layer nearer the loss differs"
    return (f"Counting from the loss, the gradient flowing into {name} already differs (relative error "
            f"{inflow['relative']:.2e}, float32 noise {inflow['noise']:.2e}) while {where}: the difference arises in "
            f"{previous or 'the loss'}'s backward to its inputs or in the operations between (a stop_gradient or "
            "detach on one side, a custom backward, an operation written differently that agrees forwards).")


def _updates(train, context):
    rows = [row for row in train["after_step"] if row["verdict"] == "differ"]
    if not rows:
        return None
    first = rows[0]
    return {"kind": "update", "torch": first["layer"], "mindspore": None,
            "text": f"Gradients agree but the optimizer's update of {first['mindspore']} <- {first['torch']} differs "
                    f"(relative error {first['relative']:.2e}): a parameter shared by two layers on one side only, "
                    "or an optimizer that treats it differently (weight decay, a per-parameter group)."}


def _momentum_words(context, row):
    module = context["modules"].get(row["layer"])
    cell = context["cells"].get(row["mindspore_layer"])
    torch_momentum = getattr(module, "momentum", None)
    if torch_momentum is None or cell is None or not hasattr(cell, "momentum"):
        return ""
    # nn.BatchNorm keeps 1 - its argument internally (the weight of the new batch); mint.nn keeps PyTorch's.
    new_weight = float(cell.momentum)
    if hasattr(cell, "moving_mean"):
        written = 1.0 - new_weight
        expected = f"MindSpore's nn.BatchNorm momentum weighs the old statistic, so it should be " \
                   f"1 - {torch_momentum:g} = {1 - torch_momentum:g}; this layer's is {written:g}"
    else:
        expected = f"this layer's momentum is {new_weight:g} in PyTorch's sense"
    if math.isclose(new_weight, torch_momentum, rel_tol=1e-6):
        return (f" Momentum matches (new batch weighted {torch_momentum:g} on both sides): compare how the "
                "variance is estimated (PyTorch keeps the unbiased batch variance).")
    return (f" BatchNorm momentum is inverted between the frameworks: PyTorch's momentum {torch_momentum:g} "
            f"weighs the new batch; {expected}.")


def _statistics(train, context):
    rows = [row for row in train["statistics"] if row["verdict"] == "differ"]
    if not rows:
        return None
    first = rows[0]
    name, cell, _ = _layer_words(context, first["layer"])
    before = first.get("before")
    inherited = f" They already differed before the step (relative error {before:.2e})." \
        if before is not None and before > train["settings"]["tolerance"] else ""
    return {"kind": "statistics", "torch": first["layer"], "mindspore": first["mindspore_layer"],
            "text": f"Gradients and updates agree, but after the step the running statistics of {name} differ: "
                    f"{first['mindspore']} <- {first['torch']} (relative error {first['relative']:.2e}).{inherited}"
                    f"{_momentum_words(context, first)}"}


def _dropout(train, context):
    torch_side, ms_side = train["dropout"]["torch"], train["dropout"]["mindspore"]
    if sorted(p for _, p in torch_side) == sorted(p for _, p in ms_side):
        return None

    def listed(side):
        return ", ".join(f"{name} (p={p:g})" for name, p in side) or "none"

    return {"kind": "dropout", "torch": torch_side[0][0] if torch_side else None,
            "mindspore": ms_side[0][0] if ms_side else None,
            "text": f"Dropout differs: PyTorch has {listed(torch_side)}; MindSpore has {listed(ms_side)}. Dropout is "
                    "off on both sides in this check, so the numbers agree, but fine-tuning would drop activations "
                    "on one side only (or at another rate)."}


# --- verify.md's section and the plot ----------------------------------------------------------------------

LONG_TABLE = 40    # rows; a longer table shows what differs and the largest errors only
SHOWN_WORST = 10


def _fmt(value, digits=2):
    if value is None:
        return "-"
    return f"{value:.{digits}e}" if isinstance(value, float) else str(value)


def markdown(train):
    """The "Training" section of verify.md."""
    settings = train["settings"]
    verdict = "training agrees" if train["agree"] else "training DIFFERS"
    lines = ["", "## Training (4_verify.py --train)", "",
             f"**Verdict: {verdict}** (`train.agree` = {str(train['agree']).lower()}).", "",
             f"Loss {settings['loss']}, optimizer {settings['optimizer']} (lr {settings['lr']:g}, weight decay "
             f"{settings['weight_decay']:g}), {settings['steps']} step(s), labels: {settings['labels']} "
             f"{settings['labels_shape']}; tolerance {settings['tolerance']:g} for gradients, updates and statistics "
             f"(a gradient's scale is never taken below {GRADIENT_FLOOR:g} of the model's largest gradient, an "
             f"update's never below {PARAMETER_FLOOR:g} of its parameter's magnitude: analytically zero gradients "
             f"and float32 rounding of the stored parameter are noise). {settings['modes']}",
             ""]
    if train["first_divergence"]:
        lines += ["### Where training parts", "", train["first_divergence"], ""]
    output = train["output"]
    lines += [f"Training-mode output: relative error {_fmt(output.get('relative'))} ({output['verdict']}). "
              f"Norm layers in training mode: PyTorch {train['norm_layers']['torch']}, MindSpore "
              f"{train['norm_layers']['mindspore']}. Dropout layers (off here): PyTorch "
              f"{len(train['dropout']['torch'])}, MindSpore {len(train['dropout']['mindspore'])}.", "",
              "| step | PyTorch loss | MindSpore loss | relative | verdict |", "| --- | --- | --- | --- | --- |"]
    if train.get("not_in_models"):
        listed = ", ".join(f"`{name}`" for name in train["not_in_models"][:5])
        lines[-3:-3] = [f"Not compared: {len(train['not_in_models'])} map entries name no tensor of the built "
                        f"models ({listed}).", ""]
    lines += [f"| {row['step']} | {row['torch']:.6g} | {row['mindspore']:.6g} | {_fmt(row['relative'])} | "
              f"{row['verdict']} |" for row in train["loss"]]
    lines += ["", f"A gradient differs when its error exceeds the tolerance and {NOISE_FACTOR} times *noise*, "
              "PyTorch's own float32 error against a float64 copy of the model (deep nets in training mode amplify rounding)."]
    lines += _table("Gradients (step 1), counting from the loss", train["gradients"], ("relative", "noise", "cosine"),
                    sort=True)
    lines += _table("Gradients flowing into paired layers (step 1), counting from the loss", train["flowing"],
                    ("relative", "noise"), sort=True)
    lines += _table("Updates after the step(s) (after - before)", train["after_step"], ("relative",))
    lines += _table("Running statistics after the step(s)", train["statistics"], ("relative", "before"))
    return "\n".join(lines) + "\n"


def _table(title, rows, figures, sort=False):
    """A table of compared entries; a long one keeps the rows that differ and the largest errors."""
    rows = sorted(rows, key=lambda r: r.get("rank", 0)) if sort else rows
    differ = sum(row["verdict"] == "differ" for row in rows)
    lines = ["", f"### {title}: {len(rows)} entries, {differ} differ", ""]
    if len(rows) > LONG_TABLE:
        worst = sorted(rows, key=lambda r: -(r.get("relative") or 0.0))[:SHOWN_WORST]
        shown = [row for row in rows if row["verdict"] == "differ" or row in worst]
        lines += [f"Showing the {len(shown)} that differ or have the largest errors; verify.json lists all.", ""]
        rows = shown
    if not rows:
        return lines
    lines += ["| MindSpore | PyTorch | " + " | ".join(figures) + " | verdict | note |",
              "| --- | --- | " + " | ".join("---" for _ in figures) + " | --- | --- |"]
    for row in rows:
        cells = " | ".join(f"{row[key]:.6f}" if key == "cosine" and row.get(key) is not None else _fmt(row.get(key))
                           for key in figures)
        note = row.get("note", "") + (" (scale floored)" if row.get("floored") else "")
        lines.append(f"| `{row['mindspore']}` | `{row['torch']}` | {cells} | {row['verdict']} | {note} |")
    return lines


def plot(train, name, path):
    """Each gradient's relative error, counting from the loss, log scale, tolerance drawn in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((row for row in train["gradients"] if row.get("relative") is not None or row.get("trains_one_side")),
                  key=lambda r: r["rank"])
    # A parameter trained on one side only has no error figure: drawn at 1 (100%) with a red cross.
    values = [1.0 if row.get("relative") is None or not math.isfinite(row["relative"]) else max(row["relative"], 1e-12)
              for row in rows]
    figure, axes = plt.subplots(figsize=(10, 4))
    axes.semilogy(range(len(values)), values, marker=".", label="gradient, MindSpore vs PyTorch")
    one_side = [index for index, row in enumerate(rows) if row.get("trains_one_side")]
    if one_side:
        axes.semilogy(one_side, [1.0] * len(one_side), "rx", label="trains on one side only")
    tolerance = train["settings"]["tolerance"]
    axes.axhline(tolerance, color="red", linewidth=1, label=f"tolerance {tolerance:g}")
    axes.set_xlabel("parameter, counting from the loss (backward order)")
    axes.set_ylabel("max abs error / gradient scale")
    axes.set_title(f"{name}: gradients after one step ({'agree' if train['agree'] else 'differ'})")
    axes.legend(loc="upper left")
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
    return path


def summary(train):
    """The lines 4_verify.py --train prints; none without a training check."""
    if not train:
        return []
    differ = sum(row["verdict"] == "differ" for row in train["gradients"])
    loss = train["loss"][0] if train["loss"] else {"torch": math.nan, "mindspore": math.nan}
    lines = [f"training {'agrees' if train['agree'] else 'DIFFERS'}: loss PyTorch {loss['torch']:.6g}, MindSpore "
             f"{loss['mindspore']:.6g}; {differ}/{len(train['gradients'])} gradients, "
             f"{sum(row['verdict'] == 'differ' for row in train['statistics'])}/{len(train['statistics'])} "
             f"running statistics differ; tolerance {train['settings']['tolerance']:g}"]
    return lines + ([f"  {train['first_divergence']}"] if train["first_divergence"] else [])


def write(result, out_dir):
    """verify.md's Training section (returned) and verify_train.png (written); [] paths without --train."""
    train = result.get("train")
    if not train:
        return "", []
    return markdown(train), [plot(train, result["name"], out_dir / "verify_train.png")]

