"""Parameter inventories: one row per tensor on each side, from a model, a checkpoint or a template.

On disk an inventory is a CSV with the columns of `TensorInfo` (shape as a JSON list) and a
fixed-width txt of the same rows for reading by eye.
"""

import csv
import dataclasses
import io
import json
from dataclasses import dataclass

from .ckpt import FROM_MS_TYPE
from .errors import Pt2MsError
from .files import write_text

WRAPPER_PREFIXES = ("module.", "model.", "optimizer.", "network.", "_network.", "net.")


@dataclass
class TensorInfo:
    name: str              # the checkpoint name: state-dict key (torch) or Parameter.name (MindSpore)
    shape: tuple
    dtype: str             # float32, bfloat16, int64, ...
    layer_type: str = ""   # class of the owning layer, "" when no model was given
    path: str = ""         # attribute path in the model (MindSpore: may differ from name); "" if unknown
    tied_to: str = ""      # an earlier name sharing this tensor's storage (torch side), "" if none
    definition_order: int = -1   # owning layer's index in the model's named_modules/cells_and_names; -1 unknown
    execution_order: int = -1    # owning layer's index in the order layers first ran; -1 never ran / not run
    settings: str = ""           # owning layer's settings (pt2ms.settings.settings_text), "" if unknown

    @property
    def numel(self):
        count = 1
        for size in self.shape:
            count *= size
        return count


def from_checkpoint(tensors):
    """Inventory of a checkpoint (name -> LazyTensor), marking tensors that share storage."""
    first_owner, rows = {}, []
    for name, tensor in tensors.items():
        key = (tensor.source, tensor.storage) if tensor.storage else None
        tied_to = first_owner.get(key, "") if key else ""
        if key and not tied_to:
            first_owner[key] = name
        rows.append(TensorInfo(name, tuple(tensor.shape), tensor.dtype, tied_to=tied_to))
    return rows


def _strip_wrappers(name, known):
    while name not in known:
        prefix = next((p for p in WRAPPER_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            return name
        name = name[len(prefix):]
    return name


def add_torch_layer_types(rows, model):
    """Fill layer_type (and path) on torch rows from the module that owns each tensor."""
    modules = dict(model.named_modules())
    state = model.state_dict(keep_vars=True)
    for row in rows:
        path = _strip_wrappers(row.name, state)
        if path in state:
            owner = modules.get(path.rpartition(".")[0])
            row.path = path
            row.layer_type = type(owner).__name__ if owner is not None else ""
    return rows


def torch_model_rows(model):
    """Inventory of a torch model's state dict (used when no checkpoint exists yet)."""
    rows, first_owner = [], {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape)) \
            if tensor.numel() else None
        tied_to = first_owner.setdefault(key, name) if key else name
        rows.append(TensorInfo(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."),
                               tied_to="" if tied_to == name else tied_to))
    return add_torch_layer_types(rows, model)


def ms_layer_type(cell):
    """A MindSpore cell's class name, marked "mint." for mindspore.mint layers (they keep torch's names)."""
    name = type(cell).__name__
    return f"mint.{name}" if type(cell).__module__.startswith("mindspore.mint") else name


def from_ms_model(net):
    """Inventory of a MindSpore Cell: Parameter.name, attribute path, owning cell type, in definition order."""
    cells = dict(net.cells_and_names())
    rows, seen = [], {}
    for path, parameter in net.parameters_and_names():
        name = parameter.name
        if name in seen:
            raise Pt2MsError(f"MindSpore model: parameters {seen[name]!r} and {path!r} share the Parameter.name "
                             f"{name!r}; a checkpoint cannot tell them apart (give them distinct names)")
        seen[name] = path
        owner = cells.get(path.rpartition(".")[0])
        dtype = FROM_MS_TYPE.get(str(parameter.dtype), str(parameter.dtype).lower())
        rows.append(TensorInfo(name, tuple(parameter.shape), dtype,
                               ms_layer_type(owner) if owner is not None else "", path))
    return rows


def add_ms_layer_types(rows, model_rows):
    """Fill layer_type and path on template rows from the model's rows (template names may carry a wrapper prefix)."""
    by_name = {row.name: row for row in model_rows}
    for row in rows:
        found = by_name.get(_strip_wrappers(row.name, by_name))
        if found is not None and tuple(found.shape) == tuple(row.shape):
            row.layer_type, row.path = found.layer_type, found.path
            row.definition_order, row.execution_order = found.definition_order, found.execution_order
            row.settings = found.settings
    return rows


FIELDS = [field.name for field in dataclasses.fields(TensorInfo)]


def to_csv_text(rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS[:3] + ["numel"] + FIELDS[3:])
    for row in rows:
        writer.writerow([row.name, json.dumps(list(row.shape)), row.dtype, row.numel,
                         row.layer_type, row.path, row.tied_to, row.definition_order, row.execution_order,
                         row.settings])
    return out.getvalue()


def to_txt(rows, title):
    width = max([len(row.name) for row in rows] + [4])
    lines = [f"# {title}: {len(rows)} tensors, {sum(r.numel for r in rows):,} values",
             f"{'name':<{width}}  {'shape':<22} {'dtype':<9} {'numel':>12}  layer"]
    for row in rows:
        shape = "x".join(map(str, row.shape)) or "scalar"
        note = f"  (same storage as {row.tied_to})" if row.tied_to else ""
        lines.append(f"{row.name:<{width}}  {shape:<22} {row.dtype:<9} {row.numel:>12,}  {row.layer_type}{note}")
    return "\n".join(lines) + "\n"


def write_inventory(rows, stem, title):
    """Write `<stem>.csv` and `<stem>.txt`; returns the two paths."""
    csv_path, txt_path = stem.with_suffix(".csv"), stem.with_suffix(".txt")
    write_text(csv_path, to_csv_text(rows))
    write_text(txt_path, to_txt(rows, title))
    return csv_path, txt_path


def read_inventory(path):
    """Read an inventory CSV written by stage 1."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [TensorInfo(name=r["name"], shape=tuple(json.loads(r["shape"])), dtype=r["dtype"],
                               layer_type=r.get("layer_type", ""), path=r.get("path", ""),
                               tied_to=r.get("tied_to", ""), definition_order=int(r.get("definition_order") or -1),
                               execution_order=int(r.get("execution_order") or -1), settings=r.get("settings") or "")
                    for r in csv.DictReader(handle)]
    except FileNotFoundError:
        raise Pt2MsError(f"{path}: inventory not found; run stage 1 (1_show.py) first") from None
    except (KeyError, ValueError, TypeError) as error:
        raise Pt2MsError(f"{path}: not an inventory CSV written by stage 1 ({error})") from None


def show(config):
    """Stage 1: write both sides' inventories to outputs/<name>/; returns {side: (rows, csv, txt)}."""
    from .checkpoint import open_ms_checkpoint, open_torch_checkpoint
    from .config import build_ms_model, build_torch_model

    from .layer_facts import add_facts, ms_facts, torch_facts
    from .models import make_inputs

    tensors = open_torch_checkpoint(config.torch.checkpoint, config.torch.state_dict_key, config.torch.trust_pickle)
    torch_rows = from_checkpoint(tensors)
    # Both models run once on the [verify] inputs with their own initial weights: the order their layers run
    # in is the position stage 2 uses (a checkpoint's key order may be alphabetical).
    warnings = []
    try:
        inputs = make_inputs(config.verify.inputs, config.verify.seed) if config.verify.inputs else []
    except Pt2MsError as error:  # stage 4 refuses such inputs; stage 1 only loses the execution order
        inputs = []
        warnings.append(f"{error}: no execution order")
    if config.torch.model:
        model = build_torch_model(config)
        add_torch_layer_types(torch_rows, model)
        facts = torch_facts(model, inputs)
        add_facts(torch_rows, facts)
        warnings.append(facts.warning)
    # A template's names are what the target checkpoint must hold; a model adds layer types, paths and order.
    ms_model_rows = None
    if config.mindspore.model:
        net = build_ms_model(config)
        facts = ms_facts(net, inputs)
        ms_model_rows = add_facts(from_ms_model(net), facts)
        warnings.append(facts.warning)
    for warning in filter(None, warnings):
        print(f"warning: {warning}")
    if config.mindspore.template:
        ms_rows = from_checkpoint(open_ms_checkpoint(config.mindspore.template))
        if ms_model_rows:
            add_ms_layer_types(ms_rows, ms_model_rows)
        ms_source = f"template {config.mindspore.template}"
    else:
        ms_rows, ms_source = ms_model_rows, f"model {config.mindspore.model}"
    out = config.output_dir
    return {
        "torch": (torch_rows, *write_inventory(torch_rows, out / "torch_params", f"PyTorch {config.torch.checkpoint}")),
        "mindspore": (ms_rows, *write_inventory(ms_rows, out / "ms_params", f"MindSpore {ms_source}")),
    }
