"""MindSpore safetensors shards and their index (stage 3's --max-shard-size)."""

import json
from pathlib import Path

from pt2ms.errors import Pt2MsError


def is_index(path):
    return Path(path).name.endswith(".index.json")


def shard_files(index_path):
    """The shard files an index names, in order, each checked to lie beside it."""
    index_path = Path(index_path)
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise Pt2MsError(f"{index_path}: not a shard index ({type(error).__name__}: {str(error)[:100]})") from None
    names = list(dict.fromkeys(weight_map.values()))
    return [index_path.parent / name for name in names]
