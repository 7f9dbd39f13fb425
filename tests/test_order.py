"""Stage 1 records the models' order and settings; stage 2 uses them, and says when it had none.

The LLaMA pair of tests/zoo_llm_pairs.py, its PyTorch weights saved as a Hugging Face `model.safetensors` is:
keys in alphabetical order (k_proj, o_proj, q_proj, v_proj), so file order puts o_proj before q_proj, while
the port's wq and wo have one shape.
"""
import json
import textwrap

import mindspore as ms
from safetensors.torch import save_file

from pt2ms.config import load_config
from pt2ms.inventory import read_inventory, show
from pt2ms.mapping import build_map
from pt2ms.matching import FILE_ORDER_NOTE
from tests.test_zoo_pairs import wrong_entries
from tests.zoo_llm_pairs import SEQ, VOCAB, llama_hf_vs_mindformers_pair

TOKENS = f'[{{ shape = [2, {SEQ}], dtype = "int64", low = 0, high = {VOCAB} }}]'


def _project(directory, pair, inputs=TOKENS, models=True):
    state = {key: value.detach().clone().contiguous() for key, value in pair.torch_model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    ms_models = 'model = "tests.zoo_order_pairs:mindformers_llama"'
    if not models:
        ms.save_checkpoint(pair.ms_model, str(directory / "template.ckpt"))
        ms_models = 'template = "template.ckpt"'
    torch_model = 'model = "tests.zoo_order_pairs:hf_llama"' if models else ""
    path = directory / "llama.toml"
    path.write_text(textwrap.dedent(f"""\
        name = "llama"
        [torch]
        checkpoint = "model.safetensors"
        {torch_model}
        [mindspore]
        {ms_models}
        [verify]
        inputs = {inputs}
        [paths]
        maps = "maps"
        outputs = "outputs"
        """))
    return load_config(path)


def _torch_names(config):
    return [row.name for row in read_inventory(config.output_dir / "torch_params.csv")]


def test_alphabetical_safetensors_keys_map_right_with_execution_order(tmp_path):
    pair = llama_hf_vs_mindformers_pair()
    config = _project(tmp_path, pair)
    show(config)
    names = _torch_names(config)
    layer0 = "model.layers.0.self_attn"
    assert names.index(f"{layer0}.o_proj.weight") < names.index(f"{layer0}.q_proj.weight"), "file order is alphabetical"
    torch_rows = {row.name: row for row in read_inventory(config.output_dir / "torch_params.csv")}
    q, o = torch_rows[f"{layer0}.q_proj.weight"], torch_rows[f"{layer0}.o_proj.weight"]
    assert 0 <= q.execution_order < o.execution_order and q.definition_order < o.definition_order
    assert json.loads(q.settings) == {"bias": False}
    build_map(config)
    data = json.loads(config.map_path.read_text())
    assert data["map"]["model.layers.0.attention.wq.weight"] == f"{layer0}.q_proj.weight"
    assert data["map"]["model.layers.0.attention.wo.weight"] == f"{layer0}.o_proj.weight"
    assert wrong_entries(data["map"], pair) == []
    assert all(text.startswith("the order its layers ran") for text in data["position"].values())


def test_without_models_the_map_says_it_used_file_order(tmp_path):
    pair = llama_hf_vs_mindformers_pair()
    config = _project(tmp_path, pair, models=False)
    show(config)
    build_map(config)
    data = json.loads(config.map_path.read_text())
    assert all("key order" in text for text in data["position"].values())
    guessed = [found for found in data["found"].values() if found["method"] in ("structural", "transform", "order")]
    assert guessed and all(FILE_ORDER_NOTE in found["note"] and found["confidence"] < 0.9 for found in guessed)


def test_a_failing_forward_costs_only_the_execution_order(tmp_path, capsys):
    pair = llama_hf_vs_mindformers_pair()
    config = _project(tmp_path, pair, inputs="[[2, 3, 4]]")  # floats into an embedding: both forwards fail
    show(config)
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("forward pass on the [verify] inputs failed" in line for line in warnings)
    for stem in ("torch_params", "ms_params"):
        rows = read_inventory(config.output_dir / f"{stem}.csv")
        assert all(row.execution_order == -1 for row in rows)
        assert all(row.definition_order >= 0 for row in rows)
    build_map(config)
    data = json.loads(config.map_path.read_text())
    assert all(text.startswith("the order its layers are declared") for text in data["position"].values())
