"""A Hugging Face model folder on disk: which of the files `save_pretrained` writes holds the weights."""

from pathlib import Path

from pt2ms.errors import Pt2MsError

# What save_pretrained writes, most preferred first (an index means shards).
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                "pytorch_model.bin")


def weights_file(folder):
    """The file (or shard index) holding a Hugging Face folder's weights."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    found = ", ".join(sorted(path.name for path in folder.iterdir())[:8]) or "nothing"
    raise Pt2MsError(f"{folder}: a folder as checkpoint must be a Hugging Face model folder holding one of "
                     f"{', '.join(WEIGHT_FILES)} (it holds {found})")
