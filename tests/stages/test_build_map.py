"""Stage 2's probe is only paid for when it has something to decide: counted from the inventories first."""

import json

import torch

from tests.conftest import run_script, write_config
from tests.tiny_models import randomized_state_dict, torch_net

# Factories that note every model they build in built.txt beside them, then build the tiny pair.
COUNTING_FACTORIES = """\
from pathlib import Path

from tests import tiny_models

BUILT = Path(__file__).with_name("built.txt")


def torch_net(classes=3):
    with BUILT.open("a") as log:
        log.write("torch\\n")
    return tiny_models.torch_net(classes)


def ms_net(classes=3):
    with BUILT.open("a") as log:
        log.write("mindspore\\n")
    return tiny_models.ms_net(classes)
"""


def counted_project(tmp_path, classes):
    (tmp_path / "counting.py").write_text(COUNTING_FACTORIES)
    torch.save(randomized_state_dict(torch_net(classes)), tmp_path / "weights.pth")
    config = write_config(tmp_path, torch_model="counting.py:torch_net", ms_model="counting.py:ms_net")
    kwargs = f"kwargs = {{ classes = {classes} }}\n"
    config.write_text(config.read_text().replace('torch_net"\n', 'torch_net"\n' + kwargs)
                      .replace('ms_net"\n', 'ms_net"\n' + kwargs))
    assert run_script("1_show.py", "--config", str(config))[0] == 0
    (tmp_path / "built.txt").unlink()  # stage 1 builds both to record their order: only stage 2's count here
    return config


def stage_2(config):
    code, stdout, stderr = run_script("2_build_map.py", "--config", str(config))
    assert code == 0, stderr
    built = config.parent / "built.txt"
    return stdout, built.read_text().split() if built.exists() else []


def test_a_pair_with_nothing_to_decide_builds_neither_model_in_stage_2(tmp_path):
    config = counted_project(tmp_path, classes=3)  # no square matrix, no unsure or joined entry
    stdout, built = stage_2(config)
    assert built == []
    assert "probe: nothing to decide from the names and shapes, models not built" in stdout
    mapping = json.loads((tmp_path / "maps" / "tiny.json").read_text())
    assert mapping["map"]["classifier.weight"] == "fc.weight"


def test_the_probe_builds_each_model_once_for_all_its_decisions(tmp_path):
    config = counted_project(tmp_path, classes=4)  # Dense(4, 4): its square weight is one decision
    map_path = tmp_path / "maps" / "tiny.json"
    stdout, built = stage_2(config)
    assert sorted(built) == ["mindspore", "torch"]
    assert "decisions in" in stdout.split("probe: ")[1].splitlines()[0], stdout  # it ran: not "nothing to decide"
    # A hand edit that fits the shapes is a second thing to run: still one model a side.
    data = json.loads(map_path.read_text())
    data["map"]["features.5.gamma"] = "features.1.weight"
    map_path.write_text(json.dumps(data))
    (tmp_path / "built.txt").unlink()
    stdout, built = stage_2(config)
    assert sorted(built) == ["mindspore", "torch"]
    assert "hand edits run 1 (1 contradicted)" in stdout, stdout


def test_a_hand_edit_alone_is_something_to_decide(tmp_path):
    config = counted_project(tmp_path, classes=3)
    stage_2(config)
    map_path = tmp_path / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    data["map"].update({"norm.beta": None, "features.5.gamma": "features.1.weight"})  # a null edit runs nothing
    map_path.write_text(json.dumps(data))
    stdout, built = stage_2(config)
    assert sorted(built) == ["mindspore", "torch"]
    assert "hand edits run 1" in stdout, stdout
    assert "nothing to decide" not in stdout
