"""Inventory rows of a live model: each tensor's owning layer type and attribute path, read from the model.

The rows themselves (`TensorInfo`) and their files are pt2ms.formats.inventory's; this module only asks the
PyTorch module or MindSpore cell.
"""

from pt2ms.errors import Pt2MsError
from pt2ms.formats.ckpt import FROM_MS_TYPE
from pt2ms.formats.inventory import TensorInfo, strip_to_known


def add_torch_layer_types(rows, model):
    """Fill layer_type (and path) on torch rows from the module that owns each tensor."""
    modules = dict(model.named_modules())
    state = model.state_dict(keep_vars=True)
    for row in rows:
        path = strip_to_known(row.name, state)
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
        found = by_name.get(strip_to_known(row.name, by_name))
        if found is not None and tuple(found.shape) == tuple(row.shape):
            row.layer_type, row.path = found.layer_type, found.path
            row.definition_order, row.execution_order = found.definition_order, found.execution_order
            row.settings = found.settings
    return rows
