"""CSV tables: inventories round-trip any name exactly, human-facing tables are spreadsheet-safe and match
the map and the report row for row, and the per-layer plot keeps exact zeros apart."""

import dataclasses
import json
import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pt2ms.errors import Pt2MsError
from pt2ms.formats import inventory, tables
from pt2ms.formats.inventory import TensorInfo, read_inventory, write_inventory
from pt2ms.verify.report import layer_series
from tests.conftest import run_script, write_config

AWKWARD = ["a.b", "x\ny", "r\rz", "t\tq", "=SUM(A1:A9)", "+1", "-x", "@x", "'q", "''", "'=x", "back\\slash",
           "\\n", "\\", "\u00e9\u4e2d\U0001F600", "rlo\u202eevil", "nul\x00", "ff\x0c\x85\u2028\u2029", " lead ",
           "", '"quoted,"', "NA", "null", "007", "nan", "1e5", "nbsp\u00a0", "\x1b[31mred"]


def test_inventory_round_trips_awkward_names(tmp_path):
    rows = [TensorInfo(name, (index, 2), "float32", layer_type=name, path=name, tied_to=name)
            for index, name in enumerate(AWKWARD)]
    csv_path, txt_path = write_inventory(rows, tmp_path / "inv", "awkward")
    assert read_inventory(csv_path) == rows
    text = csv_path.read_text(encoding="utf-8")
    # One line per row (no raw line breaks of any kind), and nothing a terminal or spreadsheet would act on.
    assert len(text.splitlines()) == 1 + len(rows)
    assert all(char.isprintable() for char in text.replace("\n", ""))
    assert len(txt_path.read_text(encoding="utf-8").splitlines()) == 2 + len(rows)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=6, unique=True))
def test_any_valid_unicode_name_round_trips(tmp_path_factory, names):
    directory = tmp_path_factory.mktemp("inv")
    rows = [TensorInfo(name, (1,), "float32") for name in names]
    csv_path, _ = write_inventory(rows, directory / "inv", "generated")
    assert [row.name for row in read_inventory(csv_path)] == names


def test_no_cell_of_a_human_table_starts_a_formula(tmp_path):
    path = tables.write_csv(tmp_path / "t.csv", ["a", "b"], [[name, -1.5] for name in AWKWARD])
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in frame["a"])
    assert frame["b"].tolist() == ["-1.5"] * len(AWKWARD)  # numbers stay numbers
    assert [tables.unescape(cell) for cell in frame["a"]] == AWKWARD


def test_a_name_that_is_not_unicode_is_refused_before_anything_is_written(tmp_path):
    header = b'{"w\\ud800": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'
    (tmp_path / "weights.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    config = write_config(tmp_path, torch_model="", checkpoint="weights.safetensors")
    config.write_text(config.read_text().replace('model = ""\n', "", 1))
    code, _, stderr = run_script("1_show.py", "--config", str(config))
    assert code == 2 and stderr.count("\n") == 1
    assert stderr.startswith(f"error: {tmp_path / 'weights.safetensors'}: ")
    assert "name 'w\\ud800' is not valid Unicode" in stderr
    assert not (tmp_path / "outputs" / "tiny").exists() or not any((tmp_path / "outputs" / "tiny").iterdir())


def test_old_csv_without_newer_columns_reads_with_defaults(tmp_path):
    (tmp_path / "old.csv").write_text('name,shape,dtype,numel\nw,"[2, 3]",float32,6\n')
    assert read_inventory(tmp_path / "old.csv") == [TensorInfo("w", (2, 3), "float32")]


def test_a_missing_required_column_is_a_one_line_error(tmp_path):
    (tmp_path / "bad.csv").write_text("name,dtype\nw,float32\n")
    try:
        read_inventory(tmp_path / "bad.csv")
    except Pt2MsError as error:
        assert "not an inventory CSV" in str(error) and "'shape'" in str(error)
    else:
        raise AssertionError("a CSV without shapes was accepted")


def test_new_tensorinfo_fields_flow_through_writer_and_reader(tmp_path, monkeypatch):
    @dataclasses.dataclass
    class Extended(TensorInfo):
        order: int = -1
        calls: list = dataclasses.field(default_factory=list)
        remark: str = ""
        scale: float | None = None

    monkeypatch.setattr(inventory, "TensorInfo", Extended)
    rows = [Extended("a", (2,), "float32", order=3, calls=[1, 4], remark='{"eps": 1e-05}', scale=0.5),
            Extended("=b", (1,), "int64")]
    csv_path, _ = write_inventory(rows, tmp_path / "inv", "extended")
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[:4] == ["name", "shape", "dtype", "numel"] and header[-4:] == ["order", "calls", "remark", "scale"]
    assert read_inventory(csv_path) == rows


def test_map_review_matches_the_map_row_for_row(mapped_project):
    out = mapped_project.parent / "outputs" / "tiny"
    data = json.loads((mapped_project.parent / "maps" / "tiny.json").read_text())
    review = tables.read_csv(out / "map_review.csv")
    torch_shapes = {row.name: list(row.shape) for row in read_inventory(out / "torch_params.csv")}
    ms_shapes = {row.name: list(row.shape) for row in read_inventory(out / "ms_params.csv")}
    assert [row["mindspore_name"] for row in review] == list(data["map"])
    confidences = [float(row["confidence"]) for row in review]
    assert confidences == sorted(confidences)  # least confident first
    for row in review:
        name, value = row["mindspore_name"], data["map"][row["mindspore_name"]]
        source = value if isinstance(value, str) or value is None else value["torch"]
        assert row["torch_name"] == (source or "")
        assert json.loads(row["mindspore_shape"]) == ms_shapes[name]
        assert json.loads(row["torch_shape"] or "null") == torch_shapes.get(source)
        found = data["found"][name]
        assert (row["method"], float(row["confidence"]), row["note"]) == \
            (found["method"], found["confidence"], found["note"])


def test_verify_layers_csv_matches_the_report_row_for_row(mapped_project):
    assert run_script("3_pth2ckpt.py", "--config", str(mapped_project))[0] == 0
    assert run_script("4_verify.py", "--config", str(mapped_project))[0] == 0
    out = mapped_project.parent / "outputs" / "tiny"
    report = json.loads((out / "verify.json").read_text())
    rows = tables.read_csv(out / "verify_layers.csv")
    assert len(rows) == len(report["layers"]) >= 5
    layer_section = (out / "verify.md").read_text().split("## Layers")[1]
    markdown_rows = [line for line in layer_section.splitlines() if line.startswith("| ") and
                     line.split("|")[1].strip().isdigit()]
    assert len(markdown_rows) == len(rows)
    for row, layer, line in zip(rows, report["layers"], markdown_rows):
        assert (row["torch"], row["mindspore"], row["type"], row["verdict"]) == \
            (layer["torch"], layer["mindspore"], layer["torch_type"], layer["verdict"])
        assert float(row["relative"]) == layer["relative"]
        assert float(row["isolated_relative"]) == layer["isolated"]["relative"]
        assert f"`{layer['torch']}`" in line and f"{layer['relative']:.2e}" in line


def test_exact_zeros_are_kept_apart_from_the_log_scale():
    layers = [{"compared": True, "relative": value, "isolated": {"compared": True, "relative": 0.0}}
              for value in (1e-7, 0.0, 3e-6, math.inf, None)]
    xs, ys, zeros = layer_series({"layers": layers}, lambda layer: layer)
    assert (xs, zeros) == ([0, 1, 2], [1]) and ys[0] == 1e-7 and math.isnan(ys[1]) and ys[2] == 3e-6
    xs, ys, zeros = layer_series({"layers": layers}, lambda layer: layer["isolated"])
    assert xs == zeros == [0, 1, 2, 3, 4] and all(map(math.isnan, ys))  # nothing drawn on the log axis


def test_stage_3_reads_its_tables_without_pandas_torch_or_mindspore(mapped_project):
    """Stage 3 reads the inventory and the map only: importing pandas for them once cost 0.3-1 s a run."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import runpy, sys; main = runpy.run_path('3_pth2ckpt.py')['main']; "
            f"assert main(['--config', {str(mapped_project)!r}]) == 0; "
            "print(sorted(set(sys.modules) & {'pandas', 'torch', 'mindspore', 'scipy'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_a_row_longer_than_the_header_is_refused_and_long_cells_are_read_whole(tmp_path):
    path = tables.write_csv(tmp_path / "t.csv", ["a", "b"], [["x" * 300_000, 1], ["", ""]])
    assert [row["a"] for row in tables.read_csv(path)] == ["x" * 300_000, ""]
    path.write_text("a,b\n1,2\n\n3\n4,5,6\n", encoding="utf-8")
    with pytest.raises(Pt2MsError) as refused:
        tables.read_csv(path)
    assert str(refused.value) == f"{path}: not a CSV table (line 5 has 3 fields, the header 2)"
    path.write_text("a,b\n1,2\n\n3\n", encoding="utf-8")
    assert tables.read_csv(path) == [{"a": "1", "b": "2"}, {"a": "3", "b": ""}]
