"""Stage 2's probe and split pass end to end: mindformers 2.x fused layouts and an uneven split are mapped right
with no hand edit (stages 1-2), converted (stage 3), verified `agree` (stage 4) and undone by --reverse bit for bit."""

import json

import pytest
import torch

from pt2ms.config import load_config
from pt2ms.formats.checkpoint import open_torch_checkpoint
from pt2ms.stages.reverse import reverse
from tests import probe_pairs
from tests.conftest import run_script, write_config
from tests.mapping.test_zoo_pairs import _probe_state, _same_entry
from tests.zoo_llm_pairs import GATE_UP_INTERLEAVE, qkv_interleave

TOKENS = '[verify]\ninputs = [{ shape = [2, 6], dtype = "int64", high = 20 }]\n'


def _project(tmp_path, name, ms_factory, inputs_line=TOKENS, ms_kwargs=""):
    model = getattr(probe_pairs, f"{name}_torch")()
    state = probe_pairs.seeded_state(model)
    torch.save(state, tmp_path / f"{name}.pth")
    config = write_config(tmp_path, name=name, torch_model=f"tests.probe_pairs:{name}_torch",
                          ms_model=f"tests.probe_pairs:{ms_factory}", checkpoint=f"{name}.pth")
    text = config.read_text().replace("[verify]\ninputs = [[2, 3, 8, 8]]\n", inputs_line)
    if ms_kwargs:
        text = text.replace(f'model = "tests.probe_pairs:{ms_factory}"\n',
                            f'model = "tests.probe_pairs:{ms_factory}"\nkwargs = {ms_kwargs}\n')
    config.write_text(text)
    return config, model, state


def _stages_1_and_2(config):
    assert run_script("1_show.py", "--config", str(config))[0] == 0
    code, stdout, stderr = run_script("2_build_map.py", "--config", str(config))
    assert code == 0, stderr
    return stdout, json.loads((config.parent / "maps" / f"{config.stem}.json").read_text())


def _stages_3_4_and_back(config, state):
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
    assert code == 0, stderr
    code, stdout, stderr = run_script("4_verify.py", "--config", str(config))
    report = json.loads((config.parent / "outputs" / config.stem / "verify.json").read_text())
    assert code == 0 and report["agree"] is True, stdout
    summary = reverse(load_config(config), output_format="safetensors")
    back = open_torch_checkpoint(summary["path"])
    mapping = json.loads((config.parent / "maps" / f"{config.stem}.json").read_text())
    # all but ignored (num_batches_tracked) and unused (a tied head the port reads from its embedding) come back
    assert set(state) - set(back) == set(summary["ignored_torch"]) | set(mapping["unused_torch"])
    for name, tensor in back.items():
        assert tensor.read().tobytes() == state[name].numpy().tobytes(), name


def _assert_entries(mapping, model, expected):
    probe = _probe_state(model)
    for name, value in expected.items():
        assert _same_entry(mapping["map"][name], value, probe), (name, mapping["map"][name], value)
        assert mapping["found"][name]["method"] == "probed"
        assert any(c["error"] not in (None, "not comparable") and c["error"] > 1e-2
                   for c in mapping["found"][name]["candidates"]), "the wrong layouts were tried and refused"


def test_gqa_qkv_with_bias_and_gate_up_from_separate_projections(tmp_path):
    config, model, state = _project(tmp_path, "qwen2", "qwen2_mindformers")
    stdout, mapping = _stages_1_and_2(config)
    assert "probe: " in stdout and " 0 undecided" in stdout
    layer = "model.layers.1"
    qkv = [f"{layer}.self_attn.{p}_proj" for p in "qkv"]
    _assert_entries(mapping, model, {
        f"{layer}.attention.w_qkv.weight": {"torch": [f"{n}.weight" for n in qkv], "transform": f"cat(0) | {qkv_interleave(2)}"},
        f"{layer}.attention.w_qkv.bias": {"torch": [f"{n}.bias" for n in qkv], "transform": f"cat(0) | {qkv_interleave(2)}"},
        f"{layer}.feed_forward.w_gate_hidden.weight": {"torch": [f"{layer}.mlp.gate_proj.weight", f"{layer}.mlp.up_proj.weight"],
                                                       "transform": f"cat(0) | {GATE_UP_INTERLEAVE}"}})
    _stages_3_4_and_back(config, state)


def test_gqa_qkv_and_gate_up_from_fused_torch_layers(tmp_path):
    config, model, state = _project(tmp_path, "phi3", "phi3_mindformers")
    _, mapping = _stages_1_and_2(config)
    layer = "model.layers.0"
    _assert_entries(mapping, model, {
        f"{layer}.attention.w_qkv.weight": {"torch": f"{layer}.self_attn.qkv_proj.weight", "transform": qkv_interleave(2)},
        f"{layer}.attention.w_qkv.bias": {"torch": f"{layer}.self_attn.qkv_proj.bias", "transform": qkv_interleave(2)},
        f"{layer}.feed_forward.w_gate_hidden.weight": {"torch": f"{layer}.mlp.gate_up_proj.weight",
                                                       "transform": GATE_UP_INTERLEAVE}})
    _stages_3_4_and_back(config, state)


def test_uneven_split_of_a_fused_conv(tmp_path):
    config, model, state = _project(tmp_path, "dpn", "dpn_mindspore", "[verify]\ninputs = [[2, 3, 8, 8]]\n")
    _, mapping = _stages_1_and_2(config)
    for block in ("block1", "block2"):
        assert mapping["map"][f"{block}.c1x1_res.weight"] == {"torch": f"{block}.c1x1.weight", "transform": "slice(0, 0, 256)"}
        assert mapping["map"][f"{block}.c1x1_dense.weight"] == {"torch": f"{block}.c1x1.weight", "transform": "slice(0, 256, 288)"}
        assert mapping["map"][f"{block}.c1x1_dense.bias"] == {"torch": f"{block}.c1x1.bias", "transform": "slice(0, 256, 288)"}
        assert mapping["found"][f"{block}.c1x1_res.bias"]["method"] == "probed"
    assert mapping["unused_torch"] == []
    _stages_3_4_and_back(config, state)


def test_a_probe_that_cannot_decide_says_so_and_heads_the_review_list(tmp_path):
    config, _, _ = _project(tmp_path, "dpn", "dpn_mindspore", "[verify]\ninputs = [[2, 3, 8, 8]]\n",
                            ms_kwargs="{ broken = true }")
    stdout, mapping = _stages_1_and_2(config)
    first = list(mapping["map"])[:4]
    assert all(mapping["found"][name]["confidence"] == 0.0 for name in first)
    assert all("could not decide" in mapping["found"][name]["note"] for name in first)
    assert {name.rpartition(".")[0].rpartition(".")[2] for name in first} == {"c1x1_res", "c1x1_dense"}
    assert "could not decide" in stdout.split("review these first")[1].splitlines()[1]
    assert all(c["error"] is not None for c in mapping["found"][first[0]]["candidates"])


LLM_PAIRS = ["llama_hf_vs_mindformers", "llama_hf_vs_mindformers_qkv_concat", "llama_mha_hf_vs_mindformers_qkv_concat",
             "qwen2_hf_vs_mindformers", "qwen2_hf_vs_mindformers_qkv_concat", "phi3_hf_vs_mindformers_qkv_concat"]


def _zoo_pair_through_stage_2(tmp_path, pair_name):
    """A zoo pair's two models in a config, run through stages 1 and 2: (pair, [wrong entries], map)."""
    from tests.mapping.test_zoo_pairs import wrong_entries

    pair = probe_pairs._zoo_pair(pair_name)
    torch.save(probe_pairs.seeded_state(pair.torch_model), tmp_path / "w.pth")
    config = write_config(tmp_path, name="zoo", torch_model="tests.probe_pairs:zoo_torch",
                          ms_model="tests.probe_pairs:zoo_mindspore", checkpoint="w.pth")
    inputs = ", ".join(f'{{ shape = {list(shape)}, dtype = "int64", high = {pair.token_vocab} }}'
                       for shape in pair.example_inputs)
    text = config.read_text().replace("inputs = [[2, 3, 8, 8]]", f"inputs = [{inputs}]")
    for section in ("[torch]", "[mindspore]"):
        text = text.replace(f"{section}\n", f'{section}\nkwargs = {{ pair = "{pair_name}" }}\n')
    config.write_text(text)
    _, mapping = _stages_1_and_2(config)
    return [name for name, _, _ in wrong_entries(mapping["map"], pair)], mapping


@pytest.mark.parametrize("pair_name", LLM_PAIRS)
def test_zoo_llm_pairs_map_right_with_the_probe(tmp_path, pair_name):
    """Stage 2 as a user runs it, both models in the config: every entry as the reference has it."""
    wrong, mapping = _zoo_pair_through_stage_2(tmp_path, pair_name)
    assert wrong == []
    assert all(found["confidence"] > 0 for found in mapping["found"].values()), "an undecided probe"


def test_t5_maps_right_but_for_one_entry_in_the_review_list(tmp_path):
    """HF T5 vs mindformers: 47 of 48 as the reference names them; the other is in the review list."""
    wrong, mapping = _zoo_pair_through_stage_2(tmp_path, "t5_hf_vs_mindformers")
    assert len(wrong) <= 1
    assert all(mapping["found"][name]["confidence"] < 0.9 for name in wrong)


def test_alphabetical_safetensors_keys_do_not_swap_wq_and_wo(tmp_path):
    """A model.safetensors lists k_proj, o_proj, q_proj, v_proj: file order is no evidence; running the blocks is."""
    from safetensors.torch import save_file

    from tests.mapping.test_zoo_pairs import wrong_entries

    pair = probe_pairs._zoo_pair("llama_hf_vs_mindformers")
    save_file({k: v.contiguous() for k, v in probe_pairs.seeded_state(pair.torch_model).items()},
              str(tmp_path / "model.safetensors"))
    config = write_config(tmp_path, name="st", torch_model="tests.probe_pairs:zoo_torch",
                          ms_model="tests.probe_pairs:zoo_mindspore", checkpoint="model.safetensors")
    text = config.read_text().replace("[verify]\ninputs = [[2, 3, 8, 8]]\n", TOKENS)
    for section in ("[torch]", "[mindspore]"):
        text = text.replace(f"{section}\n", f'{section}\nkwargs = {{ pair = "llama_hf_vs_mindformers" }}\n')
    config.write_text(text)
    _, mapping = _stages_1_and_2(config)
    assert wrong_entries(mapping["map"], pair) == []
    assert mapping["found"]["model.layers.0.attention.wq.weight"]["method"] == "probed"


def test_split_pass_without_models_proposes_slices_in_declaration_order():
    """No models in the config (a template): the heights add up, the order is the port's, the confidence says so."""
    from pt2ms.mapping.matching import match
    from pt2ms.mapping.splits import CONFIDENCE, propose_splits
    from pt2ms.running.model_rows import from_ms_model, torch_model_rows
    from pt2ms.stages.build_map import split_ignored

    ms_rows, torch_rows, _ = split_ignored(from_ms_model(probe_pairs.dpn_mindspore()),
                                           torch_model_rows(probe_pairs.dpn_torch()))
    found = {item.ms_name: item for item in propose_splits(match(ms_rows, torch_rows), ms_rows, torch_rows)}
    dense, res = found["block2.c1x1_dense.weight"], found["block2.c1x1_res.weight"]
    assert (dense.torch, dense.transform) == ("block2.c1x1.weight", "slice(0, 0, 32)")  # declared first: wrong
    assert (res.torch, res.transform) == ("block2.c1x1.weight", "slice(0, 32, 288)")
    assert found["block1.c1x1_res.bias"].transform == "slice(0, 32, 288)"
    assert dense.confidence == CONFIDENCE < 0.9 and "declaration order" in dense.note


def test_probe_that_cannot_run_says_so_once_and_keeps_its_entries_below_sure(tmp_path):
    """A port whose forward needs an Ascend kernel: one line names the side, the layer and the error, and no
    entry the probe would have decided (those it decides when the port runs) scores 0.9 or more."""
    runs = tmp_path / "runs", tmp_path / "fails"
    for folder in runs:
        folder.mkdir()
    config, _, _ = _project(runs[0], "llama", "llama_mindformers")
    _, working = _stages_1_and_2(config)
    decided = [name for name, found in working["found"].items() if found["method"] == "probed"]
    config, _, _ = _project(runs[1], "llama", "llama_mindformers_on_ascend")
    stdout, mapping = _stages_1_and_2(config)
    lines = [line for line in stdout.splitlines() if "FlashAttentionScore" in line]
    assert len(lines) == 1 and lines[0].startswith("probe skipped: the MindSpore model's forward fails in ")
    assert "(RuntimeError: The kernel FlashAttentionScore unregistered.)" in lines[0]
    assert decided and all(mapping["found"][name]["confidence"] < 0.9 for name in decided)
    lowered = [name for name, found in mapping["found"].items() if "not probed" in found["note"]]
    assert f"({len(lowered)} lowered)" in lines[0]


def test_unprobed_entries_are_lowered_below_sure_unless_roles_settled_them():
    """What the probe would have decided cannot stay at 0.9 or more without it, except what role words settled."""
    import time

    from pt2ms.mapping.match_layers import Match
    from pt2ms.mapping.probe import Unit, _unprobed

    matches = [Match("a.wq.weight", "q.weight", method="rule", confidence=0.99),
               Match("a.linear_proj.weight", "o_proj.weight", method="role", confidence=0.95),
               Match("a.wo.weight", "o.weight", method="structural", confidence=0.6),
               Match("head.weight", "fc.weight", method="exact", confidence=1.0)]
    units = [Unit("transpose", ["a.wq.weight"]), Unit("transpose", ["a.linear_proj.weight"]),
             Unit("order", ["a.wq.weight", "a.wo.weight"])]
    result, extras, summary = _unprobed(matches, {item.ms_name: item for item in matches}, units,
                                        time.perf_counter(), "the MindSpore model's forward fails in layer a")
    confidence = {item.ms_name: item.confidence for item in result}
    assert confidence == {"a.wq.weight": 0.89, "a.linear_proj.weight": 0.95, "a.wo.weight": 0.6, "head.weight": 1.0}
    assert "not probed: the MindSpore model's forward fails in layer a" in result[0].note
    assert extras == {} and summary["capped"] == 1
    assert summary["skipped"] == ("the MindSpore model's forward fails in layer a; the 3 entries it would have "
                                  "decided stay below 0.9 (1 lowered) unless role words settled them")


# --- hand edits against the probe's numbers ------------------------------------------------------------

def _tiny_mapped(tmp_path, classes=3):
    from tests.tiny_models import randomized_state_dict, torch_net

    torch.save(randomized_state_dict(torch_net(classes)), tmp_path / "weights.pth")
    config = write_config(tmp_path)
    if classes != 3:
        config.write_text(config.read_text().replace('_net"\n', f'_net"\nkwargs = {{ classes = {classes} }}\n'))
    _stages_1_and_2(config)
    return config


def _edit(config, **entries):
    path = config.parent / "maps" / f"{config.stem}.json"
    data = json.loads(path.read_text())
    data["map"].update(entries)
    path.write_text(json.dumps(data))


def test_a_hand_edit_the_probe_contradicts_heads_the_review_list(tmp_path):
    config = _tiny_mapped(tmp_path)
    # Wrong but shaped right (both (4,)): the first BatchNorm's weight for the second one's gamma. And a right
    # edit (the long form of the suggested entry) and a null edit, which the probe leaves alone.
    _edit(config, **{"features.5.gamma": "features.1.weight", "classifier.weight": {"torch": "fc.weight"},
                     "norm.beta": None})
    stdout, mapping = _stages_1_and_2(config)
    kept = stdout.split("hand edits kept 3: ")[1].splitlines()[0].split(", ")
    assert sorted(kept) == ["classifier.weight <- fc.weight", "features.5.gamma <- features.1.weight",
                            "norm.beta <- null"]
    assert "hand edits run 2 (1 contradicted)" in stdout
    assert next(iter(mapping["map"])) == "features.5.gamma"  # lowest confidence first: it heads the map
    assert mapping["map"]["features.5.gamma"] == "features.1.weight"  # kept as written
    found = mapping["found"]["features.5.gamma"]
    assert found["method"] == "manual" and found["confidence"] < 0.9
    assert "contradicted by the probe" in found["note"] and "while features.5.weight gives" in found["note"]
    assert mapping["found"]["classifier.weight"]["confidence"] == 1.0
    review = stdout.split("review these first:")[1].splitlines()
    assert review[1].split()[:3] == ["0.00", "manual", "features.5.gamma"]
    # Stage 3 counts the entries that differ from stage 2's suggestion: the null ones (the long form of
    # classifier.weight was written back as the plain name it means, the suggested one).
    _edit(config, **{"features.5.gamma": "features.5.weight", "classifier.bias": None})
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
    assert code == 0, stderr
    assert "hand edits used 2" in stdout


def test_the_probe_shows_a_progress_bar_on_a_terminal(tmp_path):
    """Under a pseudo-terminal stage 2's probe draws a tqdm bar on stderr, one step per decision."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    from tests.conftest import ROOT

    config = _tiny_mapped(tmp_path, classes=4)  # Dense(4, 4): a square weight, one transpose decision
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    process = subprocess.Popen([sys.executable, str(ROOT / "2_build_map.py"), "--config", str(config)],
                               stdin=secondary, stdout=secondary, stderr=secondary, cwd=ROOT)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert process.wait(timeout=300) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "probe:   0%|" in text and "| 0/1 [" in text and "decision/s]" in text, text


# --- the probe decides only when its numbers separate the candidates (issue 18) ---------------------------

def _hidden_path_project(tmp_path, name, gate=None, gate_name="gating_param"):
    """A config for a tests.hidden_path_pairs pair, with the model's seeded weights (a gate set by hand)."""
    from tests import hidden_path_pairs

    model = getattr(hidden_path_pairs, f"{name}_torch")(**({"gate_name": gate_name} if name == "convit" else {}))
    state = probe_pairs.seeded_state(model)
    if gate is not None:
        state[f"attn.{gate_name}"].fill_(gate)
    torch.save(state, tmp_path / f"{name}.pth")
    config = write_config(tmp_path, name=name, torch_model=f"tests.hidden_path_pairs:{name}_torch",
                          ms_model=f"tests.hidden_path_pairs:{name}_mindspore", checkpoint=f"{name}.pth")
    if name == "convit":
        text = config.read_text().replace("[verify]\ninputs = [[2, 3, 8, 8]]\n", hidden_path_pairs.CONVIT_INPUTS)
        for section in ("[torch]", "[mindspore]"):
            text = text.replace(f"{section}\n", f'{section}\nkwargs = {{ gate_name = "{gate_name}" }}\n')
        config.write_text(text)
    return config


def _matcher_alone(config):
    """Stage 2's matcher on the inventories stage 1 wrote (layer types, execution order): {ms_name: Match}."""
    from pt2ms.formats.inventory import read_inventory
    from pt2ms.mapping.matching import match
    from pt2ms.stages.build_map import split_ignored

    assert run_script("1_show.py", "--config", str(config))[0] == 0
    folder = config.parent / "outputs" / config.stem
    ms_rows, torch_rows, _ = split_ignored(read_inventory(folder / "ms_params.csv"),
                                           read_inventory(folder / "torch_params.csv"))
    return {item.ms_name: item for item in match(ms_rows, torch_rows)}


def test_bit_shortcut_and_last_conv_of_one_shape_are_never_sure_when_swapped(tmp_path):
    """timm runs stage 0's shortcut conv first, MindCV's BiT last; both are (32, 8, 1, 1) at stride 1. Counting
    them in execution order pairs them crosswise: names alone disagree with that, so neither is sure (today
    layer1.0.conv3 <- downsample.conv at 0.91)."""
    from tests.hidden_path_pairs import BIT_REFERENCE

    found = _matcher_alone(_hidden_path_project(tmp_path, "bit"))
    for ms_name, torch_name in BIT_REFERENCE.items():
        assert found[ms_name].torch == torch_name or found[ms_name].confidence < 0.9, found[ms_name]


def test_bit_swap_is_settled_by_the_probe(tmp_path):
    """With both models the two convs are one order decision (MindCV's single-conv `down_sample` container stands
    beside conv3), run on the whole block: right, and the wrong order refused by far."""
    from tests.hidden_path_pairs import BIT_REFERENCE

    config = _hidden_path_project(tmp_path, "bit")
    _, mapping = _stages_1_and_2(config)
    for ms_name, torch_name in BIT_REFERENCE.items():
        assert mapping["map"][ms_name] == torch_name, (ms_name, mapping["found"][ms_name])
    found = mapping["found"]["layer1.0.down_sample.0.weight"]
    assert found["method"] == "probed" and "at layer1.0 vs stages.0.blocks.0" in found["note"]
    assert sorted(c["error"] for c in found["candidates"])[1] > 1e-2
    assert all(entry["confidence"] >= 0.9 or "gn1" in name for name, entry in mapping["found"].items())


def _convit_checks(mapping, model):
    from tests.hidden_path_pairs import CONVIT_REFERENCE

    assert all(value is not None for value in mapping["map"].values()), "an entry left null"
    assert not any(isinstance(value, dict) and value.get("tied") for value in mapping["map"].values()), "a tie"
    probe = _probe_state(model)
    for ms_name, value in CONVIT_REFERENCE.items():
        assert _same_entry(mapping["map"][ms_name], value, probe), (ms_name, mapping["map"][ms_name])


def test_convit_fused_qk_against_separate_q_and_k_with_the_path_open(tmp_path):
    """timm's GPSA fuses q and k into `qk` (2 * dim rows), MindCV's keeps q and k: each takes its half, and with
    the gate at its initial 1.0 the content path counts enough for the probe to decide their order (today: k
    gets v's tensor, "tied, probed 0.99", and q is left null)."""
    from tests.hidden_path_pairs import convit_torch

    config = _hidden_path_project(tmp_path, "convit")
    _, mapping = _stages_1_and_2(config)
    _convit_checks(mapping, convit_torch())
    for ms_name in ("attn.q.weight", "attn.k.weight"):
        found = mapping["found"][ms_name]
        assert found["method"] == "probed" and "set so the path counts" not in found["note"], found


def test_convit_gate_that_damps_the_path_is_opened_for_the_probe(tmp_path):
    """sigmoid(10) weighs the positional scores 0.99995: swapping q and k changes the block's output by 4e-5,
    inside the tolerance. The probe sets the gate (a `gating` tensor) to seeded values on both sides, reruns the
    block, and decides right, saying so."""
    from tests.hidden_path_pairs import convit_torch

    config = _hidden_path_project(tmp_path, "convit", gate=10.0)
    _, mapping = _stages_1_and_2(config)
    _convit_checks(mapping, convit_torch())
    for ms_name in ("attn.q.weight", "attn.k.weight"):
        found = mapping["found"][ms_name]
        assert found["method"] == "probed" and "attn.gating_param set so the path counts" in found["note"], found
        assert sorted(c["error"] for c in found["candidates"])[1] > 1e-2


def test_convit_gate_the_probe_cannot_see_makes_it_say_it_cannot_tell(tmp_path):
    """The same damped gate under a name that says nothing (`mix`): the probe says it cannot tell, with its
    numbers, and the two entries head the review list below 0.9, not marked probed; still none is null."""
    from tests.hidden_path_pairs import convit_torch

    config = _hidden_path_project(tmp_path, "convit", gate=10.0, gate_name="mix")
    stdout, mapping = _stages_1_and_2(config)
    _convit_checks(mapping, convit_torch(gate_name="mix"))
    assert set(list(mapping["map"])[:2]) == {"attn.q.weight", "attn.k.weight"}
    for ms_name in ("attn.q.weight", "attn.k.weight"):
        found = mapping["found"][ms_name]
        assert found["method"] != "probed" and found["confidence"] < 0.9, found
        assert "do not separate them" in found["note"] and "order (1, 0) " in found["note"], found["note"]
        assert found["chosen"] is None
    assert "attn.q.weight" in stdout.split("review these first")[1].splitlines()[1] + \
        stdout.split("review these first")[1].splitlines()[2]


def test_the_probe_decides_only_when_the_numbers_separate_the_candidates():
    from pt2ms.mapping.probe_units import CLEAR_RATIO, separated

    tolerance = 1e-4
    assert separated({"a": 1e-7, "b": 0.3}, ["a", "b"], tolerance) == ("a", "")
    assert separated({"a": 1e-7, "b": CLEAR_RATIO * tolerance}, ["a", "b"], tolerance) == ("a", "")
    label, why = separated({"a": 1e-7, "b": 3e-4}, ["a", "b"], tolerance)  # b not clearly refused
    assert label is None and "not clearly refused" in why and "b 0.0003" in why
    label, why = separated({"a": 1e-7, "b": 4e-5}, ["a", "b"], tolerance)  # both agree
    assert label is None and "2 of 2 candidates agree" in why
    assert separated({"a": 0.2, "b": 0.3}, ["a", "b"], tolerance) == (None, "")  # none agrees: try further


def test_a_winner_that_would_tie_two_layers_to_one_tensor_is_no_decision():
    """Before `qk` was known as fused, ConViT's `k` got `v`'s tensor and the probe "confirmed" it, comparing `k`
    with the module its own entry named. A winner giving one whole tensor to two layers is never decided; pieces
    of one tensor (chunk, slice) are no tie."""
    from pt2ms.mapping.match_layers import Match
    from pt2ms.mapping.probe_units import Unit, shared_source

    by_name = {item.ms_name: item for item in [Match("attn.v.weight", "attn.v.weight"),
                                                Match("attn.k.weight", "attn.v.weight", tied=True),
                                                Match("attn.q.weight", "attn.qk.weight", "chunk(2, 0, 0)")]}
    unit = Unit("transpose", ["attn.k.weight"], [("as is", {"attn.k.weight": ("attn.v.weight", "")})])
    assert shared_source([unit], "as is", by_name) == "attn.v.weight would feed attn.k.weight and attn.v.weight"
    pieces = Unit("pieces", ["attn.k.weight"], [("order (1,)", {"attn.k.weight": ("attn.qk.weight", "chunk(2, 0, 1)")})])
    assert shared_source([pieces], "order (1,)", by_name) is None


def test_the_probe_reads_only_the_blocks_it_probes(tmp_path):
    """Both models built empty: scoring a fused qkv or gate-up layout reads the decoder layer around it, fed the
    inputs recorded for it, never the embedding, the final norm or the head (memory bounded by one block)."""
    from pt2ms.stages.build_map import build_map

    config, model, _ = _project(tmp_path, "llama", "llama_mindformers")
    assert run_script("1_show.py", "--config", str(config))[0] == 0
    summary = build_map(load_config(config))
    assert {item.ms_name: item.method for item in summary["matches"]}["model.layers.0.attention.w_qkv.weight"] == "probed"
    assert summary["probe"]["decided"] and summary["probe"]["blocks_read"] == ["model.layers.0", "model.layers.1"]


def test_an_llm_probe_stays_in_the_decoder_layer_when_its_attention_cannot_run_alone(tmp_path):
    """transformers 5 calls the attention by keyword, so `w_qkv` is scored on the decoder layer, which also holds
    `w_gate_hidden`, undecided: the first sweep waits for it rather than scoring every `w_qkv` candidate on the
    whole model (before: the embedding and head read once per candidate; at 3B, 40 minutes and more). The
    twins confirm the first layer's winner: one block run each, not one per candidate."""
    from pt2ms.stages.build_map import build_map

    config, model, state = _project(tmp_path, "llama_keywords", "llama_mindformers")
    assert run_script("1_show.py", "--config", str(config))[0] == 0
    summary = build_map(load_config(config))
    found = {item.ms_name: item for item in summary["matches"]}
    qkv = found["model.layers.1.attention.w_qkv.weight"]
    assert qkv.method == "probed" and "at model.layers.0 vs model.layers.0 and its 1 twins" in qkv.note, qkv.note
    assert found["model.layers.1.feed_forward.w_gate_hidden.weight"].method == "probed"
    assert summary["probe"]["blocks_read"] == ["model.layers.0", "model.layers.1"]
    # Stage 4 agrees, and the attention called by keyword is compared by its output, not called "differ"
    # for inputs its hooks never saw (the 3B report had 29 such rows in an agreeing run).
    _stages_3_4_and_back(config, state)
    report = json.loads((config.parent / "outputs" / config.stem / "verify.json").read_text())
    attention = next(row for row in report["layers"] if row["torch"] == "model.layers.0.self_attn")
    assert attention["inputs"]["note"] == "inputs passed by keyword: not recorded"
    assert [row["torch"] for row in report["layers"] if row["verdict"] == "differ"] == []


def test_pytorch_tensors_set_in_place_of_the_files_reach_the_recorded_pass_and_come_back(tmp_path):
    """The models are built empty, so a decision that must change PyTorch weights (a gate opened) sets them on
    the Bench, which reads them instead of the file's while they are set."""
    import numpy as np

    from pt2ms.mapping.probe_bench import Bench

    config, model, state = _project(tmp_path, "dpn", "dpn_mindspore", "[verify]\ninputs = [[2, 3, 8, 8]]\n")
    bench = Bench(load_config(config))
    saved = bench.set_torch_weights({"stem.weight": np.zeros(tuple(state["stem.weight"].shape), np.float32)})
    bench.record(set(), {"stem"})
    stem = bench.torch_recording.records["stem"].output[0]
    np.testing.assert_allclose(stem, np.broadcast_to(state["stem.bias"].numpy()[None, :, None, None], stem.shape))
    bench.restore_torch_weights(saved)
    assert np.array_equal(bench.torch_array("stem.weight"), state["stem.weight"].numpy())
    bench.record(set(), {"stem"})
    assert not np.allclose(bench.torch_recording.records["stem"].output[0], stem)
