"""A Mixture-of-Experts pair: transformers 5's Qwen3-MoE against a MindSpore port after mindformers 2.1.0's.

PyTorch: `Qwen3MoeForCausalLM` from a tiny config, offline. In memory transformers fuses each layer's experts
into `mlp.experts.gate_up_proj` [E, 2F, H] (gate rows, then up rows) and `mlp.experts.down_proj` [E, H, F];
`save_pretrained` writes them one tensor per expert (`mlp.experts.N.gate_proj.weight` [F, H], `up_proj`,
`down_proj` [H, F]), as Hub folders hold them, and only its own loading fuses them back.

MindSpore: mindformers' parallel_core names (`embedding.word_embeddings`, `decoder.layers.N.self_attention.
linear_qkv` interleaved per key/value group, `linear_proj`, `q_layernorm`, `pre_mlp_layernorm`, `output_layer`)
and its grouped experts (facts.md): `mlp.experts.weight1` [E*H, 2F] holds each expert's gate and up
concatenated (not interleaved) and transposed, `weight2` [E*F, H] each down_proj transposed, `mlp.router.weight`
[E, H] is Hugging Face's `mlp.gate.weight`, and `mlp.router.fi_accu` [E] counts tokens per expert (no source).
Unlike mindformers' own, this port uses plain MindSpore ops (eager attention, dense expert math), so it runs on
a CPU in PyNative mode and stage 4 can compare it.
"""

import numpy as np
import torch
from mindspore import Parameter, Tensor, ops
from mindspore import nn as msnn
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, LAYERS = 32, 16, 4, 2, 4, 2
EXPERTS, TOP_K, EXPERT_FFN = 4, 2, 8
ROPE_THETA, EPS = 10000.0, 1e-6


def moe_config():
    return Qwen3MoeConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=24, moe_intermediate_size=EXPERT_FFN,
                          num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                          head_dim=HEAD_DIM, num_experts=EXPERTS, num_experts_per_tok=TOP_K, norm_topk_prob=True,
                          decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=False,
                          max_position_embeddings=64, rms_norm_eps=EPS, use_cache=False,
                          rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA})


def qwen3_moe_torch():
    """transformers' Qwen3-MoE, seeded (its experts fused in memory)."""
    torch.manual_seed(0)
    model = Qwen3MoeForCausalLM(moe_config()).eval()
    with torch.no_grad():  # router weights large enough that the top-k choice is clear, not a near tie
        for layer in model.model.layers:
            layer.mlp.gate.weight.normal_(0, 0.5)
    return model


def save_folder(folder):
    """The seeded model saved with save_pretrained (one tensor per expert on disk); returns the model."""
    model = qwen3_moe_torch()
    model.save_pretrained(folder)
    return model


# --- the MindSpore port --------------------------------------------------------------------------------

def _normal(shape, seed):
    return Parameter(Tensor(np.random.default_rng(seed).normal(0, 0.02, shape).astype(np.float32)), name="weight")


class _RMSNorm(msnn.Cell):
    def __init__(self, dim):
        super().__init__()
        self.weight = Parameter(Tensor(np.ones(dim, np.float32)), name="weight")

    def construct(self, x):
        return x * ops.rsqrt((x * x).mean(-1, keep_dims=True) + EPS) * self.weight


class _VocabEmbedding(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.weight = _normal((VOCAB, HIDDEN), 1)

    def construct(self, ids):
        return ops.gather(self.weight, ids, 0)


class _Embedding(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.word_embeddings = _VocabEmbedding()

    def construct(self, ids):
        return self.word_embeddings(ids)


def _rotate_half(x):
    half = x.shape[-1] // 2
    return ops.cat((-x[..., half:], x[..., :half]), -1)


class _SelfAttention(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.linear_qkv = msnn.Dense(HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM, has_bias=False)
        self.q_layernorm = _RMSNorm(HEAD_DIM)
        self.k_layernorm = _RMSNorm(HEAD_DIM)
        self.linear_proj = msnn.Dense(HEADS * HEAD_DIM, HIDDEN, has_bias=False)
        self.ascend_only = False
        self.inv_freq = 1.0 / ROPE_THETA ** (np.arange(0, HEAD_DIM, 2, dtype=np.float32) / HEAD_DIM)

    def construct(self, x):
        batch, seq, _ = x.shape
        rep = HEADS // KV_HEADS
        # mindformers' layout: per key/value group, its q heads, then k, then v.
        mixed = self.linear_qkv(x).reshape(batch, seq, KV_HEADS, (rep + 2) * HEAD_DIM)
        q, k, v = ops.split(mixed, [rep * HEAD_DIM, HEAD_DIM, HEAD_DIM], axis=3)
        q = self.q_layernorm(q.reshape(batch, seq, HEADS, HEAD_DIM)).transpose(0, 2, 1, 3)
        k = self.k_layernorm(k).transpose(0, 2, 1, 3)
        v = v.transpose(0, 2, 1, 3)
        freqs = np.outer(np.arange(seq, dtype=np.float32), self.inv_freq)
        angles = np.concatenate([freqs, freqs], -1)
        cos, sin = Tensor(np.cos(angles)), Tensor(np.sin(angles))
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        k, v = ops.repeat_interleave(k, rep, 1), ops.repeat_interleave(v, rep, 1)
        scores = ops.matmul(q, k.transpose(0, 1, 3, 2)) * HEAD_DIM ** -0.5
        causal = Tensor(np.triu(np.full((seq, seq), -1e9, np.float32), 1))
        if self.ascend_only:  # the fused kernel mindformers calls; MindSpore's CPU backend has none
            out = ops.flash_attention_score(q, k, v, HEADS, input_layout="BNSD")
        out = ops.matmul(ops.softmax(scores + causal, -1), v)
        return self.linear_proj(out.transpose(0, 2, 1, 3).reshape(batch, seq, HEADS * HEAD_DIM))


class _Router(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.weight = _normal((EXPERTS, HIDDEN), 2)
        # mindformers' running count of tokens per expert (load balancing): state, not a weight.
        self.fi_accu = Parameter(Tensor(np.zeros(EXPERTS, np.float32)), name="fi_accu", requires_grad=False)

    def construct(self, x):
        """(logits, the top-k softmax probabilities renormalised, their experts), as transformers' router."""
        logits = ops.matmul(x, self.weight.T)
        values, indices = ops.topk(ops.softmax(logits, -1), TOP_K)
        return logits, values / values.sum(-1, keepdims=True), indices


class _GroupedExperts(msnn.Cell):
    """mindformers' GroupedMLP layout: all experts in two matrices, each expert a block of rows."""

    def __init__(self, interleaved=False):
        super().__init__()
        self.interleaved = interleaved
        self.weight1 = _normal((EXPERTS * HIDDEN, 2 * EXPERT_FFN), 3)
        self.weight2 = _normal((EXPERTS * EXPERT_FFN, HIDDEN), 4)

    def construct(self, x, indices, values):
        expert_weights = (ops.one_hot(indices, EXPERTS, Tensor(1.0), Tensor(0.0)) * values.expand_dims(-1)).sum(1)
        gate_up = ops.matmul(x, self.weight1.reshape(EXPERTS, HIDDEN, 2 * EXPERT_FFN))    # [E, T, 2F]
        if self.interleaved:  # another family's layout: gate and up alternate column by column
            gate, up = gate_up[..., 0::2], gate_up[..., 1::2]
        else:
            gate, up = ops.split(gate_up, [EXPERT_FFN, EXPERT_FFN], axis=-1)             # concatenated halves
        out = ops.matmul(ops.silu(gate) * up, self.weight2.reshape(EXPERTS, EXPERT_FFN, HIDDEN))  # [E, T, H]
        return (out * expert_weights.T.expand_dims(-1)).sum(0)


class _MoE(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.router = _Router()
        self.experts = _GroupedExperts()

    def construct(self, x):
        tokens = x.reshape(-1, HIDDEN)
        _, values, indices = self.router(tokens)
        return self.experts(tokens, indices, values).reshape(x.shape)


class _Layer(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.input_layernorm = _RMSNorm(HIDDEN)
        self.self_attention = _SelfAttention()
        self.pre_mlp_layernorm = _RMSNorm(HIDDEN)
        self.mlp = _MoE()

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


class Qwen3MoeMindformers(msnn.Cell):
    """mindformers 2.1.0 Qwen3-MoE's names and expert layout, at toy size; returns what transformers returns."""

    def __init__(self):
        super().__init__()
        self.embedding = _Embedding()
        self.decoder = _Decoder()
        self.output_layer = msnn.Dense(HIDDEN, VOCAB, has_bias=False)

    def construct(self, input_ids):
        return {"logits": self.output_layer(self.decoder(self.embedding(input_ids)))}


def qwen3_moe_ms():
    return Qwen3MoeMindformers()


def qwen3_moe_ms_ascend():
    """The port calling FlashAttentionScore as mindformers' does: its forward fails on a CPU, no probe runs."""
    net = Qwen3MoeMindformers()
    for layer in net.decoder.layers:
        layer.self_attention.ascend_only = True
    return net


def qwen3_moe_ms_interleaved():
    """The same port with each expert's gate and up columns interleaved: only the probe can tell."""
    net = Qwen3MoeMindformers()
    for layer in net.decoder.layers:
        layer.mlp.experts.interleaved = True
    return net


# --- what a right map holds -----------------------------------------------------------------------------

def expert_entries(hf, fused):
    """weight1 / weight2 entries of one layer (hf: its "model.layers.N.mlp" prefix), per-expert or fused source."""
    e, f, h = EXPERTS, EXPERT_FFN, HIDDEN
    if fused:
        return ({"torch": f"{hf}.experts.gate_up_proj", "transform": f"transpose(1, 2) | reshape({e * h}, {2 * f})"},
                {"torch": f"{hf}.experts.down_proj", "transform": f"transpose(1, 2) | reshape({e * f}, {h})"})
    gate_up = [f"{hf}.experts.{i}.{part}.weight" for i in range(e) for part in ("gate_proj", "up_proj")]
    down = [f"{hf}.experts.{i}.down_proj.weight" for i in range(e)]
    return ({"torch": gate_up, "transform": f"cat(0) | reshape({e}, {2 * f}, {h}) | transpose(1, 2) | "
                                            f"reshape({e * h}, {2 * f})"},
            {"torch": down, "transform": f"cat(0) | reshape({e}, {h}, {f}) | transpose(1, 2) | reshape({e * f}, {h})"})


def qwen3_moe_reference(fused):
    """mindformers name -> Hugging Face entry (None: no source), for the per-expert files or the fused state."""
    kv_rows = KV_HEADS * HEAD_DIM
    qkv = f"cat(0) | interleave({KV_HEADS}, 0, {HEADS * HEAD_DIM}, {kv_rows}, {kv_rows})"
    reference = {"embedding.word_embeddings.weight": "model.embed_tokens.weight",
                 "decoder.final_layernorm.weight": "model.norm.weight", "output_layer.weight": "lm_head.weight"}
    for i in range(LAYERS):
        ms, hf = f"decoder.layers.{i}", f"model.layers.{i}"
        weight1, weight2 = expert_entries(f"{hf}.mlp", fused)
        reference.update({
            f"{ms}.input_layernorm.weight": f"{hf}.input_layernorm.weight",
            f"{ms}.self_attention.linear_qkv.weight": {"torch": [f"{hf}.self_attn.{p}_proj.weight" for p in "qkv"],
                                                       "transform": qkv},
            f"{ms}.self_attention.q_layernorm.weight": f"{hf}.self_attn.q_norm.weight",
            f"{ms}.self_attention.k_layernorm.weight": f"{hf}.self_attn.k_norm.weight",
            f"{ms}.self_attention.linear_proj.weight": f"{hf}.self_attn.o_proj.weight",
            f"{ms}.pre_mlp_layernorm.weight": f"{hf}.post_attention_layernorm.weight",
            f"{ms}.mlp.router.weight": f"{hf}.mlp.gate.weight",
            f"{ms}.mlp.router.fi_accu": None,
            f"{ms}.mlp.experts.weight1": weight1,
            f"{ms}.mlp.experts.weight2": weight2,
        })
    return reference
