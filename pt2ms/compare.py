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
TINY = 1e-12


def metrics(ms_value, torch_value):
    """Error metrics between two arrays of one shape, as plain floats."""
    a = np.asarray(ms_value, dtype=np.float64).reshape(-1)
    b = np.asarray(torch_value, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        return {"shape_ms": list(np.shape(ms_value)), "shape_torch": list(np.shape(torch_value)), "compared": 0}
    if not a.size:
        return {"compared": 0}
    diff = np.abs(a - b)
    scale = float(np.max(np.abs(b)))
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
    return {
        "compared": int(a.size),
        "max_abs": float(diff.max()) if finite else float("inf"),
        "mean_abs": float(diff.mean()) if finite else float("inf"),
        "scale": scale,
        "relative": float(diff.max() / max(scale, TINY)) if finite else float("inf"),
        "cosine": float(a @ b / norms) if norms > 0 and finite else (1.0 if not a.any() and not b.any() else 0.0),
    }


def verdict(metric, tolerance):
    """'agree', 'agree within float noise', 'differ', or 'not compared'."""
    if not metric.get("compared"):
        return "not compared"
    if metric["relative"] <= EXACT:
        return "agree"
    if metric["relative"] <= tolerance:
        return "agree within float noise"
    return "differ"


def flatten(value, label="output"):
    """Nested tuples, lists and dicts of arrays -> [(label, array)], labels like output[0] or output['boxes']."""
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in flatten(inner, f"{label}[{key!r}]")]
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return flatten(value[0], label)
        return [item for index, inner in enumerate(value) for item in flatten(inner, f"{label}[{index}]")]
    return [(label, value)]
