"""A test pair's inventories as stage 1 writes them: rows with layer types, and with the models' own order and
settings (one forward pass of each model on the pair's inputs, the same stage-1 functions)."""

import dataclasses

from pt2ms.running.layer_facts import add_facts, ms_facts, torch_facts
from pt2ms.running.model_rows import from_ms_model, torch_model_rows


def typed_rows(pair):
    """(MindSpore rows, torch rows) with layer types and paths, no order or settings (as before stage 1 ran models)."""
    return from_ms_model(pair.ms_model), torch_model_rows(pair.torch_model)


def ordered_rows(pair):
    """(MindSpore rows, torch rows) with layer types, definition and execution order, and settings."""
    inputs = pair.make_inputs(seed=0)
    ms_rows = add_facts(from_ms_model(pair.ms_model), ms_facts(pair.ms_model, inputs))
    torch_rows = add_facts(torch_model_rows(pair.torch_model), torch_facts(pair.torch_model, inputs))
    return ms_rows, torch_rows


def bare_rows(rows):
    """As with a template .ckpt or a bare checkpoint: no layer types, paths, order or settings."""
    return [dataclasses.replace(row, layer_type="", path="", definition_order=-1, execution_order=-1, settings="")
            for row in rows]


def declared_rows(pair):
    """As stage 1 writes them when the config has no [verify] inputs: definition order and settings, no run."""
    ms_rows = add_facts(from_ms_model(pair.ms_model), ms_facts(pair.ms_model, []))
    torch_rows = add_facts(torch_model_rows(pair.torch_model), torch_facts(pair.torch_model, []))
    return ms_rows, torch_rows
