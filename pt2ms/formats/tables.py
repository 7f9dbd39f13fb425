"""Tables on disk as CSV, written through pandas, read with the standard library's csv (stages 2 and 3 read
only these, and importing pandas cost them 0.3-1 s a run), safe to open in a spreadsheet.

Every text cell is escaped one way, so a name survives any round trip exactly and a row is one line:
- a backslash and every character that is not printable (control characters such as \\n, \\r, \\t, \\x1b;
  invisible formatting such as the right-to-left override \\u202e; line and paragraph separators; spaces other
  than ' ') become backslash escapes (`\\\\`, `\\n`, `\\x1b`, `\\u202e`);
- a cell that a spreadsheet would run as a formula (starting with = + - or @), or one that starts with ',
  gets a leading ' (the spreadsheet's own "this is text" mark).
`unescape` undoes both. Names that are not valid Unicode (lone surrogates, which a pickle or a JSON header
can hold) cannot be written as UTF-8 and are refused.
"""

import csv
import io
import re
import sys

from pt2ms.errors import Pt2MsError
from pt2ms.formats.files import write_text

FORMULA_START = ("=", "+", "-", "@", "'")   # ' too, so that unescape can tell its own mark from a name's
SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
UNESCAPE = re.compile(r"\\(?:([\\nrt])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))")


def check_unicode(text, where):
    """Refuse a string that cannot be written as UTF-8 (a lone surrogate), naming where it came from."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise Pt2MsError(f"{where}: name {text!r} is not valid Unicode ({error.reason} at position {error.start}); "
                         "rename the tensor before saving the checkpoint") from None


def _escape_char(char):
    if char in SHORT_ESCAPES:
        return SHORT_ESCAPES[char]
    if char.isprintable() or char == " ":
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text, where="", formulas=True):
    """A text cell: non-printable characters and backslashes escaped, formulas neutralised (unless formulas=False)."""
    check_unicode(text, where)
    if not text.isprintable() or "\\" in text:
        text = "".join(map(_escape_char, text))
    return "'" + text if formulas and text.startswith(FORMULA_START) else text


def unescape(text):
    """Undo `escape` (with formulas=True)."""
    if text.startswith("'"):
        text = text[1:]
    if "\\" not in text:
        return text

    def one(found):
        short, *codes = found.groups()
        if short:
            return {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}[short]
        return chr(int(next(code for code in codes if code), 16))

    return UNESCAPE.sub(one, text)


def to_csv_text(columns, records, where=""):
    """CSV text of `records` (lists of cells in `columns` order); str cells are escaped, others written as they are."""
    import pandas as pd

    cells = [[escape(cell, where) if isinstance(cell, str) else cell for cell in record] for record in records]
    out = io.StringIO()
    pd.DataFrame(cells, columns=columns).to_csv(out, index=False, lineterminator="\n")
    return out.getvalue()


def write_csv(path, columns, records):
    """Write a human-facing CSV table atomically; returns the path."""
    write_text(path, to_csv_text(columns, records, path))
    return path


def read_csv(path):
    """Rows of a CSV written by `to_csv_text`, as dicts of unescaped strings (numbers stay text).

    As pandas read them before: blank lines skipped, a short row padded with empty cells, a long one refused."""
    csv.field_size_limit(sys.maxsize)  # a cell as long as the file (csv's default stops at 128 KB; names can be longer)
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            reader = csv.reader(file)
            rows = [(reader.line_num, row) for row in reader if row]
    except (csv.Error, UnicodeDecodeError) as error:
        raise Pt2MsError(f"{path}: not a CSV table ({error})") from None
    if not rows:
        raise Pt2MsError(f"{path}: empty file, not a table")
    header = rows[0][1]
    for line, row in rows[1:]:
        if len(row) > len(header):
            raise Pt2MsError(f"{path}: not a CSV table (line {line} has {len(row)} fields, the header {len(header)})")
    return [{key: unescape(value) for key, value in zip(header, row + [""] * (len(header) - len(row)))}
            for _, row in rows[1:]]


# The human-facing tables: one per stage artifact a reviewer sorts and filters.
MAP_REVIEW_COLUMNS = ["mindspore_name", "mindspore_shape", "torch_name", "torch_shape", "method", "confidence",
                      "transform", "note"]
VERIFY_LAYER_COLUMNS = ["index", "torch", "mindspore", "type", "relative", "inputs_relative", "isolated_relative",
                        "verdict", "note"]


def _joined(values):
    return " + ".join(values)


def map_review_records(matches, ms_rows, torch_rows):
    """One row per map entry, in the map's order (least confident first): names, shapes, how it was found."""
    ms_shapes = {row.name: list(row.shape) for row in ms_rows}
    torch_shapes = {row.name: list(row.shape) for row in torch_rows}
    records = []
    for item in matches:
        sources = [item.torch] if isinstance(item.torch, str) else list(item.torch or [])
        records.append([item.ms_name, str(ms_shapes.get(item.ms_name, "")), _joined(sources),
                        _joined(str(torch_shapes.get(name, "?")) for name in sources), item.method,
                        item.confidence, item.transform, item.note])
    return records


def write_map_review(path, matches, ms_rows, torch_rows):
    """outputs/<name>/map_review.csv: the map as a table to sort and filter; returns the path."""
    return write_csv(path, MAP_REVIEW_COLUMNS, map_review_records(matches, ms_rows, torch_rows))


def _relative(metric):
    """A layer's relative error as a number; empty when there is none (not compared, sizes differ)."""
    value = metric.get("relative")
    return value if isinstance(value, float) and not metric.get("sizes_differ") else None


def verify_layer_records(result):
    """The per-layer table of verify.md, row for row, with full-precision numbers."""
    records = []
    for index, layer in enumerate(result["layers"]):
        notes = [f"{what} sizes differ" for what, metric in (("output", layer), ("inputs", layer.get("inputs", {})),
                                                              ("isolated", layer.get("isolated", {})))
                 if metric.get("sizes_differ")] + ([layer["note"]] if layer.get("note") else [])
        records.append([index, layer["torch"], layer["mindspore"], layer["torch_type"], _relative(layer),
                        _relative(layer.get("inputs", {})), _relative(layer.get("isolated", {})), layer["verdict"],
                        "; ".join(notes)])
    return records


def write_verify_layers(path, result):
    """outputs/<name>/verify_layers.csv; returns the path."""
    return write_csv(path, VERIFY_LAYER_COLUMNS, verify_layer_records(result))
