"""A Hugging Face model folder as the PyTorch side: weights from its files, the model from its config.json.

A folder saved by `save_pretrained` holds `config.json` and the weights (`model.safetensors`, or shards and
`model.safetensors.index.json`; older ones `pytorch_model.bin`). With no `[torch] model` in the config, the
model is built with transformers from `config.json` (the class named in `architectures`, else `AutoModel`), so
stage 1 gets layer types and stage 4 a model to run with no factory to write. transformers stays optional:
it is imported only here.
"""

import json
from pathlib import Path

from pt2ms.errors import Pt2MsError


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
