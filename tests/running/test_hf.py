"""A Hugging Face folder as the PyTorch side (pt2ms/running/hf.py): built from config.json, or loaded with its
weights by transformers' own from_pretrained."""

import pytest
import torch

from pt2ms.errors import Pt2MsError
from pt2ms.running.hf import from_folder, load_folder
from tests.hf_folders import old_bert_folder


def test_a_folder_from_older_transformers_loads_as_transformers_loads_it(tmp_path):
    saved = old_bert_folder(tmp_path / "bert")
    loaded = load_folder(tmp_path / "bert")
    assert "embeddings.position_ids" not in loaded.state_dict()
    for name, tensor in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_from_folder_builds_without_the_weights(tmp_path):
    saved = old_bert_folder(tmp_path / "bert")
    built = from_folder(tmp_path / "bert")
    assert built.state_dict().keys() == saved.state_dict().keys()
    assert not torch.equal(built.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight)


def test_a_folder_whose_files_leave_parameters_unloaded_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    old_bert_folder(tmp_path / "bert")
    state = load_file(tmp_path / "bert" / "model.safetensors")
    del state["pooler.dense.weight"]
    save_file(state, tmp_path / "bert" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(Pt2MsError, match=r"its weights do not fill BertModel: missing \['pooler.dense.weight'\]"):
        load_folder(tmp_path / "bert")


def test_a_bfloat16_folder_loads_in_float32_with_its_values(tmp_path):
    saved = old_bert_folder(tmp_path / "bert").to(torch.bfloat16)
    saved.save_pretrained(tmp_path / "bf16")
    loaded = load_folder(tmp_path / "bf16")
    assert loaded.embeddings.word_embeddings.weight.dtype == torch.float32
    assert torch.equal(loaded.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight.float())
