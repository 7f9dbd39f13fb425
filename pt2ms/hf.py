"""A Hugging Face model folder as the PyTorch side: weights from its files, the model from its config.json.

A folder saved by `save_pretrained` holds `config.json` and the weights (`model.safetensors`, or shards and
`model.safetensors.index.json`; older ones `pytorch_model.bin`). With no `[torch] model` in the config, the
model is built with transformers from `config.json` (the class named in `architectures`, else `AutoModel`), so
stage 1 gets layer types and stage 4 a model to run with no factory to write. transformers stays optional:
it is imported only here.
"""

import json
from pathlib import Path

from .errors import Pt2MsError

# What save_pretrained writes, most preferred first (an index means shards).
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                "pytorch_model.bin")
FACTORY = "pt2ms.hf:from_folder"


def weights_file(folder):
    """The file (or shard index) holding a Hugging Face folder's weights."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    found = ", ".join(sorted(path.name for path in folder.iterdir())[:8]) or "nothing"
    raise Pt2MsError(f"{folder}: a folder as checkpoint must be a Hugging Face model folder holding one of "
                     f"{', '.join(WEIGHT_FILES)} (it holds {found})")


def adopt_folder(torch_section):
    """Point [torch] at a folder's weights file, and build the model from its config.json unless a factory is named."""
    folder = torch_section.checkpoint
    torch_section.checkpoint = weights_file(folder)
    if torch_section.model is None:
        if not (folder / "config.json").is_file():
            raise Pt2MsError(f"{folder}: no config.json to build the PyTorch model from; name a factory as [torch] model")
        # kwargs, if any, override config.json fields (e.g. attn_implementation = "eager").
        torch_section.model = FACTORY
        torch_section.kwargs = {"folder": str(folder), **torch_section.kwargs}


def _transformers(folder):
    try:
        import transformers
    except ImportError:
        raise Pt2MsError(f"{folder}: building the PyTorch model from a Hugging Face folder needs the transformers "
                         "package (pip install 'transformers>=5,<6'), or name a factory as [torch] model") from None
    return transformers


def from_folder(folder, **overrides):
    """The model a Hugging Face folder describes, randomly initialised (stage 4 loads the weights itself)."""
    folder = Path(folder)
    transformers = _transformers(folder)
    try:
        architectures = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, **overrides)
    except (OSError, ValueError) as error:
        raise Pt2MsError(f"{folder / 'config.json'}: cannot read the model config: {error}") from None
    if hasattr(config, "use_cache"):
        config.use_cache = False  # outputs then hold tensors only, no key/value caches
    named = getattr(transformers, architectures[0], None) if architectures else None
    try:
        model = named(config) if named is not None else transformers.AutoModel.from_config(config)
    except Exception as error:
        raise Pt2MsError(f"{folder}: transformers cannot build {architectures[0] if architectures else 'AutoModel'}: "
                         f"{type(error).__name__}: {error}") from None
    return model.eval()
