"""Building and loading the two models from a config (pt2ms/running/models.py)."""

import torch

from pt2ms.config import load_config
from pt2ms.running.models import load_torch
from tests.conftest import write_config


def tiny_tied_llama():
    """A Hugging Face LLaMA whose LM head is tied to its embedding (tie_word_embeddings=True)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def test_a_tied_weight_saved_once_loads_into_both_places(tmp_path):
    saved = tiny_tied_llama()
    with torch.no_grad():
        saved.model.embed_tokens.weight.normal_()
    saved.save_pretrained(tmp_path / "hf")  # writes the tied tensor once, under the embedding's name
    config = load_config(write_config(tmp_path, torch_model="tests.running.test_models:tiny_tied_llama",
                                      checkpoint="hf/model.safetensors"))
    loaded = load_torch(config)
    assert torch.equal(loaded.lm_head.weight, saved.model.embed_tokens.weight)
    assert torch.equal(loaded.model.embed_tokens.weight, saved.model.embed_tokens.weight)
