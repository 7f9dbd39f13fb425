"""Hugging Face folders as people have them on disk (saved by an older transformers), for the tests."""

import torch


def old_bert_folder(folder):
    """A tiny BERT saved with save_pretrained, then `embeddings.position_ids` added to its file as older
    transformers saved it (newer ones do not register that buffer)."""
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=37, max_position_embeddings=64, type_vocab_size=2))
    model.save_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    state["embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return model.eval()
