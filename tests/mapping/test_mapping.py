"""The map file: hand edits stay authoritative, conflicts are reported, values parse strictly."""

import json

import pytest

from pt2ms.errors import Pt2MsError
from pt2ms.mapping.mapfile import parse_value
from tests.conftest import run_script


def edit(config_path, change):
    map_path = config_path.parent / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    change(data["map"])
    map_path.write_text(json.dumps(data, indent=2))
    return map_path


def test_conflicting_hand_edits_are_kept_and_reported(mapped_project):
    def change(entries):
        entries["classifier.weight"] = "fc.bias"          # shape mismatch
        entries["no.such.parameter"] = "fc.weight"         # unknown MindSpore name
    map_path = edit(mapped_project, change)
    code, stdout, _ = run_script("2_build_map.py", "--config", str(mapped_project))
    data = json.loads(map_path.read_text())
    assert code == 0
    assert "conflict: hand edit 'classifier.weight': shape mismatch" in stdout
    assert "conflict: hand edit 'no.such.parameter': no MindSpore parameter has this name" in stdout
    assert data["map"]["classifier.weight"] == "fc.bias" and data["map"]["no.such.parameter"] == "fc.weight"
    assert {c["ms_name"] for c in data["conflicts"]} == {"classifier.weight", "no.such.parameter"}
    code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(mapped_project))
    assert code == 2 and "no.such.parameter" in stderr


def test_untouched_entries_follow_fresh_suggestions(mapped_project):
    map_path = edit(mapped_project, lambda entries: entries.pop("classifier.bias"))
    assert run_script("2_build_map.py", "--config", str(mapped_project))[0] == 0
    data = json.loads(map_path.read_text())
    assert data["map"]["classifier.bias"] == "fc.bias"
    assert data["found"]["classifier.bias"]["method"] != "manual"
    assert list(data["map"]) == list(data["found"])
    confidences = [entry["confidence"] for entry in data["found"].values()]
    assert confidences == sorted(confidences)


@pytest.mark.parametrize("value", [3, {"torch": 3}, {"torch": "a", "transform": "warp(1)"}, {"source": "a"}])
def test_bad_map_values_are_refused(value):
    with pytest.raises(Pt2MsError, match="entry 'x'"):
        parse_value(value, "x", "maps/m.json")
