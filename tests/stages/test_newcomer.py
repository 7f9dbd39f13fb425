"""What a new user meets first: a fresh clone's four scripts, a Hugging Face folder with no factory, and the
installed `pt2ms` command."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT, run_script

BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12)
# The model-zoo BERT port, returning what Hugging Face's BertModel returns (a dict of two outputs).
MS_BERT = """\
from pt2ms.examples.bert_ms import BertModel

class HFShaped(BertModel):
    def construct(self, input_ids):
        hidden, _ = super().construct(input_ids)
        return {"last_hidden_state": hidden, "pooler_output": self.pooler_output(hidden)}

def bert(**cfg):
    return HFShaped(cfg)
"""


def fresh_copy(destination):
    """The committed checkout's files (git ls-files), as a fresh clone would have them."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


def hf_project(directory, shard_size=None):
    """A tiny BERT saved with save_pretrained (no download) and a config naming only its folder."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(**BERT))
    model.save_pretrained(directory / "bert", **({"max_shard_size": shard_size} if shard_size else {}))
    (directory / "ms_bert.py").write_text(MS_BERT)
    kwargs = ", ".join(f"{key} = {value!r}" for key, value in BERT.items())
    config = directory / "hf.toml"
    config.write_text(textwrap.dedent(f"""\
        name = "tiny_bert"
        [torch]
        checkpoint = "bert"
        [mindspore]
        model = "ms_bert.py:bert"
        kwargs = {{ {kwargs} }}
        [verify]
        inputs = [{{ shape = [2, 7], dtype = "int64", low = 0, high = 99 }}]
        [paths]
        maps = "maps"
        outputs = "outputs"
        """))
    return config


@pytest.mark.parametrize("shard_size", [None, "20KB"], ids=["single-file", "sharded"])
def test_hugging_face_folder_converts_and_verifies_with_no_factory(tmp_path, shard_size):
    config = hf_project(tmp_path, shard_size)
    assert (tmp_path / "bert" / "model.safetensors.index.json").exists() == bool(shard_size)
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        code, _, stderr = run_script(script, "--config", str(config))
        assert code == 0, f"{script}: {stderr}"
    out = tmp_path / "outputs" / "tiny_bert"
    torch_csv = (out / "torch_params.csv").read_text()
    assert "encoder.layer.1.attention.self.query.weight" in torch_csv and ",BertSelfAttention," not in torch_csv
    assert ",Linear," in torch_csv and ",LayerNorm," in torch_csv and ",Embedding," in torch_csv  # layer types known
    mapping = json.loads((tmp_path / "maps" / "tiny_bert.json").read_text())["map"]
    assert mapping["bert_encoder.layers.1.attention.attention.query_layer.weight"] == \
        "encoder.layer.1.attention.self.query.weight"
    code, stdout, stderr = run_script("4_verify.py", "--config", str(config))
    report = json.loads((out / "verify.json").read_text())
    assert code == 0 and report["agree"] is True, stdout + stderr
    assert {row["output"] for row in report["outputs"]} == {"output['last_hidden_state']", "output['pooler_output']"}


def test_hugging_face_folder_without_transformers_is_a_one_line_error(tmp_path, monkeypatch):
    config = hf_project(tmp_path)
    monkeypatch.setitem(sys.modules, "transformers", None)  # what `import transformers` meets when not installed
    code, _, stderr = run_script("1_show.py", "--config", str(config))
    assert code == 2 and stderr.count("\n") == 1
    assert stderr.startswith(f"error: {tmp_path / 'bert'}: building the PyTorch model from a Hugging Face folder "
                             "needs the transformers package")


def test_a_folder_without_weights_is_refused(tmp_path):
    config = hf_project(tmp_path)
    (tmp_path / "bert" / "model.safetensors").unlink()
    code, _, stderr = run_script("1_show.py", "--config", str(config))
    assert code == 2 and "a folder as checkpoint must be a Hugging Face model folder holding one of" in stderr


def test_wheel_builds_and_the_pt2ms_command_runs_the_four_stages(tmp_path):
    source = fresh_copy(tmp_path / "checkout")
    python = sys.executable
    subprocess.run([python, "-m", "pip", "wheel", ".", "-w", str(tmp_path / "wheels"), "--no-deps",
                    "--no-build-isolation", "-q"], cwd=source, check=True, capture_output=True)
    wheel = next((tmp_path / "wheels").glob("pt2ms-*.whl"))
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    shutil.rmtree(source)  # the installed command must not lean on a checkout
    command = tmp_path / "site" / "bin" / "pt2ms"
    project = tmp_path / "project"
    project.mkdir()
    import torch

    from tests.tiny_models import randomized_state_dict, torch_net

    torch.save(randomized_state_dict(torch_net()), project / "weights.pth")
    factories = ROOT / "tests" / "tiny_models.py"
    config = project / "tiny.toml"
    config.write_text(f'name = "tiny"\n[torch]\ncheckpoint = "weights.pth"\nmodel = "{factories}:torch_net"\n'
                      f'[mindspore]\nmodel = "{factories}:ms_net"\n[verify]\ninputs = [[2, 3, 8, 8]]\n')
    # No [paths]: installed, maps/ and outputs/ go beside the config, never into site-packages.
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    results = {}
    for stage in ("show", "map", "convert", "verify"):
        results[stage] = subprocess.run([str(command), stage, "--config", str(config)], cwd=project, env=env,
                                        capture_output=True, text=True)
        assert results[stage].returncode == 0, f"pt2ms {stage}: {results[stage].stderr[-2000:]}"
    assert any(line.startswith("agree") for line in results["verify"].stdout.splitlines())
    assert (project / "outputs" / "tiny" / "tiny.ckpt").is_file() and (project / "maps" / "tiny.json").is_file()
    assert not (tmp_path / "site" / "outputs").exists()
    assert json.loads((project / "outputs" / "tiny" / "verify.json").read_text())["agree"] is True
    # No arguments, in an empty folder: the bundled example's stage 1, its seeded checkpoint made here.
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([python, "-m", "pt2ms", "show"], cwd=empty, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    example = empty / "outputs" / "efficientnet_b0"
    assert f"wrote {example / 'efficientnet_b0.pth'} (it was missing" in done.stdout
    assert (example / "torch_params.txt").is_file() and (example / "ms_params.csv").is_file()
    assert sorted(path.name for path in (tmp_path / "site").iterdir()) == ["bin", "pt2ms", f"{wheel.name.split('-py')[0]}.dist-info"]
    assert not (tmp_path / "site" / "pt2ms" / "outputs").exists()
    done = subprocess.run([str(command), "shwo"], cwd=empty, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.splitlines()[-1] == "error: unknown command 'shwo' (did you mean 'show'?)"


def test_four_scripts_with_no_arguments_on_a_fresh_clone_read_agree(tmp_path):
    """The README's promise: no arguments runs the bundled EfficientNet-b0 example end to end (slow: ~1-2 min)."""
    copy = fresh_copy(tmp_path)
    assert not (copy / "outputs" / "efficientnet_b0").exists()
    outputs = []
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py", "4_verify.py"):
        done = subprocess.run([sys.executable, script], cwd=copy, capture_output=True, text=True)
        assert done.returncode == 0, f"{script}: {done.stderr[-2000:]}"
        outputs.append(done.stdout)
    assert "(it was missing: the bundled example's seeded input, made now)" in outputs[0]
    assert any(line.startswith("agree") for line in outputs[3].splitlines())
    report = json.loads((copy / "outputs" / "efficientnet_b0" / "verify.json").read_text())
    assert report["agree"] is True
    # TF-style static padding [0, 1, 0, 1] against pad_mode="same": another form, the same pixels at this size.
    assert report["settings_differ"] and {(item["setting"], item["effect"]) for item in report["settings_differ"]} \
        == {("padding", "equivalent")}
