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
from pt2ms.formats.inventory import TensorInfo, read_inventory
from pt2ms.mapping.matching import FILE_ORDER_NOTE, match
from pt2ms.stages.build_map import build_map
from pt2ms.stages.show import show
from tests.mapping.test_zoo_pairs import wrong_entries
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


# ---------------------------------------------------------------- the rules on bare inventories

def _row(name, shape, layer_type="", settings="", execution=-1):
    return TensorInfo(name, tuple(shape), "float32", layer_type, name, settings=settings,
                      definition_order=0 if execution >= 0 else -1, execution_order=execution)


def test_stride_blocks_a_pairing_but_padding_and_eps_do_not():
    same, padded = '{"padding":"same","stride":2}', '{"padding":1,"stride":1}'
    ms_rows = [_row("a.weight", (8, 8, 3, 3), "Conv2d", same, 0), _row("b.weight", (8, 8, 3, 3), "Conv2d", padded, 1),
               _row("n.gamma", (8,), "BatchNorm2d", '{"eps":0.001}', 2),
               _row("n.beta", (8,), "BatchNorm2d", '{"eps":0.001}', 2)]
    torch_rows = [_row("x.weight", (8, 8, 3, 3), "Conv2d", '{"padding":1,"stride":1}', 0),
                  _row("y.weight", (8, 8, 3, 3), "Conv2d", '{"padding":1,"stride":2}', 1),
                  _row("m.weight", (8,), "BatchNorm2d", '{"eps":1e-05}', 2),
                  _row("m.bias", (8,), "BatchNorm2d", '{"eps":1e-05}', 2)]
    got = {item.ms_name: item.torch for item in match(ms_rows, torch_rows)}
    assert got == {"a.weight": "y.weight", "b.weight": "x.weight", "n.gamma": "m.weight", "n.beta": "m.bias"}


def test_short_role_words_decide_against_alphabetical_file_order():
    ms_rows = [_row(f"layers.0.attention.{w}.weight", (16, 16), "Dense") for w in ("wq", "wk", "wv", "wo")]
    torch_rows = [_row(f"layers.0.self_attn.{p}_proj.weight", (16, 16), "Linear") for p in "koqv"]
    got = {item.ms_name: item.torch for item in match(ms_rows, torch_rows)}
    assert got == {f"layers.0.attention.w{p}.weight": f"layers.0.self_attn.{p}_proj.weight" for p in "qkvo"}
