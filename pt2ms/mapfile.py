"""Reading a map file (maps/<name>.json) and parsing its entries: what stages 3 and 4 need of stage 2.

Kept apart from mapping.py so that stage 3 does not import the matcher (and scipy with it, 1.5 s).
"""

import json
from dataclasses import dataclass

from . import transforms
from .errors import Pt2MsError


@dataclass
class Entry:
    """One parsed value of "map"."""
    torch_names: list      # [] for null
    transform: str = ""
    tied: bool = False


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
        if unknown or not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise Pt2MsError(f"{where}: entry {ms_name!r} must be a PyTorch name, null, or "
                             '{"torch": name or [names], "transform": "...", "tied": true}')
        try:
            transforms.parse(value.get("transform", ""))
        except Pt2MsError as error:
            raise Pt2MsError(f"{where}: entry {ms_name!r}: {error}") from None
        return Entry(names, value.get("transform", ""), bool(value.get("tied", False)))
    raise Pt2MsError(f"{where}: entry {ms_name!r} has a {type(value).__name__}; expected a name, null or an object")


def read_map(path):
    """Read a map file; a JSON syntax error names line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Pt2MsError(f"{path}: map not found; run stage 2 (2_build_map.py) first") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise Pt2MsError(f"{path}: JSON syntax error at line {error.lineno}, column {error.colno}: {error.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("map"), dict):
        raise Pt2MsError(f'{path}: a map file needs a top-level object with a "map" object inside')
    for ms_name, value in data["map"].items():
        parse_value(value, ms_name, path)
    return data
