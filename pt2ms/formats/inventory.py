"""Parameter inventories: one row per tensor on each side (`TensorInfo`), and their CSV and txt files.

On disk an inventory is a CSV with the columns of `TensorInfo` (shape as a JSON list) and a
fixed-width txt of the same rows for reading by eye.
"""

import dataclasses
import json
import types
import typing
from dataclasses import dataclass

from pt2ms.errors import Pt2MsError
from pt2ms.formats import tables
from pt2ms.formats.files import write_text

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
    settings: str = ""           # owning layer's settings (pt2ms.running.settings.settings_text), "" if unknown

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


def strip_to_known(name, known):
    """`name` without the wrapper prefixes (module., model., ...) that keep it from being one of `known`."""
    while name not in known:
        prefix = next((p for p in WRAPPER_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            return name
        name = name[len(prefix):]
    return name


def _base_type(kind):
    """The type a field's cells convert to: `int | None` -> int; string annotations are looked up by name."""
    if isinstance(kind, str):
        kind = {"str": str, "int": int, "float": float, "bool": bool, "tuple": tuple, "list": list}.get(kind, kind)
    args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return _base_type(args[0]) if args and typing.get_origin(kind) in (typing.Union, types.UnionType) else kind


def _to_cell(value, kind):
    if value is None:
        return ""
    if kind in (tuple, list, dict):
        return json.dumps(list(value) if kind is tuple else value)
    if kind is bool:
        return "true" if value else "false"
    return value  # str cells are escaped by the table writer; numbers go as they are


def _from_cell(text, field):
    kind = _base_type(field.type)
    if kind is str:
        return text
    if text == "":
        return _default(field)
    if kind in (tuple, list, dict):
        value = json.loads(text)
        return tuple(value) if kind is tuple else value
    if kind is bool:
        return {"true": True, "false": False}[text.lower()]
    return kind(text) if kind in (int, float) else text


def _default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise KeyError(f"no value for column {field.name!r}")


def to_csv_text(rows, where=""):
    """The inventory CSV: one column per TensorInfo field (plus numel), every name escaped reversibly."""
    fields = dataclasses.fields(TensorInfo)
    records = []
    for row in rows:
        cells = [_to_cell(getattr(row, field.name), _base_type(field.type)) for field in fields]
        records.append(cells[:3] + [row.numel] + cells[3:])
    names = [field.name for field in fields]
    # numel is derived: written for people, not read back.
    return tables.to_csv_text(names[:3] + ["numel"] + names[3:], records, where)


# The txt pads every name to the longest one: a name longer than this is cut there (whole in the CSV), so that
# one pathological name (seen: 1 MB among 4,000 tensors, a 4 GB txt) cannot blow the file up.
TXT_NAME_LIMIT = 160


def cut_name(name, limit=TXT_NAME_LIMIT):
    """`name`, or its first `limit` characters and a marker saying how many more the CSV holds."""
    return name if len(name) <= limit else f"{name[:limit]}…(+{len(name) - limit:,} chars)"


def to_txt(rows, title, where=""):
    """The inventory for reading by eye: fixed-width columns, names escaped as in the CSV (one row, one line),
    a very long name cut (see TXT_NAME_LIMIT)."""
    names = {row.name: cut_name(tables.escape(row.name, where, formulas=False)) for row in rows}
    width = max([len(name) for name in names.values()] + [4])
    lines = [f"# {tables.escape(title, where, formulas=False)}: {len(rows)} tensors, "
             f"{sum(r.numel for r in rows):,} values",
             f"{'name':<{width}}  {'shape':<22} {'dtype':<9} {'numel':>12}  layer"]
    for row in rows:
        shape = "x".join(map(str, row.shape)) or "scalar"
        note = f"  (same storage as {cut_name(tables.escape(row.tied_to, where, formulas=False))})" if row.tied_to else ""
        layer = tables.escape(row.layer_type, where, formulas=False)
        lines.append(f"{names[row.name]:<{width}}  {shape:<22} {row.dtype:<9} {row.numel:>12,}  {layer}{note}")
    return "\n".join(lines) + "\n"


def inventory_texts(rows, title, where=""):
    """(CSV text, txt text) of an inventory; refuses a name that is not valid Unicode, naming `where`."""
    return to_csv_text(rows, where), to_txt(rows, title, where)


def write_inventory(rows, stem, title, texts=None):
    """Write `<stem>.csv` and `<stem>.txt` (from `texts` when already made); returns the two paths."""
    csv_text, txt_text = texts or inventory_texts(rows, title, stem.with_suffix(".csv"))
    csv_path, txt_path = stem.with_suffix(".csv"), stem.with_suffix(".txt")
    write_text(csv_path, csv_text)
    write_text(txt_path, txt_text)
    return csv_path, txt_path


def read_inventory(path):
    """Read an inventory CSV written by stage 1 (columns missing from older files take the field's default)."""
    try:
        records = tables.read_csv(path)
    except FileNotFoundError:
        raise Pt2MsError(f"{path}: inventory not found; run stage 1 (1_show.py) first") from None
    fields = dataclasses.fields(TensorInfo)
    try:
        return [TensorInfo(**{field.name: _from_cell(record[field.name], field) if field.name in record
                              else _default(field) for field in fields}) for record in records]
    except (KeyError, ValueError, TypeError) as error:
        raise Pt2MsError(f"{path}: not an inventory CSV written by stage 1 ({error})") from None
