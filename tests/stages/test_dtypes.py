"""Dtypes across the pipeline: a bf16 checkpoint into a float32 port and the reverse, cast on load in stage 4."""

import json
import textwrap

import pytest

from tests.conftest import run_script, write_config


def ms_net_in(dtype="float16"):
    """The tiny MindSpore port with its float parameters in `dtype` (a half-precision port)."""
    import mindspore as ms

    from tests.tiny_models import ms_net

    net = ms_net()
    for parameter in net.get_parameters():
        if parameter.dtype == ms.float32:
            parameter.set_dtype(getattr(ms, dtype))
    return net


def _project(tmp_path, checkpoint_dtype, ms_model="tests.tiny_models:ms_net", extra="", verify=""):
    """The tiny pair with its checkpoint saved as safetensors in `checkpoint_dtype`; returns the config path."""
    import torch
    from safetensors.torch import save_file

    from tests.tiny_models import randomized_state_dict, torch_net

    state = randomized_state_dict(torch_net())
    dtype = getattr(torch, checkpoint_dtype)
    save_file({name: value.to(dtype) if value.is_floating_point() else value for name, value in state.items()},
              tmp_path / "weights.safetensors")
    path = write_config(tmp_path, checkpoint="weights.safetensors", ms_model=ms_model, extra=extra)
    path.write_text(path.read_text().replace("[verify]\n", f"[verify]\n{verify}"))  # keys of [verify] itself
    return path


def _stack_project(tmp_path, verify):
    """An MLP stack (tests/big_models.py; no convolution, which MindSpore's CPU kernels lack in bfloat16) with a
    float32 safetensors checkpoint; returns the config path."""
    from tests.big_models import write_checkpoint

    write_checkpoint(tmp_path / "stack.safetensors", dtype="float32")
    (tmp_path / "stack.toml").write_text(textwrap.dedent(f"""\
        name = "stack"
        [torch]
        checkpoint = "stack.safetensors"
        model = "tests.big_models:torch_model"
        [mindspore]
        model = "tests.big_models:ms_model"
        [verify]
        inputs = [{{ shape = [2, 16], dtype = "int64", low = 0, high = 100 }}]
        {verify}
        [paths]
        maps = "maps"
        outputs = "outputs"
        """))
    return tmp_path / "stack.toml"


def _four_stages(config, name="tiny"):
    for script in ("1_show.py", "2_build_map.py"):
        code, _, stderr = run_script(script, "--config", str(config))
        assert code == 0, stderr
    convert = run_script("3_pth2ckpt.py", "--config", str(config))
    assert convert[0] == 0, convert[2]
    verify = run_script("4_verify.py", "--config", str(config))
    report = json.loads((config.parent / "outputs" / name / "verify.json").read_text())
    return convert[1], verify, report


def test_bf16_checkpoint_into_a_float32_port_verifies_agree(tmp_path):
    convert_out, (code, stdout, stderr), report = _four_stages(_project(tmp_path, "bfloat16"))
    print(convert_out, stdout)
    assert "the file holds bfloat16, the MindSpore model's parameters are float32: rerun with --cast float32" \
        in convert_out
    assert code == 0 and report["verdict"] == "agree", stdout + stderr
    assert report["casts"] == ("both models computed in float32: cast 15 checkpoint tensors bfloat16 -> float32 on "
                               "the MindSpore side; cast 15 checkpoint tensors bfloat16 -> float32 on the PyTorch side")
    assert report["casts"] in stdout
    assert report["casts"] in (tmp_path / "outputs" / "tiny" / "verify.md").read_text()


def test_the_written_file_keeps_the_checkpoint_dtype_unless_cast(tmp_path):
    import mindspore as ms

    config = _project(tmp_path, "bfloat16")
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        assert run_script(script, "--config", str(config))[0] == 0
    written = tmp_path / "outputs" / "tiny" / "tiny.ckpt"
    assert ms.load_checkpoint(str(written))["classifier.weight"].dtype == ms.bfloat16
    code, stdout, _ = run_script("3_pth2ckpt.py", "--config", str(config), "--cast", "float32")
    assert code == 0 and "dtypes:" not in stdout
    assert ms.load_checkpoint(str(written))["classifier.weight"].dtype == ms.float32


@pytest.mark.parametrize("port_dtype", ["float16", "bfloat16"])
def test_float32_checkpoint_into_a_half_precision_port_verifies_agree(tmp_path, port_dtype):
    config = _project(tmp_path, "float32", ms_model="tests.stages.test_dtypes:ms_net_in",
                      extra=f'[mindspore.kwargs]\ndtype = "{port_dtype}"\n')
    convert_out, (code, stdout, stderr), report = _four_stages(config)
    print(convert_out, stdout)
    assert f"the file holds float32, the MindSpore model's parameters are {port_dtype}: rerun with --cast " \
           f"{port_dtype} to match" in convert_out
    assert code == 0 and report["verdict"] == "agree", stdout + stderr
    assert f"cast 15 model parameters {port_dtype} -> float32 on the MindSpore side; nothing cast on the PyTorch " \
           "side" in report["casts"]


@pytest.mark.parametrize("dtype", ["float16"])  # MindSpore 2.10's CPU kernels lack bfloat16 Gather and Conv2D
def test_both_sides_compute_in_half_precision_when_verify_dtype_says_so(tmp_path, dtype):
    """Layers judged by what one operation costs in that dtype, the outputs by its default tolerance: with
    float32's thresholds (1e-5 a layer, 1e-4 the outputs) every layer and the outputs would "differ"."""
    from pt2ms.config import DEFAULT_TOLERANCES
    from pt2ms.running import compare

    config = _stack_project(tmp_path, f'dtype = "{dtype}"')
    convert_out, (code, stdout, stderr), report = _four_stages(config, "stack")
    print(stdout)
    assert code == 0 and report["agree"], stdout + stderr
    assert report["casts"].startswith(f"both models computed in {dtype}: cast 12 checkpoint tensors float32 -> "
                                      f"{dtype}, 12 model parameters float32 -> {dtype} on the MindSpore side")
    assert (report["tolerance"], report["op_tolerance"]) == (DEFAULT_TOLERANCES[dtype], compare.op_tolerance(dtype))
    assert 1e-4 < report["outputs"][0]["relative"] < report["tolerance"]  # half precision rounds, within its own
    isolated = [row["isolated"]["relative"] for row in report["layers"] if row.get("isolated", {}).get("compared")]
    assert isolated and max(isolated) > compare.OP_TOLERANCE  # float32's threshold would have refused a layer
