"""Hugging Face folders as people have them: saved by an older transformers, with buffers newer versions no
longer register, as `[torch] checkpoint` with no factory."""

import json

from tests.conftest import run_script
from tests.hf_folders import old_bert_folder
from tests.stages.test_newcomer import hf_project


def test_a_bert_folder_with_position_ids_runs_stages_1_to_4_and_agrees(tmp_path):
    config = hf_project(tmp_path)
    old_bert_folder(tmp_path / "bert")  # the same BERT, re-saved with embeddings.position_ids in its file
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        code, stdout, stderr = run_script(script, "--config", str(config))
        assert code == 0, f"{script}: {stdout}{stderr}"
        if script == "2_build_map.py":
            assert "probe skipped" not in stdout, stdout  # the probe ran: the PyTorch model loaded
    data = json.loads((tmp_path / "maps" / "tiny_bert.json").read_text())
    assert "does not register" in data["ignored"]["torch"]["embeddings.position_ids"]
    assert "embeddings.position_ids" not in data["unused_torch"]
    code, stdout, stderr = run_script("4_verify.py", "--config", str(config))
    report = json.loads((tmp_path / "outputs" / "tiny_bert" / "verify.json").read_text())
    assert code == 0 and report["agree"] is True, stdout + stderr
