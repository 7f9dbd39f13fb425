"""What a model knows about its layers that a checkpoint does not: the order they are declared in, the order
they run in, and their settings (stride, groups, eps, ...). Stage 1 writes them into the inventories so that
stage 2 takes positions from the model, never from the checkpoint's key order (a Hugging Face
`model.safetensors` stores its keys alphabetically: k_proj, o_proj, q_proj, v_proj).
"""

from dataclasses import dataclass

from pt2ms.running.recording import record_ms, record_torch
from pt2ms.running.settings import ms_settings, settings_text, torch_settings


@dataclass
class LayerFacts:
    definition: dict     # layer path -> index in named_modules / cells_and_names order
    execution: dict      # layer path -> index among the layers in the order they first started; {} if not run
    settings: dict       # layer path -> settings_text of the layer
    warning: str = ""    # why there is no execution order, "" if there is


def _facts(layers, run, read_settings, framework, inputs):
    # One module under two names (T5's shared embedding is encoder.embed_tokens too) is one layer: both names
    # take the place and the run of the first.
    first = {}
    for index, (path, layer) in enumerate(layers):
        first.setdefault(id(layer), (index, path))
    definition = {path: first[id(layer)][0] for path, layer in layers}
    settings = {path: _settings(read_settings, layer) for path, layer in layers}
    if not inputs:
        return LayerFacts(definition, {}, settings, f"{framework}: no [verify] inputs, so no execution order "
                                                    "(stage 2 uses definition order)")
    try:
        recording, _ = run()
    except Exception as error:  # noqa: BLE001 - any failure of the user's forward only costs the execution order
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        return LayerFacts(definition, {}, settings, f"{framework}: the forward pass on the [verify] inputs failed "
                                                    f"({type(error).__name__}: {first_line}); no execution order")
    ran = recording.position()
    execution = {path: ran[first[id(layer)][1]] for path, layer in layers if first[id(layer)][1] in ran}
    return LayerFacts(definition, execution, settings)


def _settings(read_settings, layer):
    try:
        return settings_text(read_settings(layer))
    except Exception:  # noqa: BLE001 - a zoo's own layer with unusual attributes: no settings, not no stage 1
        return ""


def torch_facts(model, inputs):
    """LayerFacts of a torch module: one forward pass (no grad, eval mode) on NumPy `inputs`, if any."""
    model.eval()
    layers = list(model.named_modules(remove_duplicate=False))
    return _facts(layers, lambda: record_torch(model, inputs), torch_settings, "PyTorch", inputs)


def ms_facts(net, inputs):
    """LayerFacts of a MindSpore cell: one forward pass (inference mode) on NumPy `inputs`, if any."""
    net.set_train(False)
    return _facts(list(net.cells_and_names()), lambda: record_ms(net, inputs), ms_settings, "MindSpore", inputs)


def add_facts(rows, facts):
    """Fill definition_order, execution_order and settings of each row from its owning layer (row.path)."""
    for row in rows:
        if not row.path:
            continue
        owner = row.path.rpartition(".")[0]
        row.definition_order = facts.definition.get(owner, -1)
        row.execution_order = facts.execution.get(owner, -1)
        row.settings = facts.settings.get(owner, "")
    return rows
