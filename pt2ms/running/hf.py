"""A Hugging Face model folder as the PyTorch side: weights from its files, the model from its config.json.

A folder saved by `save_pretrained` holds `config.json` and the weights (`model.safetensors`, or shards and
`model.safetensors.index.json`; older ones `pytorch_model.bin`). With no `[torch] model` in the config, the
model is built with transformers from `config.json` (the class named in `architectures`, else `AutoModel`), so
stage 1 gets layer types and stage 4 a model to run with no factory to write. transformers stays optional:
it is imported only here.

Two ways in: `from_folder` builds the model from config.json alone (stage 1's inventory: layer types, order);
`load_folder` loads it with its weights by transformers' own `from_pretrained`, so what that version does on
load applies: key renames, weight conversions (per-expert MoE tensors fused into `experts.gate_up_proj`), and
tensors it no longer registers (an older version's `embeddings.position_ids`) left out.
"""

import contextlib
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


def _config_and_class(folder, transformers, overrides):
    """(config with use_cache off, the class named in `architectures` or None for AutoModel, its name)."""
    try:
        architectures = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, **overrides)
    except (OSError, ValueError) as error:
        raise Pt2MsError(f"{folder / 'config.json'}: cannot read the model config: {error}") from None
    if hasattr(config, "use_cache"):
        config.use_cache = False  # outputs then hold tensors only, no key/value caches
    named = getattr(transformers, architectures[0], None) if architectures else None
    return config, named, architectures[0] if named is not None else "AutoModel"


def from_folder(folder, **overrides):
    """The model a Hugging Face folder describes, randomly initialised (stage 1's layer types and order)."""
    folder = Path(folder)
    transformers = _transformers(folder)
    config, named, what = _config_and_class(folder, transformers, overrides)
    try:
        model = named(config) if named is not None else transformers.AutoModel.from_config(config)
    except Exception as error:
        raise Pt2MsError(f"{folder}: transformers cannot build {what}: {type(error).__name__}: {error}") from None
    return model.eval()


def load_folder(folder, **overrides):
    """The model a Hugging Face folder holds, with its weights, loaded by transformers' `from_pretrained`
    (offline, `use_cache=False`, float32). Refuses a folder whose files leave model parameters unloaded or misshapen."""
    folder = Path(folder)
    transformers = _transformers(folder)
    config, named, what = _config_and_class(folder, transformers, overrides)
    import torch

    loader = named if named is not None else transformers.AutoModel
    try:
        with _quiet(transformers):
            # float32 as from_folder builds it: a bfloat16 folder is compared in float32, its values unchanged.
            model, info = loader.from_pretrained(str(folder), config=config, local_files_only=True,
                                                 output_loading_info=True, dtype=torch.float32)
    except Exception as error:
        raise Pt2MsError(f"{folder}: transformers cannot load {what}: {type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}") from None
    missing, mismatched = sorted(info.get("missing_keys") or ()), list(info.get("mismatched_keys") or ())
    if missing or mismatched:
        raise Pt2MsError(f"{folder}: its weights do not fill {what}: missing {missing[:3]}"
                         f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''}, "
                         f"of another shape {[str(item) for item in mismatched[:3]]}")
    return model.eval()


@contextlib.contextmanager
def _quiet(transformers):
    """transformers' load report and progress bars off: stage 4 prints its own summary."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
