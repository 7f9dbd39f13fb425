"""Reading a map file (maps/<name>.json) and parsing its entries: what stages 3 and 4 need of stage 2.

Kept apart from mapping.py so that stage 3 does not import the matcher (and scipy with it, 1.5 s). A map is
user-edited input: its structure, types, nesting and numbers are checked before anything uses them.
"""

import json
import math
import re
from dataclasses import dataclass

from pt2ms.errors import Pt2MsError
from pt2ms.mapping import transforms


@dataclass
class Entry:
    """One parsed value of "map"."""
    torch_names: list      # [] for null
    transform: str = ""
    tied: bool = False


ENTRY_FORM = 'must be a PyTorch name, null, or {"torch": name or [names], "transform": "...", "tied": true}'
MAX_TRANSFORM_CHARS = 1000
MAX_TRANSFORM_NUMBER = 2**40   # larger than any tensor dimension; keeps shape arithmetic exact in int64


def parse_value(value, ms_name, where):
    """Parse one "map" value; raises Pt2MsError naming the entry."""
    if value is None:
        return Entry([])
    if isinstance(value, str):
        return Entry([value])
    if isinstance(value, dict):
        unknown = set(value) - {"torch", "transform", "tied"}
        source = value.get("torch")
        names = [source] if isinstance(source, str) else source
        transform, tied = value.get("transform", ""), value.get("tied", False)
        if (unknown or not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names)
                or not isinstance(transform, str) or not isinstance(tied, bool)):
            raise Pt2MsError(f"{where}: entry {_short(ms_name)} {ENTRY_FORM}")
        try:
            _check_transform(transform)
        except Pt2MsError as error:
            raise Pt2MsError(f"{where}: entry {_short(ms_name)}: {error}") from None
        return Entry(names, transform, tied)
    raise Pt2MsError(f"{where}: entry {_short(ms_name)} has a {type(value).__name__}; expected a name, null or an object")


def _short(name):
    text = repr(name)
    return text if len(text) <= 200 else text[:197] + "..."


def _check_transform(text):
    """Parse a transform and bound its numbers, so that no shape arithmetic can overflow or run away."""
    if len(text) > MAX_TRANSFORM_CHARS:
        raise Pt2MsError(f"transform of {len(text):,} characters (at most {MAX_TRANSFORM_CHARS})")
    try:
        ops = transforms.parse(text)
    except ValueError as error:  # e.g. a number too long for int()
        raise Pt2MsError(f"bad transform: {error}") from None
    for op, args in ops:
        numbers = [arg for arg in args if isinstance(arg, int)]
        if any(abs(arg) > MAX_TRANSFORM_NUMBER for arg in numbers) or math.prod(numbers) >= 2**62:
            raise Pt2MsError(f"transform {op}: numbers out of range (each at most {MAX_TRANSFORM_NUMBER:,})")
    return ops


def shape_after(ops, shapes):
    """transforms.output_shape, with an argument that does not fit the shapes (a cat dim past the last) an error."""
    try:
        return transforms.output_shape(ops, shapes)
    except (IndexError, ValueError, TypeError) as error:
        raise Pt2MsError(f"{transforms.format_ops(ops)} does not fit shapes {[list(s) for s in shapes]} "
                         f"({type(error).__name__})") from None


MAX_JSON_DEPTH = 8  # a map is 4 levels deep; deeper nesting is damage, and Python's parser recurses on it


def read_map(path):
    """Read a map file and check its structure; a JSON syntax error names line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Pt2MsError(f"{path}: map not found; run stage 2 (2_build_map.py) first") from None
    except OSError as error:
        raise Pt2MsError(f"{path}: cannot read the map ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise Pt2MsError(f"{path}: not UTF-8 text (byte {error.start})") from None
    depth = _nesting(text)
    if depth > MAX_JSON_DEPTH:
        raise Pt2MsError(f"{path}: JSON nested {depth} levels deep; a map has at most {MAX_JSON_DEPTH}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise Pt2MsError(f"{path}: JSON syntax error at line {error.lineno}, column {error.colno}: {error.msg}") from None
    except ValueError as error:  # a number of thousands of digits
        raise Pt2MsError(f"{path}: bad JSON value: {str(error)[:100]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("map"), dict):
        raise Pt2MsError(f'{path}: a map file needs a top-level object with a "map" object inside')
    _check_sections(data, path)
    for ms_name, value in data["map"].items():
        parse_value(value, ms_name, path)
    return data


def hand_edits(data):
    """{ms_name: value} of the entries of a map that differ from what stage 2 suggested (a person's edits)."""
    if not data:
        return {}
    suggested = data.get("suggested", {})
    return {name: value for name, value in data["map"].items() if name not in suggested or suggested[name] != value}


def _nesting(text):
    """How deep brackets nest in a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    for token in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        char = token.group()
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _check_sections(data, path):
    """The parts other than "map" that the stages read must have the shape stage 2 writes."""
    ignored, suggested = data.get("ignored", {}), data.get("suggested", {})
    if not (isinstance(ignored, dict) and set(ignored) <= {"torch", "mindspore"}
            and all(isinstance(side, dict) for side in ignored.values())):
        raise Pt2MsError(f'{path}: "ignored" must be {{"torch": {{name: reason}}, "mindspore": {{...}}}}, '
                         f"got {_short(ignored)}")
    if not isinstance(suggested, dict):
        raise Pt2MsError(f'{path}: "suggested" must be an object (name -> value), got {_short(suggested)}')
