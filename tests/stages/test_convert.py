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
