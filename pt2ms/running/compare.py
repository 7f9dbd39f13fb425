"""Comparing two arrays, and the tolerance rules behind "agree", "agree within float noise" and "differ".

Errors are measured relative to the magnitude of the reference (PyTorch) output: scale = max |reference|.
  relative error = max |ms - torch| / scale
  - "agree":                   relative error <= EXACT (1e-6): a few float32 roundings (eps = 1.2e-7).
  - "agree within float noise": relative error <= tolerance (default 1e-4, configurable). Two correct
    float32 implementations sum in different orders; over a deep net that costs about 1e-7..1e-5 of the
    output scale, and 1e-4 is the default of MindSpore's TroubleShooter and of ONNX/TF converters.
  - "differ":                  anything larger. A wrong epsilon, a missing transpose or a swapped tensor
    shows up at 1e-3 and above.
Scaling by the output magnitude keeps the rule meaningful for logits of size 1e-2 and activations of 1e3.
"""

import numpy as np

EXACT = 1e-6
# What one float32 operation may cost, relative to its output's scale: a few roundings (1e-7 each), more for a
# long sum in another order. A layer fed PyTorch's own inputs that misses by more computes something else,
# whatever the model's tolerance (a tanh GELU misses by about 1e-4).
OP_TOLERANCE = 1e-5
# In a coarser compute dtype ([verify] dtype) one operation costs about a rounding of its output: a few units of
# its precision (float16 2**-11, bfloat16 2**-8), far above what float32's long sums cost.
OP_TOLERANCES = {"float64": OP_TOLERANCE, "float32": OP_TOLERANCE, "float16": 4e-3, "bfloat16": 3e-2}
TINY = 1e-12
AGREEMENT = ("agree", "agree within float noise")
# From best to worst: the verdict of several results is the worst of theirs.
VERDICT_ORDER = ("agree", "agree within float noise", "not compared", "differ")


def op_tolerance(dtype="float32"):
    """What one operation may cost, relative to its output's scale, when both models compute in `dtype`."""
    return OP_TOLERANCES.get(dtype, OP_TOLERANCE)


def metrics(ms_value, torch_value):
    """Error metrics between two arrays, as plain floats.

    Arrays of different sizes cannot be compared value by value: "sizes_differ" marks them, and their
    verdict is "differ". Arrays of one size but another shape ([2, 1] against [2]) are compared value by
    value, yet "shapes_differ" still makes them "differ": code written for one model's output would
    index or broadcast the other's differently, so the two are not interchangeable.
    """
    ms_shape, torch_shape = list(np.shape(ms_value)), list(np.shape(torch_value))
    a = np.asarray(ms_value, dtype=np.float64).reshape(-1)
    b = np.asarray(torch_value, dtype=np.float64).reshape(-1)
    if a.size != b.size:
        return {"compared": 0, "sizes_differ": True, "size_ms": int(a.size), "size_torch": int(b.size),
                "shape_ms": ms_shape, "shape_torch": torch_shape}
    result = _value_metrics(a, b)
    if ms_shape != torch_shape:
        result.update(shapes_differ=True, shape_ms=ms_shape, shape_torch=torch_shape)
    return result


def _value_metrics(a, b):
    """Metrics of two flat arrays of one size."""
    if not a.size:
        return {"compared": 0}
    diff = np.abs(a - b)
    scale = float(np.max(np.abs(b)))
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    finite_ms, finite_torch = np.isfinite(a), np.isfinite(b)
    finite = bool(finite_ms.all() and finite_torch.all())
    result = {
        "compared": int(a.size),
        "max_abs": float(diff.max()) if finite else float("inf"),
        "mean_abs": float(diff.mean()) if finite else float("inf"),
        "scale": scale,
        "relative": float(diff.max() / max(scale, TINY)) if finite else float("inf"),
        "cosine": float(a @ b / norms) if norms > 0 and finite else (1.0 if not a.any() and not b.any() else 0.0),
    }
    if not finite:
        # The error figures above are then inf (null in verify.json); the counts say where the inf/NaN came from.
        result.update(non_finite_ms=int(a.size - finite_ms.sum()), non_finite_torch=int(b.size - finite_torch.sum()))
    return result


def verdict(metric, tolerance):
    """'agree', 'agree within float noise', 'differ', or 'not compared'."""
    if metric.get("sizes_differ") or metric.get("shapes_differ"):
        return "differ"
    if not metric.get("compared"):
        return "not compared"
    relative = metric.get("relative")
    if relative is None:  # how verify.json writes an error that is not finite
        return "differ"
    if relative <= EXACT:  # a fixed threshold, independent of the tolerance
        return "agree"
    if relative <= tolerance:
        return "agree within float noise"
    return "differ"  # NaN too, as it fails both comparisons above


def worst(verdicts):
    """The worst of several verdicts (VERDICT_ORDER); None for none."""
    return max(verdicts, key=VERDICT_ORDER.index, default=None)


def flatten(value, label="output"):
    """Nested tuples, lists and dicts of arrays -> [(label, array)], labels like output[0] or output['boxes']."""
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in flatten(inner, f"{label}[{key!r}]")]
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return flatten(value[0], label)
        return [item for index, inner in enumerate(value) for item in flatten(inner, f"{label}[{index}]")]
    return [(label, value)]
