"""A Megatron-named MindSpore port (after mindformers' parallel_core Qwen3) against Hugging Face's Qwen3.

The port's names are mindformers' parallel_core ones: `embedding.word_embeddings`, `decoder.layers.N.
input_layernorm`, `self_attention.linear_qkv` (q, k, v interleaved per key/value group), `linear_proj` (the
output projection), `q_layernorm`/`k_layernorm`, `pre_mlp_layernorm`, `mlp.linear_fc1` (gate and up row by
row), `linear_fc2`, `decoder.final_layernorm`, `output_layer`. Like the real port, its attention calls a fused
kernel MindSpore has only on Ascend (`FlashAttentionScore`), so on a CPU its forward fails for real, as the
numeric probe finds it. q_proj and o_proj have one shape (hidden = heads * head_dim), which is what misled
names and shapes alone (`linear_proj <- q_proj`).
"""

import numpy as np
import torch
from mindspore import Parameter, Tensor, ops
from mindspore import nn as msnn
from transformers import Qwen3Config, Qwen3ForCausalLM

VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTERMEDIATE, LAYERS = 32, 16, 4, 2, 4, 40, 2


class TinyQwen3(Qwen3ForCausalLM):
    """Hugging Face's Qwen3, returning the logits (the pipeline compares tensors, not ModelOutput)."""

    def forward(self, input_ids):
        return super().forward(input_ids=input_ids, use_cache=False).logits


def qwen3_torch():
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                         head_dim=HEAD_DIM, tie_word_embeddings=False, max_position_embeddings=64)
    return TinyQwen3(config).eval()


def _normal(shape):
    return Parameter(Tensor(np.random.default_rng(len(shape)).normal(0, 0.02, shape).astype(np.float32)), name="weight")


class _RMSNorm(msnn.Cell):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = Parameter(Tensor(np.ones(dim, np.float32)), name="weight")
        self.eps = eps

    def construct(self, x):
        return x * ops.rsqrt((x * x).mean(-1, keep_dims=True) + self.eps) * self.weight


class _VocabEmbedding(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.weight = _normal((VOCAB, HIDDEN))

    def construct(self, ids):
        return ops.gather(self.weight, ids, 0)


class _Embedding(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.word_embeddings = _VocabEmbedding()

    def construct(self, ids):
        return self.word_embeddings(ids)


class _SelfAttention(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.linear_qkv = msnn.Dense(HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM, has_bias=False)
        self.q_layernorm = _RMSNorm(HEAD_DIM)
        self.k_layernorm = _RMSNorm(HEAD_DIM)
        self.linear_proj = msnn.Dense(HEADS * HEAD_DIM, HIDDEN, has_bias=False)

    def construct(self, x):
        batch, seq, _ = x.shape
        rep = HEADS // KV_HEADS
        # mindformers' layout: per key/value group, its q heads, then k, then v.
        mixed = self.linear_qkv(x).reshape(batch, seq, KV_HEADS, (rep + 2) * HEAD_DIM)
        q, k, v = ops.split(mixed, [rep * HEAD_DIM, HEAD_DIM, HEAD_DIM], axis=3)
        q = self.q_layernorm(q.reshape(batch, seq, HEADS, HEAD_DIM)).transpose(0, 2, 1, 3)
        k = self.k_layernorm(k).transpose(0, 2, 1, 3)
        v = v.transpose(0, 2, 1, 3)
        # The fused Ascend kernel the real port calls; MindSpore's CPU backend has none ("unregistered").
        out = ops.flash_attention_score(q.astype(np.float16), k.astype(np.float16), v.astype(np.float16), HEADS,
                                        input_layout="BNSD")
        return self.linear_proj(out.astype(x.dtype).transpose(0, 2, 1, 3).reshape(batch, seq, HEADS * HEAD_DIM))


class _MLP(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.linear_fc1 = msnn.Dense(HIDDEN, 2 * INTERMEDIATE, has_bias=False)
        self.linear_fc2 = msnn.Dense(INTERMEDIATE, HIDDEN, has_bias=False)

    def construct(self, x):
        gate_up = self.linear_fc1(x).reshape(x.shape[0], x.shape[1], INTERMEDIATE, 2)  # rows g0, u0, g1, u1, ...
        return self.linear_fc2(ops.silu(gate_up[..., 0]) * gate_up[..., 1])


class _Layer(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.input_layernorm = _RMSNorm(HIDDEN)
        self.self_attention = _SelfAttention()
        self.pre_mlp_layernorm = _RMSNorm(HIDDEN)
        self.mlp = _MLP()

    def construct(self, x):
        x = x + self.self_attention(self.input_layernorm(x))
        return x + self.mlp(self.pre_mlp_layernorm(x))


class _Decoder(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.layers = msnn.CellList([_Layer() for _ in range(LAYERS)])
        self.final_layernorm = _RMSNorm(HIDDEN)

    def construct(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.final_layernorm(x)


class Qwen3Megatron(msnn.Cell):
    """mindformers parallel_core Qwen3's names and layouts, at toy size."""

    def __init__(self):
        super().__init__()
        self.embedding = _Embedding()
        self.decoder = _Decoder()
        self.output_layer = msnn.Dense(HIDDEN, VOCAB, has_bias=False)

    def construct(self, input_ids):
        return self.output_layer(self.decoder(self.embedding(input_ids)))


def qwen3_megatron():
    return Qwen3Megatron()


def qwen3_reference():
    """Megatron name -> HF entry, with mindformers' interleaved fused layouts (facts.md)."""
    kv_rows = KV_HEADS * HEAD_DIM
    qkv = f"cat(0) | interleave({KV_HEADS}, 0, {HEADS * HEAD_DIM}, {kv_rows}, {kv_rows})"
    reference = {"embedding.word_embeddings.weight": "model.embed_tokens.weight",
                 "decoder.final_layernorm.weight": "model.norm.weight", "output_layer.weight": "lm_head.weight"}
    for i in range(LAYERS):
        ms, hf = f"decoder.layers.{i}", f"model.layers.{i}"
        reference.update({
            f"{ms}.input_layernorm.weight": f"{hf}.input_layernorm.weight",
            f"{ms}.self_attention.linear_qkv.weight": {"torch": [f"{hf}.self_attn.{p}_proj.weight" for p in "qkv"],
                                                       "transform": qkv},
            f"{ms}.self_attention.q_layernorm.weight": f"{hf}.self_attn.q_norm.weight",
            f"{ms}.self_attention.k_layernorm.weight": f"{hf}.self_attn.k_norm.weight",
            f"{ms}.self_attention.linear_proj.weight": f"{hf}.self_attn.o_proj.weight",
            f"{ms}.pre_mlp_layernorm.weight": f"{hf}.post_attention_layernorm.weight",
            f"{ms}.mlp.linear_fc1.weight": {"torch": [f"{hf}.mlp.gate_proj.weight", f"{hf}.mlp.up_proj.weight"],
                                            "transform": f"cat(0) | interleave({INTERMEDIATE}, 0, {INTERMEDIATE}, "
                                                         f"{INTERMEDIATE})"},
            f"{ms}.mlp.linear_fc2.weight": f"{hf}.mlp.down_proj.weight",
        })
    return reference
