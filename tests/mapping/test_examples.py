"""The bundled examples map with no hand edit, checked entry for entry against hand-checked reference maps.

Stages 1 and 2 run on each bundled config with artifacts redirected to a temporary folder.
"""

import json
from pathlib import Path

import pytest

from pt2ms.config import PROJECT_ROOT, load_config
from pt2ms.mapping.mapfile import read_map
from pt2ms.stages.build_map import build_map, score
from pt2ms.stages.demo import make_example_checkpoint
from pt2ms.stages.show import show

EXAMPLES = ["efficientnet_b0", "resnet50", "yolos_tiny", "minilm_l6"]


@pytest.fixture(params=EXAMPLES)
def example(request, tmp_path):
    config = load_config(PROJECT_ROOT / "configs" / f"{request.param}.toml")
    outputs = tmp_path / "outputs"
    for attribute in ("checkpoint",):
        path = getattr(config.torch, attribute)
        if path.is_relative_to(config.paths.outputs):
            setattr(config.torch, attribute, outputs / path.relative_to(config.paths.outputs))
    if config.mindspore.template:
        config.mindspore.template = outputs / config.mindspore.template.relative_to(config.paths.outputs)
    config.paths.outputs, config.paths.maps = outputs, tmp_path / "maps"
    make_example_checkpoint(config)
    return config


def test_example_maps_with_no_hand_edit(example):
    show(example)
    summary = build_map(example)
    reference = json.loads((PROJECT_ROOT / "tests" / "reference_maps" / f"{example.name}.json").read_text())
    result = score(read_map(example.map_path), reference)
    assert result["wrong"] == [] and result["extra"] == []
    assert result["right"] == len(reference["map"]) > 60
    assert summary["conflicts"] == []
    # stage 3 refuses stage 2's own nulls ("no PyTorch tensor fits"): a bundled example must leave none
    assert None not in read_map(example.map_path)["map"].values()


def test_every_config_is_documented_in_readme():
    readme = (PROJECT_ROOT / "README.md").read_text()
    for config in Path(PROJECT_ROOT / "configs").glob("*.toml"):
        assert config.name in readme, f"{config.name} is not mentioned in README.md"
