"""Stage 4: run both models on the same inputs and compare them, output by output and layer by layer.

Layers are paired through the map: a MindSpore cell and the PyTorch module whose parameters feed it are
the same layer. Forward hooks record each paired layer's inputs and outputs on both sides during one
pass; the first paired layer whose output leaves tolerance is where the two models part. Isolation mode
then feeds each MindSpore layer the inputs its PyTorch partner saw, which tells "this layer computes
something else" apart from "this layer inherits a difference".
"""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from . import compare, transforms
from .checkpoint import open_torch_checkpoint
from .config import build_ms_model, build_torch_model
from .errors import Pt2MsError
from .inventory import WRAPPER_PREFIXES, read_inventory
from .mapping import parse_value, read_map

NUMPY_INPUT_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64,
                      "int64": np.int64, "int32": np.int32, "bool": np.bool_}


def make_inputs(specs, seed, source="the config"):
    """Seeded inputs: normal(0, 1) floats, uniform integers in [low, high)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for index, spec in enumerate(specs):
        dtype = NUMPY_INPUT_DTYPES.get(spec.dtype)
        if dtype is None:
            raise Pt2MsError(f"input dtype {spec.dtype!r} is not supported (use one of {', '.join(NUMPY_INPUT_DTYPES)})")
        if any(size < 1 for size in spec.shape):
            # An input without values gives outputs without values: the run would verify nothing.
            raise Pt2MsError(f"{source}: [verify] inputs: input {index} has shape {list(spec.shape)}; "
                             "give every dimension a size of at least 1")
        if np.issubdtype(dtype, np.floating):
            arrays.append(rng.standard_normal(spec.shape).astype(dtype))
        else:
            arrays.append(rng.integers(spec.low, spec.high, size=spec.shape).astype(dtype))
    return arrays


# --- loading both models -------------------------------------------------------------------------------

def _strip_to_known(name, known):
    while name not in known:
        prefix = next((p for p in WRAPPER_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            break
        name = name[len(prefix):]
    return name


def load_torch(config):
    """The PyTorch model with the checkpoint loaded strictly (wrapper prefixes such as module. dropped)."""
    import torch

    model = build_torch_model(config)
    expected = model.state_dict()
    state = {}
    for name, tensor in open_torch_checkpoint(config.torch.checkpoint, config.torch.state_dict_key,
                                              config.torch.trust_pickle).items():
        array = tensor.read()
        value = torch.from_numpy(array).view(torch.bfloat16) if tensor.dtype == "bfloat16" else torch.from_numpy(array)
        state[_strip_to_known(name, expected)] = value
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    if missing or unexpected:
        raise Pt2MsError(f"{config.torch.checkpoint}: does not fit the PyTorch model {config.torch.model}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_ms(config, ckpt_path, map_data):
    """The MindSpore model with the converted checkpoint loaded; fails on anything not loaded by mistake."""
    import mindspore as ms

    net = build_ms_model(config)
    try:
        params = ms.load_checkpoint(str(ckpt_path), format=ckpt_path.suffix.lstrip("."))
    except Exception as error:
        raise Pt2MsError(f"{ckpt_path}: MindSpore cannot load it ({str(error).splitlines()[0]}); run stage 3 first") from None
    names = {parameter.name for parameter in net.get_parameters()}
    # A checkpoint written for a training wrapper's names (optimizer.x) loads into the bare model as x.
    params = {_strip_to_known(name, names): value for name, value in params.items()}
    dtypes = {name: str(value.dtype) for name, value in params.items()}
    param_not_load, ckpt_not_load = ms.load_param_into_net(net, params, strict_load=True)
    deliberate = {_strip_to_known(name, names) for name, value in map_data["map"].items() if value is None}
    missing = [name for name in param_not_load if name not in deliberate]
    if missing or ckpt_not_load:
        raise Pt2MsError(f"{ckpt_path}: does not fit the MindSpore model: not loaded {missing[:5]}, "
                         f"unused in the checkpoint {list(ckpt_not_load)[:5]}")
    notes = [f"{name}: checkpoint holds {dtypes[name]}, the model casts it to {parameter.dtype}"
             for name, parameter in net.parameters_dict().items()
             if name in dtypes and dtypes[name] != str(parameter.dtype)]
    notes += [f"{name}: left at its initial value (null in the map)" for name in param_not_load]
    net.set_train(False)
    return net, notes


# --- pairing layers through the map --------------------------------------------------------------------

def pair_layers(ms_rows, map_data, module_names, cell_names):
    """[(ms cell path, torch module path)]: each MindSpore cell with the module that feeds most of its parameters."""
    votes = Counter()
    for row in ms_rows:
        value = map_data["map"].get(row.name)
        if value is None or not row.path:
            continue
        cell = row.path.rpartition(".")[0]
        entry = parse_value(value, row.name, "map")
        if any(op in ("chunk", "cat") for op, _ in transforms.parse(entry.transform)):
            continue  # a piece of a fused layer computes part of the other's output: nothing to compare 1:1
        for torch_name in entry.torch_names:
            owner = _strip_to_known(torch_name.rpartition(".")[0], module_names)
            if cell in cell_names and owner in module_names and cell and owner:
                votes[(cell, owner)] += 1
    pairs, taken_cells, taken_modules = [], set(), set()
    for (cell, owner), _ in votes.most_common():
        if cell not in taken_cells and owner not in taken_modules:
            pairs.append((cell, owner))
            taken_cells.add(cell)
            taken_modules.add(owner)
    return pairs


# --- recording -----------------------------------------------------------------------------------------

@dataclass
class Record:
    inputs: list = None
    output: list = None
    calls: int = 0


@dataclass
class Recorder:
    """Forward hooks: inputs and outputs of watched layers (first call), and the order modules ran in."""
    watched: set
    records: dict = field(default_factory=dict)
    order: list = field(default_factory=list)
    enabled: bool = True

    def hook(self, name, to_numpy):
        def record(_layer, inputs, output):
            if not self.enabled:
                return
            self.order.append(name)
            if name not in self.watched:
                return
            record_ = self.records.setdefault(name, Record())
            record_.calls += 1
            if record_.calls == 1:
                record_.inputs = [to_numpy(x) for _, x in compare.flatten(tuple(inputs)) if _is_array(x)]
                record_.output = [to_numpy(x) for _, x in compare.flatten(output) if _is_array(x)]
        return record


def _is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype")


def torch_numpy(tensor):
    # A copy: an in-place op later in forward (ReLU(inplace=True)) would otherwise rewrite what we recorded.
    tensor = tensor.detach()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy().copy()


def ms_numpy(tensor):
    import mindspore as ms

    if tensor.dtype in (ms.bfloat16, ms.float16):
        tensor = tensor.astype(ms.float32)
    return tensor.asnumpy()


def _joined(arrays, shapes_from=None):
    if not arrays:
        return np.zeros(0)
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays])


# --- the comparison ------------------------------------------------------------------------------------

def run_models(model, net, torch_inputs, ms_inputs):
    """One forward pass of each model (each on its own copy of the inputs); outputs as [(label, array)]."""
    import mindspore as ms
    import torch

    with torch.no_grad():
        torch_out = model(*[torch.from_numpy(x) for x in torch_inputs])
    ms_out = net(*[ms.Tensor(x) for x in ms_inputs])
    torch_flat = [(label, torch_numpy(x)) for label, x in compare.flatten(torch_out)]
    ms_flat = [(label, ms_numpy(x)) for label, x in compare.flatten(ms_out)]
    return torch_flat, ms_flat


def compare_outputs(torch_flat, ms_flat, tolerance):
    """Per-output metrics; a different number, nesting or shape of outputs is itself a difference."""
    results = []
    ms_by_label = dict(ms_flat)
    for label, torch_value in torch_flat:
        if label not in ms_by_label:
            results.append({"output": label, "compared": 0, "verdict": "differ",
                            "note": "MindSpore gives no output here"})
            continue
        metric = compare.metrics(ms_by_label[label], torch_value)
        results.append({"output": label, **metric, "verdict": compare.verdict(metric, tolerance),
                        **_shape_note(metric)})
    torch_labels = {label for label, _ in torch_flat}
    # Code written for PyTorch's outputs would not expect an output more: report it rather than drop it.
    results += [{"output": label, "compared": 0, "verdict": "differ", "note": "only MindSpore gives this output"}
                for label, _ in ms_flat if label not in torch_labels]
    return results


def _shape_note(metric):
    """A note for an output whose shape differs between the two models."""
    if metric.get("sizes_differ"):
        return {"note": f"shapes differ: MindSpore {metric['shape_ms']}, PyTorch {metric['shape_torch']}"}
    if metric.get("shapes_differ"):
        return {"note": f"shapes differ: MindSpore {metric['shape_ms']}, PyTorch {metric['shape_torch']} "
                        "(the errors compare the values in memory order)"}
    return {}


def _isolate(cell, record):
    """Run a MindSpore cell on the inputs its PyTorch partner recorded; its output arrays, or None."""
    import mindspore as ms

    try:
        out = cell(*[ms.Tensor(x) for x in record.inputs])
    except Exception:
        return None
    return [ms_numpy(x) for _, x in compare.flatten(out) if _is_array(x)]


def _layer_metric(ms_arrays, torch_arrays):
    """Metrics over all of a layer's arrays joined; arrays that changed size are a difference, not a skip."""
    extra = len(ms_arrays) - len(torch_arrays)
    common = min(len(ms_arrays), len(torch_arrays))
    if extra and common and all(np.shape(a) == np.shape(b) for a, b in zip(ms_arrays, torch_arrays)):
        # One side returns more (MindSpore's VocabEmbedding also returns its table): compare what both return.
        ms_arrays, torch_arrays = ms_arrays[:common], torch_arrays[:common]
    metric = compare.metrics(_joined(ms_arrays), _joined(torch_arrays))
    if extra and len(ms_arrays) == common:
        metric["note"] = f"compared the first {common} of {common + abs(extra)} arrays: only " \
                         f"{'MindSpore' if extra > 0 else 'PyTorch'} returns the rest"
    if metric.get("sizes_differ"):
        # The joined arrays' shapes say nothing; each array's shape shows where the sizes part.
        metric["shape_ms"] = [list(np.shape(x)) for x in ms_arrays]
        metric["shape_torch"] = [list(np.shape(x)) for x in torch_arrays]
    return metric


def _compared_layer(ms_record, torch_record, tolerance):
    """A layer's output metrics, its inputs' metrics and its verdict; inputs that changed size make it differ."""
    layer = _layer_metric(ms_record.output, torch_record.output)
    layer["inputs"] = _layer_metric(ms_record.inputs, torch_record.inputs)
    changed = {what: metric for what, metric in (("inputs", layer["inputs"]), ("outputs", layer))
               if metric.get("sizes_differ")}
    if changed:
        layer["sizes_differ"] = True
        shapes = [f"{what} MindSpore {metric['shape_ms']}, PyTorch {metric['shape_torch']}"
                  for what, metric in changed.items()]
        layer["note"] = "changed size: " + "; ".join(shapes)
    layer["verdict"] = compare.verdict(layer, tolerance)
    return layer


def compare_layers(model, net, inputs, pairs, tolerance, isolate=True):
    """Per-layer metrics in PyTorch execution order, with inputs compared and isolation results."""
    import mindspore as ms
    import torch

    modules, cells = dict(model.named_modules()), dict(net.cells_and_names())
    torch_rec = Recorder({owner for _, owner in pairs})
    ms_rec = Recorder({cell for cell, _ in pairs})
    handles = [module.register_forward_hook(torch_rec.hook(name, torch_numpy))
               for name, module in modules.items() if name]
    handles += [cells[cell].register_forward_hook(ms_rec.hook(cell, ms_numpy)) for cell, _ in pairs]
    try:
        with torch.no_grad():
            model(*[torch.from_numpy(x) for x in inputs])
        net(*[ms.Tensor(x) for x in inputs])
        ms_rec.enabled = False
        by_owner = {owner: cell for cell, owner in pairs}
        executed = [name for name in dict.fromkeys(torch_rec.order) if name in by_owner]
        layers = []
        for owner in tqdm(executed, desc="layers", unit="layer", leave=False, disable=None):
            cell = by_owner[owner]
            torch_record, ms_record = torch_rec.records[owner], ms_rec.records.get(cell)
            layer = {"torch": owner, "mindspore": cell, "torch_type": type(modules[owner]).__name__,
                     "mindspore_type": type(cells[cell]).__name__, "calls": torch_record.calls}
            if ms_record is None:
                layer.update(compared=0, verdict="not compared", note="the MindSpore cell never ran")
                layers.append(layer)
                continue
            layer.update(_compared_layer(ms_record, torch_record, tolerance))
            if isolate:
                alone = _isolate(cells[cell], torch_record)
                layer["isolated"] = _layer_metric(alone, torch_record.output) if alone is not None else \
                    {"compared": 0, "note": "the cell does not take the PyTorch module's inputs"}
                layer["isolated"]["verdict"] = compare.verdict(layer["isolated"], tolerance)
            layers.append(layer)
    finally:
        for handle in handles:
            handle.remove()
    _mark_boundaries(layers)
    parameter_free = {name for name, module in modules.items()
                      if name and not any(True for _ in module.parameters(recurse=False))
                      and not any(True for _ in module.children())}
    return layers, [name for name in torch_rec.order], parameter_free


BOUNDARY = "boundary differs"
# Inputs closer than this count as the same inputs when telling a layer's own error from an inherited one.
INPUTS_TOLERANCE = 1e-4


def _mark_boundaries(layers):
    """A layer whose output differs while the next layer's inputs agree only draws its boundary elsewhere.

    E.g. MindSpore's Dense(activation=GELU) includes the activation PyTorch applies after its Linear: the
    outputs differ, yet nothing downstream does. Such layers are marked, not reported as divergence.
    """
    for layer, following in zip(layers, layers[1:]):
        inputs = following.get("inputs", {})
        if layer["verdict"] == "differ" and inputs.get("compared") and \
                compare.verdict(inputs, INPUTS_TOLERANCE) != "differ" and following["verdict"] != "differ":
            layer["verdict"] = BOUNDARY
            layer["note"] = ("output differs but the next layer's inputs agree: the two sides split the work "
                             "differently here (e.g. an activation fused into the layer)")


HINTS = {
    "norm": "normalisation layers usually differ in epsilon (MindSpore LayerNorm defaults to 1e-7, PyTorch 1e-5) "
            "or momentum, or their gamma/beta/mean/variance are swapped",
    "conv": "convolutions usually differ in padding (MindSpore defaults to pad_mode='same'), stride, dilation, "
            "groups or a missing bias, or the map feeds them the wrong kernel",
    "dense": "dense layers usually get a transposed or swapped weight, or lack a bias",
    "embed": "embeddings usually get the wrong table or padding index",
}


def _hint(layer):
    kind = (layer["mindspore_type"] + layer["torch_type"]).lower()
    for key, text in HINTS.items():
        if key in kind or (key == "dense" and "linear" in kind) or (key == "embed" and "embedding" in kind):
            return text
    return "check the layer's hyperparameters and the map entries that feed it"


def _between(order, previous, layer, parameter_free):
    start = order.index(previous["torch"]) + 1 if previous else 0
    return [name for name in dict.fromkeys(order[start:order.index(layer["torch"])]) if name in parameter_free]


def _error_words(metric):
    """How far apart two sets of values are, in words: their sizes when those differ, else the error figures."""
    if "size_ms" in metric:  # set by compare.metrics only for values of different sizes
        return f"{metric['size_ms']} values where PyTorch has {metric['size_torch']}"
    return f"relative error {metric['relative']:.2e}, cosine {metric['cosine']:.6f}"


def _computes_differently(layer):
    """Whether a differing layer is itself to blame rather than the inputs it was handed."""
    inputs, isolated = layer["inputs"], layer.get("isolated", {})
    if isolated.get("verdict") == "differ":
        return True
    if not inputs.get("compared") and not inputs.get("sizes_differ"):
        return True  # no inputs to blame (the layer takes no arrays)
    # Inputs that agree leave only the layer, unless fed PyTorch's own inputs it agreed (amplified rounding).
    return compare.verdict(inputs, INPUTS_TOLERANCE) != "differ" and isolated.get("verdict") not in compare.AGREEMENT


def _inputs_jump(layer, previous):
    """Whether the layer's inputs differ far more than the last agreeing layer's output: a step, not a drift."""
    inputs = layer["inputs"]
    if previous is None or inputs.get("sizes_differ"):
        return True
    return inputs["relative"] > 10 * max(previous["relative"], compare.EXACT)


def first_divergence(layers, order, parameter_free, outputs_differ):
    """Where the models part, in words a person reads; None when nothing differs.

    outputs_differ: whether any output differs; with every layer agreeing, only then is there anything to place.
    """
    previous = None
    for layer in layers:
        if layer["verdict"] != "differ":
            if layer["verdict"] not in ("not compared", BOUNDARY):
                previous = layer
            continue
        name = f"{layer['torch']} (MindSpore {layer['mindspore']}, {layer['torch_type']})"
        found = {"torch": layer["torch"], "mindspore": layer["mindspore"], "after": previous and previous["torch"]}
        if _computes_differently(layer):
            isolated = layer.get("isolated", {})
            own = isolated if isolated.get("verdict") == "differ" else layer
            text = (f"The models part at {name}: fed the same inputs as PyTorch, its output differs "
                    f"({_error_words(own)}). This layer computes something else: {_hint(layer)}.")
            return {**found, "kind": "in layer", "text": text}
        if _inputs_jump(layer, previous):
            between = _between(order, previous, layer, parameter_free)
            where = f"after {previous['torch']} agreed (relative error {previous['relative']:.2e})" if previous \
                else "before the first paired layer"
            ops = ", ".join(between) if between else "operations written inline in forward()/construct()"
            text = (f"The models part before {name}: its inputs already differ ({_error_words(layer['inputs'])}) "
                    f"{where}, and fed PyTorch's inputs the layer itself agrees. The difference arises in the "
                    f"parameter-free operations in between: {ops}. Compare their padding, pooling mode, activation "
                    "and reshapes.")
            return {**found, "kind": "between layers", "between": between, "text": text}
        worst = max((l.get("isolated", {}).get("relative", 0.0) for l in layers if l.get("isolated", {}).get("compared")),
                    default=0.0)
        text = (f"No single place computes differently: errors grow gradually and first leave tolerance at {name} "
                f"({_error_words(layer)}), while every layer fed PyTorch's inputs agrees (largest "
                f"isolated error {worst:.2e}). This is float32 rounding accumulated over depth; a looser "
                "tolerance is justified for this model, or look for numerically sensitive operations.")
        return {**found, "kind": "accumulated", "text": text}
    if outputs_differ:
        last = previous["torch"] if previous else "the first layer"
        return {"torch": None, "mindspore": None, "kind": "after layers",
                "text": f"Every paired layer agrees but the outputs differ: the difference arises after {last}, "
                        "in operations that own no parameters (pooling, activation, reshape, the output head's "
                        "post-processing)."}
    return None


# --- inputs: seeded, or a user's dataset -----------------------------------------------------------------

def dataset_batches(config):
    """[(torch batch, MindSpore batch)] from the user's map-style dataset, through each framework's pipeline.

    The same dataset object feeds PyTorch through a DataLoader and MindSpore through GeneratorDataset and
    batch (seed 000's recipe); both see the samples in order, so batch i is the same data on both sides.
    """
    import mindspore.dataset as ds
    import torch.utils.data

    from .config import call_factory

    dataset = call_factory(config.verify.dataset, config.verify.dataset_kwargs, config.source)
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise Pt2MsError(f"{config.source}: dataset {config.verify.dataset!r} needs __getitem__ and __len__")
    first = dataset[0]
    fields = len(first) if isinstance(first, (tuple, list)) else 1
    count = config.verify.dataset_inputs
    columns = [f"column{i}" for i in range(fields)]
    ms_data = ds.GeneratorDataset(dataset, column_names=columns, shuffle=False).batch(config.verify.batch_size)
    torch_data = torch.utils.data.DataLoader(dataset, batch_size=config.verify.batch_size, shuffle=False)
    batches = []
    for torch_batch, ms_batch in zip(torch_data, ms_data.create_tuple_iterator(output_numpy=True)):
        torch_batch = torch_batch if isinstance(torch_batch, (list, tuple)) else [torch_batch]
        batches.append(([np.asarray(x) for x in torch_batch[:count]], [np.asarray(x) for x in ms_batch[:count]]))
        if len(batches) == config.verify.batches:
            break
    if not batches:
        raise Pt2MsError(f"{config.source}: dataset {config.verify.dataset!r} gave no batch")
    return batches


def converted_checkpoint(config):
    """Stage 3's output: <name>.ckpt or <name>.safetensors, the newer where both exist."""
    found = [path for path in (config.output_dir / f"{config.name}.{suffix}" for suffix in ("ckpt", "safetensors"))
             if path.is_file()]
    if not found:
        raise Pt2MsError(f"{config.output_dir}: no {config.name}.ckpt or {config.name}.safetensors; run stage 3 first")
    return max(found, key=lambda path: path.stat().st_mtime_ns)


def stale_checkpoint_warnings(map_path, ckpt_path):
    """A warning when the map was edited after stage 3 wrote the checkpoint, which then holds an older map."""
    try:
        stale = map_path.stat().st_mtime_ns > ckpt_path.stat().st_mtime_ns
    except FileNotFoundError:
        return []  # a missing checkpoint is load_ms's to report
    if not stale:
        return []
    return [f"map changed after the checkpoint was written: rerun 3_pth2ckpt.py ({map_path} is newer than {ckpt_path})"]


def _input_batches(config):
    """[(torch inputs, MindSpore inputs)]: the user's dataset, or one seeded batch fed to both."""
    if config.verify.dataset:
        return dataset_batches(config)
    if not config.verify.inputs:
        raise Pt2MsError(f"{config.source}: [verify] needs inputs (shapes) or a dataset")
    arrays = make_inputs(config.verify.inputs, config.verify.seed, config.source)
    return [(arrays, arrays)]


def _reasons(outputs, layers_wanted, layers_paired):
    """Why the run verifies nothing, however well what it did compare agrees."""
    reasons = []
    if all(row["verdict"] == "not compared" for row in outputs):
        reasons.append("no output was compared")
    if layers_wanted and not layers_paired:
        reasons.append("no layer could be paired through the map")
    return reasons


def overall_verdict(outputs, reasons):
    """One output that differs makes the models differ, whatever else could not be compared; else any
    reason makes the run "not compared"; else the worst verdict of the outputs that were compared."""
    verdicts = {row["verdict"] for row in outputs}
    if "differ" in verdicts:
        return "differ"
    if reasons:
        return "not compared"
    return compare.worst(verdicts & set(compare.AGREEMENT))


def summarise(outputs, layers, order, parameter_free, layers_wanted, layers_paired):
    """The verdict, why nothing was verified if so, and where the models part."""
    reasons = _reasons(outputs, layers_wanted, layers_paired)
    verdict = overall_verdict(outputs, reasons)
    outputs_differ = any(row["verdict"] == "differ" for row in outputs)
    divergence = first_divergence(layers, order, parameter_free, outputs_differ)
    return {
        "agree": verdict in compare.AGREEMENT,
        "verdict": verdict,
        "reasons": reasons,
        "first_divergence": divergence["text"] if divergence else None,
        "first_divergence_detail": divergence,
    }


def verify(config, train=False):
    """Stage 4: compare the two models; writes verify.md/json/png and returns the result dict.

    train: also run one training step on both (pt2ms.training), after the inference comparison.
    """
    from .report import write_reports

    ckpt_path = converted_checkpoint(config)
    map_data = read_map(config.map_path)
    ms_rows = read_inventory(config.output_dir / "ms_params.csv")
    if not config.mindspore.model:
        raise Pt2MsError(f"{config.source}: stage 4 needs [mindspore] model (a factory), not only a template")
    warnings = stale_checkpoint_warnings(config.map_path, ckpt_path)
    batches = _input_batches(config)  # before loading: a bad [verify] section fails fast
    if train:
        from .training import check_settings
        check_settings(config)
    model = load_torch(config)
    net, load_notes = load_ms(config, ckpt_path, map_data)
    tolerance = config.verify.tolerance
    outputs = []
    for index, (torch_inputs, ms_inputs) in enumerate(tqdm(batches, desc="batches", unit="batch", leave=False, disable=None)):
        torch_flat, ms_flat = run_models(model, net, torch_inputs, ms_inputs)
        for item in compare_outputs(torch_flat, ms_flat, tolerance):
            outputs.append({"batch": index, **item})
    layers, order, parameter_free = [], [], set()
    pairs = []
    if config.verify.layers:
        pairs = pair_layers(ms_rows, map_data, {n for n, _ in model.named_modules()}, {n for n, _ in net.cells_and_names()})
        first_torch, first_ms = batches[0]
        if first_torch is not first_ms and not all(np.array_equal(a, b) for a, b in zip(first_torch, first_ms)):
            load_notes.append("the two data pipelines gave different first batches; layer inputs will differ")
        layers, order, parameter_free = compare_layers(model, net, first_torch, pairs, tolerance)
    result = {
        "name": config.name,
        **summarise(outputs, layers, order, parameter_free, config.verify.layers, len(pairs)),
        "warnings": warnings,
        "tolerance": tolerance,
        "exact_threshold": compare.EXACT,
        "torch_checkpoint": str(config.torch.checkpoint),
        "mindspore_checkpoint": str(ckpt_path),
        "batches": len(batches),
        "inputs": [list(x.shape) for x in batches[0][0]],
        "outputs": outputs,
        "layers": layers,
        "layers_paired": len(pairs),
        "load_notes": load_notes,
    }
    if train:
        from .training import train_check
        result["train"] = train_check(config, model, net, map_data, ms_rows, batches[0][0], layers)
    result["files"] = [str(path) for path in write_reports(result, config.output_dir)]
    return result
