"""Stage 1: both sides' parameter inventories (name, shape, dtype, owning layer, order, settings) as CSV and txt."""

from tqdm import tqdm

from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import open_ms_checkpoint, open_torch_checkpoint
from pt2ms.formats.inventory import from_checkpoint, inventory_texts, write_inventory
from pt2ms.running.blocks import MsBlockWeights, TorchBlockWeights
from pt2ms.running.build import build_ms_model, build_torch_model
from pt2ms.running.layer_facts import add_facts, ms_facts, torch_facts
from pt2ms.running.memory import check_largest_block_fits
from pt2ms.running.model_rows import add_ms_layer_types, add_torch_layer_types, from_ms_model
from pt2ms.running.models import make_inputs


def show(config):
    """Stage 1: write both sides' inventories to outputs/<name>/; returns {side: (rows, csv, txt)}."""
    tensors = open_torch_checkpoint(config.torch.checkpoint, config.torch.state_dict_key, config.torch.trust_pickle)
    # Before anything is built: a run that cannot hold even its largest block is refused in one line.
    check_largest_block_fits({name: tensor.shape for name, tensor in tensors.items()}, config.torch.checkpoint)
    torch_rows = from_checkpoint(tensors)
    # Both models run once on the [verify] inputs with their own initial weights: the order their layers run
    # in is the position stage 2 uses (a checkpoint's key order may be alphabetical).
    warnings = []
    try:
        inputs = make_inputs(config.verify.inputs, config.verify.seed) if config.verify.inputs else []
    except Pt2MsError as error:  # stage 4 refuses such inputs; stage 1 only loses the execution order
        inputs = []
        warnings.append(f"{error}: no execution order")
    # Building and running a model takes seconds to minutes (a big one, or MindSpore's first compile): a bar.
    models = [side for side, factory in (("PyTorch", config.torch.model), ("MindSpore", config.mindspore.model))
              if factory]
    bar = tqdm(total=len(models), desc="recording", unit="model", leave=False, disable=None)
    # Both models are built empty and run holding one block's weights at a time (pt2ms.running.blocks): the
    # PyTorch side the checkpoint's (random where it does not fit), the MindSpore side its own initial values.
    if config.torch.model:
        bar.set_postfix_str("PyTorch")
        model = build_torch_model(config, empty=True)
        add_torch_layer_types(torch_rows, model)
        weights = TorchBlockWeights(model, tensors, missing="random")
        with weights.hold_while_running():
            facts = torch_facts(model, inputs)
        add_facts(torch_rows, facts)
        warnings += [facts.warning, _random_note("PyTorch", weights.missing)]
        bar.update()
    # A template's names are what the target checkpoint must hold; a model adds layer types, paths and order.
    ms_model_rows = None
    if config.mindspore.model:
        bar.set_postfix_str("MindSpore")
        net = build_ms_model(config, empty=True)
        weights = MsBlockWeights(net)
        with weights.hold_while_running():
            facts = ms_facts(net, inputs)
        ms_model_rows = add_facts(from_ms_model(net), facts)
        warnings += [facts.warning, _random_note("MindSpore", weights.touched())]
        bar.update()
    bar.close()
    for warning in filter(None, warnings):
        print(f"warning: {warning}")
    if config.mindspore.template:
        ms_rows = from_checkpoint(open_ms_checkpoint(config.mindspore.template))
        if ms_model_rows:
            add_ms_layer_types(ms_rows, ms_model_rows)
        ms_source = f"template {config.mindspore.template}"
    else:
        ms_rows, ms_source = ms_model_rows, f"model {config.mindspore.model}"
    out = config.output_dir
    sides = {"torch": (torch_rows, out / "torch_params", f"PyTorch {config.torch.checkpoint}", config.torch.checkpoint),
             "mindspore": (ms_rows, out / "ms_params", f"MindSpore {ms_source}",
                           config.mindspore.template or config.mindspore.model)}
    # Both sides' texts first: a name that cannot be written refuses the run before any file changes.
    texts = {side: inventory_texts(rows, title, where) for side, (rows, _, title, where) in sides.items()}
    return {side: (rows, *write_inventory(rows, stem, title, texts[side]))
            for side, (rows, stem, title, _) in sides.items()}


def _random_note(side, names):
    """Parameters that ran on random values (not in the checkpoint, or used outside their block): the order
    still holds, but say so."""
    if not names:
        return ""
    return (f"{side}: {len(names)} parameter(s) ran with random values while recording the order "
            f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
