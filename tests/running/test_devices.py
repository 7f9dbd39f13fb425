"""[torch] device and [mindspore] device (pt2ms.running.devices): the default runs; a device the machine lacks,
or one that does not exist, is a one-line error naming the key (exit code 2), never a traceback."""

import json

import pytest

from pt2ms.config import load_config
from pt2ms.errors import Pt2MsError
from pt2ms.running.devices import torch_device, use_ms_device
from tests.conftest import run_script, write_config


def _with(config_path, section, line):
    """Add `line` to [section] of the config at `config_path`."""
    text = config_path.read_text()
    config_path.write_text(text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1))
    return config_path


def test_the_default_devices_are_the_cpu_on_both_sides(tmp_path):
    import torch

    config = load_config(write_config(tmp_path))
    assert (config.torch.device, config.mindspore.device) == ("cpu", "CPU")
    assert torch_device(config) == torch.device("cpu")
    assert use_ms_device(config) == "CPU"
    assert use_ms_device(config) == "CPU"  # asking again for the device in use is fine


@pytest.mark.parametrize("section, line, key", [("torch", 'device = "tpu"', "[torch] device"),
                                                ("torch", 'device = "cuda:x"', "[torch] device"),
                                                ("mindspore", 'device = "gpu"', "[mindspore] device"),
                                                ("mindspore", "device = 0", "[mindspore] device")])
def test_an_unknown_device_is_a_config_error_naming_the_file(tmp_path, section, line, key):
    path = _with(write_config(tmp_path), section, line)
    with pytest.raises(Pt2MsError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and key in message and "\n" not in message
    code, _, stderr = run_script("1_show.py", "--config", str(path))
    assert code == 2 and stderr.count("\n") == 1 and key in stderr


def _stage_4_refuses(project, section, line):
    """Stages 3 then 4 with `line` in [section]: stage 4 must stop in one `error:` line, exit 2; its stderr."""
    assert run_script("3_pth2ckpt.py", "--config", str(project))[0] == 0
    _with(project, section, line)
    code, _, stderr = run_script("4_verify.py", "--config", str(project))
    assert code == 2 and stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    return stderr


def test_asking_for_cuda_without_it_stops_stage_4_in_one_line(mapped_project):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    stderr = _stage_4_refuses(mapped_project, "torch", 'device = "cuda"')
    assert "[torch] device = 'cuda'" in stderr and "no such CUDA device" in stderr
    assert not (mapped_project.parent / "outputs" / "tiny" / "verify.json").exists()


def test_asking_for_a_mindspore_gpu_without_it_stops_stage_4_naming_the_key(mapped_project):
    from mindspore.hal import is_available

    if is_available("GPU"):
        pytest.skip("this MindSpore has a GPU")
    stderr = _stage_4_refuses(mapped_project, "mindspore", 'device = "GPU"')
    assert "[mindspore] device = 'GPU'" in stderr and "cannot use GPU" in stderr
    # The CPU still works in the same process afterwards.
    mapped_project.write_text(mapped_project.read_text().replace('device = "GPU"\n', ""))
    assert run_script("4_verify.py", "--config", str(mapped_project))[0] == 0
    assert json.loads((mapped_project.parent / "outputs" / "tiny" / "verify.json").read_text())["agree"]
