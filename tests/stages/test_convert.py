"""Stage 3 on hand-made inputs: a checkpoint, stage 1's target inventory and a map, no models built."""

import json

import numpy as np
import pytest
import torch

from pt2ms.config import load_config
from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import open_ms_checkpoint
from pt2ms.formats.inventory import TensorInfo, write_inventory
from pt2ms.stages.convert import convert
from tests.conftest import write_config


def project(tmp_path, weights, targets, mapping):
    """A config whose stage 1 and 2 artifacts are written by hand; returns the loaded config."""
    torch.save(weights, tmp_path / "weights.pth")
    config = load_config(write_config(tmp_path, torch_model="unused:factory", ms_model="unused:factory"))
    write_inventory([TensorInfo(name, shape, dtype) for name, shape, dtype in targets],
                    config.output_dir / "ms_params", "MindSpore")
    config.map_path.parent.mkdir(parents=True, exist_ok=True)
    config.map_path.write_text(json.dumps({"map": mapping}))
    return config


def test_bfloat16_scalar_and_uint16_convert_bit_exact(tmp_path):
    scalar = torch.tensor(-1.75, dtype=torch.bfloat16)
    counts = torch.tensor([0, 1, 65535], dtype=torch.int32).to(torch.uint16)
    config = project(tmp_path, {"scale": scalar, "counts": counts},
                     [("scale", (), "bfloat16"), ("counts", (3,), "uint16")], {"scale": "scale", "counts": "counts"})
    convert(config)
    written = open_ms_checkpoint(config.output_dir / "tiny.ckpt")
    assert written["scale"].shape == () and written["scale"].read() == scalar.view(torch.int16).numpy().view(np.uint16)
    assert written["counts"].read().tolist() == [0, 1, 65535]


def test_empty_tensor_is_refused_for_ckpt_and_kept_in_safetensors(tmp_path):
    config = project(tmp_path, {"empty": torch.zeros(0), "w": torch.ones(2)},
                     [("empty", (0,), "float32"), ("w", (2,), "float32")], {"empty": "empty", "w": "w"})
    with pytest.raises(Pt2MsError, match="'empty' has no elements .* --format safetensors"):
        convert(config)
    assert not (config.output_dir / "tiny.ckpt").exists()
    convert(config, output_format="safetensors")
    assert open_ms_checkpoint(config.output_dir / "tiny.safetensors")["empty"].shape == (0,)


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    config = project(tmp_path, {"w": torch.ones(2)}, [("w", (2,), "float32")], {"w": "w"})
    stale = config.output_dir / ".tiny.ckpt.abc123.part"
    stale.write_bytes(b"half a checkpoint")
    convert(config)
    assert not stale.exists() and [p.name for p in config.output_dir.iterdir() if p.suffix == ".part"] == []


def test_complex_tensor_is_refused_by_dtype(tmp_path):
    config = project(tmp_path, {"z": torch.zeros(2, dtype=torch.complex64)}, [("z", (2,), "float32")], {"z": "z"})
    with pytest.raises(Pt2MsError, match="weights.pth: .* has dtype complex64, which pt2ms cannot convert"):
        convert(config)


# --- no silent random weights: stage 3 refuses what stage 2 found nothing for --------------------------

def _project_missing_source(tmp_path, dropped=("fc.bias",)):
    """The tiny pair whose checkpoint lacks `dropped`, through stages 1 and 2: stage 2 finds nothing for them."""
    from tests.conftest import run_script
    from tests.tiny_models import randomized_state_dict, torch_net

    state = randomized_state_dict(torch_net())
    for name in dropped:
        del state[name]
    torch.save(state, tmp_path / "weights.pth")
    config = write_config(tmp_path)
    assert run_script("1_show.py", "--config", str(config))[0] == 0
    assert run_script("2_build_map.py", "--config", str(config))[0] == 0
    return config, json.loads((tmp_path / "maps" / "tiny.json").read_text())


def test_map_leaving_parameters_at_initial_values_is_refused(tmp_path):
    from tests.conftest import run_script

    config, mapping = _project_missing_source(tmp_path)
    assert mapping["map"]["classifier.bias"] is None and mapping["suggested"]["classifier.bias"] is None
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert lines[0].startswith(f"error: {tmp_path / 'maps' / 'tiny.json'}: 1 MindSpore parameter(s) would keep "
                               "their initial (random) values")
    assert "--allow-initial" in lines[0]
    assert "  left at initial value: classifier.bias" in lines
    assert lines[-1] == "  (1 left at initial value, 0 PyTorch tensors unused in all)"
    assert not (tmp_path / "outputs" / "tiny" / "tiny.ckpt").exists()


def test_refusal_lists_ten_of_each_and_counts_all(tmp_path):
    names = [f"p{i}" for i in range(12)]
    config = project(tmp_path, {f"t{i}": torch.zeros(2) for i in range(13)},
                     [(name, (2,), "float32") for name in names], {"p0": "t0"})
    data = json.loads(config.map_path.read_text())
    data["map"].update({name: None for name in names[1:]})
    data["suggested"] = dict(data["map"])
    config.map_path.write_text(json.dumps(data))
    with pytest.raises(Pt2MsError) as caught:
        convert(config)
    lines = str(caught.value).splitlines()
    assert lines[0].endswith("or pass --allow-initial to keep their initial values") and ": 11 MindSpore parameter(s)" in lines[0]
    assert [line for line in lines if line.startswith("  left at initial value:")] == \
        [f"  left at initial value: p{i}" for i in range(1, 11)]
    assert "  ... and 1 more left at initial value" in lines
    assert sum(line.startswith("  unused PyTorch tensor:") for line in lines) == 10
    assert "  ... and 2 more unused PyTorch tensors" in lines
    assert lines[-1] == "  (11 left at initial value, 12 PyTorch tensors unused in all)"


def test_null_set_by_hand_keeps_the_initial_value(tmp_path):
    from tests.conftest import run_script

    config, mapping = _project_missing_source(tmp_path)
    mapping["suggested"]["classifier.bias"] = "fc.bias"  # as if stage 2 had proposed a tensor and a person cleared it
    (tmp_path / "maps" / "tiny.json").write_text(json.dumps(mapping))
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
    assert code == 0, stderr
    assert "left at initial value 1," in stdout and "  left at initial value: classifier.bias (set to null by hand)" in stdout
    del mapping["suggested"]["classifier.bias"]  # a null stage 2 never suggested is a hand edit too
    (tmp_path / "maps" / "tiny.json").write_text(json.dumps(mapping))
    assert run_script("3_pth2ckpt.py", "--config", str(config))[0] == 0


def test_allow_initial_converts_and_says_how_many(tmp_path):
    import mindspore as ms

    from tests.conftest import run_script

    config, _ = _project_missing_source(tmp_path)
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(config), "--allow-initial")
    assert code == 0, stderr
    assert "left at initial value 1," in stdout
    assert "warning: --allow-initial: 1 parameter(s) left at initial values with no PyTorch tensor found" in stdout
    assert "  left at initial value: classifier.bias (no PyTorch tensor found)" in stdout
    loaded = ms.load_checkpoint(str(tmp_path / "outputs" / "tiny" / "tiny.ckpt"))
    assert "classifier.bias" not in loaded and "classifier.weight" in loaded


def test_ignored_mindspore_parameters_are_allowed_and_counted(tmp_path):
    config = project(tmp_path, {"w": torch.ones(2)}, [("w", (2,), "float32"), ("router.fi_accu", (4,), "float32")],
                     {"w": "w"})
    data = json.loads(config.map_path.read_text())
    data["ignored"] = {"torch": {}, "mindspore": {"router.fi_accu": "a counter with no source"}}
    data["suggested"] = dict(data["map"])
    config.map_path.write_text(json.dumps(data))
    summary = convert(config)
    assert summary["converted"] == 1 and summary["ignored_ms"] == ["router.fi_accu"] and summary["left"] == []
