"""LLM pairs (LLaMA, Qwen2, T5) written after real public code, for judging stage 2's matcher on zoo-like names.

Each factory returns a `tests.pairs.Pair`: a PyTorch model named exactly like Hugging Face transformers,
a MindSpore port named exactly like mindspore-lab/mindformers, and a reference map built by construction
(MindSpore `Parameter.name` -> PyTorch key or a transform object), in the port's parameter order. Sizes
are tiny: hidden 16, two layers, four query heads of 4 in two key/value groups (grouped-query attention,
so k_proj / v_proj are (8, 16) while q_proj / o_proj are (16, 16); one pair has four k/v heads instead),
intermediate 40, vocabulary 20; T5: d_model 16, two heads of 8, d_ff 32, two blocks per stack.

Sources the names (and parameter order) follow; the code is written here, not copied:
- PyTorch. Hugging Face transformers `models/llama/modeling_llama.py` (`LlamaForCausalLM`: `model.embed_tokens`,
  `model.layers.N.self_attn.q_proj/k_proj/v_proj/o_proj`, `mlp.gate_proj/up_proj/down_proj`,
  `input_layernorm` / `post_attention_layernorm` (an RMSNorm `weight`), `model.norm`, `model.rotary_emb`
  holding a non-persistent `inv_freq`, `lm_head`), and `models/qwen2/modeling_qwen2.py` (the same, with
  biases on q/k/v_proj but not o_proj, `lm_head.weight` tied to `model.embed_tokens.weight` as in
  Qwen2-0.5B: the state dict lists both keys).
- MindSpore. mindspore-lab/mindformers `mindformers/models/llama/llama.py` (`LlamaForCausalLM.model` /
  `lm_head`; `LlamaModel` declares `freqs_mgr`, `casual_mask`, `tok_embeddings`, then `layers` (a CellList
  created empty and appended to), then `norm_out`; with `tie_word_embeddings` the head's weight IS
  `model.tok_embeddings.embedding_weight`, so the port lists no `lm_head.weight`), `llama_transformer.py`
  (`LLamaDecodeLayer` declares `ffn_norm` BEFORE `attention_norm`, then `attention`, `feed_forward`;
  `LLamaAttention` holds `wq`/`wk`/`wv` or, with `qkv_concat`, one `w_qkv` of out size hidden + 2 * kv_dim,
  then `wo`; in mindformers 2.x `w_qkv`'s output is reshaped to (bs, seq, n_kv_head, (n_rep + 2) * head_dim)
  and split (n_rep * head_dim, head_dim, head_dim) on the last axis, so its rows run per key/value group:
  [q heads of group 0, k_0, v_0, q heads of group 1, k_1, v_1, ...], the bias likewise; as does
  `parallel_core/.../attention.py` `SelfAttention.linear_qkv`), `llama_layer.py`
  (`LlamaEmbedding.embedding_weight`, `LlamaRMSNorm.weight`, `LlamaFeedForward` declaring `w1` (gate, with
  the SiLU), `w2` (down), `w3` (up), or with `ffn_concat` (set from qkv_concat) `w_gate_hidden` then `w2`;
  2.x reshapes `w_gate_hidden`'s output to (bs, seq, hidden_dim, 2) and splits (1, 1) on the last axis, so
  its rows alternate gate_0, up_0, gate_1, up_1, ...),
  `mindformers/modules/layers.py` (`Linear`: weight (out, in), `FreqsMgr` / `RotaryEmbedding`: cos/sin of
  cat(freqs, freqs) and rotate-half through a swap-mask matmul, the same rotation as HF's rotate_half).
  Names and layouts agree with mindformers' `models/llama/convert_weight.py` (`name_replace`: gate_proj ->
  w1, down_proj -> w2, up_proj -> w3, no transposes, no q/k permute for HF weights;
  the 1.x `convert_qkv_concat_weight` stacked w_qkv = concatenate((wq, wk, wv), 0); the 2.x layers above read
  the interleaved layout instead, which is what these ports compute with) and `research/qwen2/convert_weight.py` (Qwen2 uses mindformers'
  LlamaForCausalLM with `qkv_has_bias`; `research/qwen2/qwen2_0_5b/*.yaml`: n_kv_heads 2 of 14 heads,
  tie_word_embeddings True, qkv_concat False for finetuning and True for prediction).
- T5. PyTorch: Hugging Face transformers `models/t5/modeling_t5.py` (`T5ForConditionalGeneration`: `shared`,
  `encoder`/`decoder` `T5Stack`s whose `embed_tokens` and the `lm_head` are the same tensor, `block.N.layer.0
  .SelfAttention.q/k/v/o`, block 0's `relative_attention_bias`, `layer.1.EncDecAttention` in the decoder,
  `layer.-1.DenseReluDense.wi/wo`, `layer.N.layer_norm` (RMS, weight only), `final_layer_norm`). MindSpore:
  mindspore-lab/mindformers `mindformers/models/t5/t5.py` (`t5_model.tfm_embedding_lookup.embedding_table`,
  `tfm_encoder.blocks.N` with `layernorm1`, `layernorm2`, `attention` (`projection` declared before
  `dense1/2/3`, block 0's `bias_generator.embeddings_table`), `output.mapping/projection`; decoder blocks add
  `cross_attention` (block 0: a zero `cross_bias` Parameter) and `cross_attention_layernorm`; the final
  `encoder_layernorm` / `decoder_layernorm` declared after both stacks; logits from the embedding table scaled by
  d_model ** -0.5) and its `convert_weight.py` (the name table; '.o.', '.wi.', '.wo.' transposed because
  projection / mapping are mindformers `Linear`s with transpose_b=False, stored (in, out)).

Deliberate deviations, the same on both sides, so parity checks stay strict: attention uses a sigmoid
instead of a softmax with a multiplicative causal mask (as in tests/zoo_transformer_pairs.py; a softmax
would hide a mis-mapped key bias), no dropout, no KV cache, float32 everywhere.
"""
import math

import numpy as np
import torch
from mindspore import Parameter, Tensor, ops
from mindspore import nn as msnn
from mindspore.ops import operations as P
from torch import nn as tnn
from torch.nn import functional as F

from tests.pairs import Pair
from tests.zoo_transformer_pairs import _MfVocabEmbedding, _named

VOCAB, HIDDEN, HEADS, KV_HEADS, INTERMEDIATE, LAYERS, SEQ = 20, 16, 4, 2, 40, 2, 6
EPS, THETA = 1e-6, 10000.0


# ================================================================ PyTorch: HF LlamaForCausalLM / Qwen2ForCausalLM

def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _repeat_kv(x, n_rep):
    b, n_kv, s, d = x.shape
    return x if n_rep == 1 else x[:, :, None].expand(b, n_kv, n_rep, s, d).reshape(b, n_kv * n_rep, s, d)


class _HFRMSNorm(tnn.Module):
    def __init__(self, hidden, eps):
        super().__init__()
        self.weight = tnn.Parameter(torch.ones(hidden))
        self.variance_epsilon = eps

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.variance_epsilon))


class _HFRotaryEmbedding(tnn.Module):
    def __init__(self, head_dim, theta):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids):
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


class _HFAttention(tnn.Module):
    def __init__(self, hidden, heads, kv_heads, qkv_bias):
        super().__init__()
        self.head_dim = hidden // heads
        self.num_heads, self.num_key_value_heads = heads, kv_heads
        self.scaling = self.head_dim ** -0.5
        self.q_proj = tnn.Linear(hidden, heads * self.head_dim, bias=qkv_bias)
        self.k_proj = tnn.Linear(hidden, kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = tnn.Linear(hidden, kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = tnn.Linear(heads * self.head_dim, hidden, bias=False)

    def forward(self, x, cos, sin, causal):
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        n_rep = self.num_heads // self.num_key_value_heads
        k, v = _repeat_kv(k, n_rep), _repeat_kv(v, n_rep)
        weights = torch.sigmoid(q @ k.transpose(2, 3) * self.scaling) * causal
        return self.o_proj((weights @ v).transpose(1, 2).reshape(b, n, -1))


class _HFMLP(tnn.Module):
    def __init__(self, hidden, intermediate):
        super().__init__()
        self.gate_proj = tnn.Linear(hidden, intermediate, bias=False)
        self.up_proj = tnn.Linear(hidden, intermediate, bias=False)
        self.down_proj = tnn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _HFFusedAttention(_HFAttention):
    """Phi-3's attention (transformers `models/phi3/modeling_phi3.py`): one `qkv_proj` whose rows are q, k, v
    stacked [n_heads * head_dim, n_kv * head_dim, n_kv * head_dim], sliced apart in forward."""

    def __init__(self, hidden, heads, kv_heads, qkv_bias):
        tnn.Module.__init__(self)
        self.head_dim = hidden // heads
        self.num_heads, self.num_key_value_heads = heads, kv_heads
        self.scaling = self.head_dim ** -0.5
        self.qkv_proj = tnn.Linear(hidden, (heads + 2 * kv_heads) * self.head_dim, bias=qkv_bias)
        self.o_proj = tnn.Linear(heads * self.head_dim, hidden, bias=False)

    def forward(self, x, cos, sin, causal):
        qkv = self.qkv_proj(x)
        q_end, kv = self.num_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        parts = qkv[..., :q_end], qkv[..., q_end:q_end + kv], qkv[..., q_end + kv:]
        return self._attend(*parts, cos, sin, causal)

    def _attend(self, q, k, v, cos, sin, causal):
        b, n, _ = q.shape
        q, k, v = (t.reshape(b, n, -1, self.head_dim).transpose(1, 2) for t in (q, k, v))
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        n_rep = self.num_heads // self.num_key_value_heads
        k, v = _repeat_kv(k, n_rep), _repeat_kv(v, n_rep)
        weights = torch.sigmoid(q @ k.transpose(2, 3) * self.scaling) * causal
        return self.o_proj((weights @ v).transpose(1, 2).reshape(b, n, -1))


class _HFFusedMLP(tnn.Module):
    """Phi-3's MLP: one `gate_up_proj`, gate rows then up rows, cut by chunk(2)."""

    def __init__(self, hidden, intermediate):
        super().__init__()
        self.gate_up_proj = tnn.Linear(hidden, 2 * intermediate, bias=False)
        self.down_proj = tnn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(up * F.silu(gate))


class _HFDecoderLayer(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = cfg["Attention"](HIDDEN, HEADS, cfg["kv_heads"], cfg["qkv_bias"])
        self.mlp = cfg["MLP"](HIDDEN, INTERMEDIATE)
        self.input_layernorm = cfg["RMSNorm"](HIDDEN, EPS)
        self.post_attention_layernorm = cfg["RMSNorm"](HIDDEN, EPS)

    def forward(self, x, cos, sin, causal):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, causal)
        return x + self.mlp(self.post_attention_layernorm(x))


class _HFKeywordDecoderLayer(_HFDecoderLayer):
    """transformers 5's LlamaDecoderLayer calls its attention by keyword (`self.self_attn(hidden_states=...)`),
    so a forward hook sees no positional input there: the attention alone cannot be fed PyTorch's input."""

    def forward(self, x, cos, sin, causal):
        x = x + self.self_attn(x=self.input_layernorm(x), cos=cos, sin=sin, causal=causal)
        return x + self.mlp(self.post_attention_layernorm(x))


class _HFModel(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = tnn.Embedding(VOCAB, HIDDEN)
        self.layers = tnn.ModuleList([cfg["DecoderLayer"](cfg) for _ in range(LAYERS)])
        self.norm = cfg["RMSNorm"](HIDDEN, EPS)
        self.rotary_emb = cfg["RotaryEmbedding"](HIDDEN // HEADS, THETA)

    def forward(self, ids):
        n = ids.shape[1]
        cos, sin = self.rotary_emb(torch.arange(n).unsqueeze(0))
        causal = torch.tril(torch.ones(n, n))
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, causal)
        return self.norm(x)


class _HFForCausalLM(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.model = cfg["Model"](cfg)
        self.lm_head = tnn.Linear(HIDDEN, VOCAB, bias=False)
        if cfg["tie_word_embeddings"]:
            self.lm_head.weight = self.model.embed_tokens.weight  # tie_weights(): two keys, one storage

    def forward(self, ids):
        return self.lm_head(self.model(ids))


def _hf_family(prefix, attention=_HFAttention, mlp=_HFMLP, decoder=_HFDecoderLayer):
    """The HF classes of one model family, named as there (Llama*, Qwen2*): the matcher sees class names."""
    return {part: _named(f"{prefix}{part}")(type(f"{prefix}{part}", (base,), {}))
            for part, base in (("RMSNorm", _HFRMSNorm), ("RotaryEmbedding", _HFRotaryEmbedding),
                               ("Attention", attention), ("MLP", mlp), ("DecoderLayer", decoder),
                               ("Model", _HFModel), ("ForCausalLM", _HFForCausalLM))}


_LLAMA = _hf_family("Llama")
_QWEN2 = _hf_family("Qwen2")
_PHI3 = _hf_family("Phi3", attention=_HFFusedAttention, mlp=_HFFusedMLP)


def _hf_llama(kv_heads=KV_HEADS):
    return _LLAMA["ForCausalLM"]({**_LLAMA, "kv_heads": kv_heads, "qkv_bias": False, "tie_word_embeddings": False})


def _hf_llama_keywords():
    family = _hf_family("Llama", decoder=_HFKeywordDecoderLayer)
    return family["ForCausalLM"]({**family, "kv_heads": KV_HEADS, "qkv_bias": False, "tie_word_embeddings": False})


def _hf_phi3(qkv_bias=False):
    return _PHI3["ForCausalLM"]({**_PHI3, "kv_heads": KV_HEADS, "qkv_bias": qkv_bias, "tie_word_embeddings": False})


def _hf_qwen2():
    return _QWEN2["ForCausalLM"]({**_QWEN2, "kv_heads": KV_HEADS, "qkv_bias": True, "tie_word_embeddings": True})


# ================================================================ MindSpore: mindformers LlamaForCausalLM

def _normal(shape, std=0.02):
    return Tensor(np.random.normal(0, std, shape).astype(np.float32))


@_named("LlamaSiLU")
class _MfLlamaSiLU(msnn.Cell):
    def construct(self, x):
        return x * ops.sigmoid(x)


@_named("Linear")
class _MfLinear(msnn.Cell):
    """mindformers.modules.layers.Linear: weight (out, in) with transpose_b=True (LLaMA's layers, T5's dense1/2/3),
    (in, out) with transpose_b=False (T5's projection / mapping); optional bias; activation as a Cell class."""

    def __init__(self, in_channels, out_channels, has_bias=True, activation=None, transpose_b=True):
        super().__init__()
        self.in_channels, self.out_channels, self.transpose_b = in_channels, out_channels, transpose_b
        shape = (out_channels, in_channels) if transpose_b else (in_channels, out_channels)
        self.weight = Parameter(_normal(shape), name="weight")
        self.has_bias = has_bias
        if has_bias:
            self.bias = Parameter(Tensor(np.zeros(out_channels, np.float32)), name="bias")
        self.activation_flag = activation is not None
        if self.activation_flag:
            self.activation = activation()
        self.matmul = P.MatMul(transpose_b=transpose_b)

    def construct(self, x):
        out_shape = x.shape[:-1] + (self.out_channels,)
        x = self.matmul(x.reshape(-1, self.in_channels), self.weight)
        if self.has_bias:
            x = x + self.bias
        if self.activation_flag:
            x = self.activation(x)
        return x.reshape(out_shape)


@_named("LlamaEmbedding")
class _MfLlamaEmbedding(msnn.Cell):
    def __init__(self, vocab_table_size, embedding_size):
        super().__init__()
        self.embedding_weight = Parameter(_normal((vocab_table_size, embedding_size)), name="embedding_weight")
        self.gather = P.Gather()

    def construct(self, input_ids):
        return self.gather(self.embedding_weight, input_ids, 0)


@_named("LlamaRMSNorm")
class _MfLlamaRMSNorm(msnn.Cell):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(Tensor(np.ones((dim,), np.float32)), parallel_optimizer=False)

    def construct(self, x):
        norm_factor = ops.rsqrt(ops.square(x).mean(-1, keep_dims=True) + self.eps)
        return x * norm_factor * self.weight


@_named("FreqsMgr")
class _MfFreqsMgr(msnn.Cell):
    """mindformers.modules.layers.FreqsMgr: cos/sin tables of cat(freqs, freqs) and a swap mask; no Parameters."""

    def __init__(self, head_dim, seq_length, theta):
        super().__init__()
        freqs_base = np.arange(0, head_dim, 2)[: (head_dim // 2)].astype(np.float32)
        freqs = np.outer(np.arange(0, seq_length, 1).astype(np.float32), 1.0 / (theta ** (freqs_base / head_dim)))
        emb = np.concatenate((freqs, freqs), axis=-1)
        self.head_dim = head_dim
        self.freqs_cos = Tensor(np.cos(emb).astype(np.float32))
        self.freqs_sin = Tensor(np.sin(emb).astype(np.float32))
        zero_block = np.zeros((head_dim // 2, head_dim // 2), dtype=np.float32)
        id_block = np.identity(head_dim // 2, dtype=np.float32)
        self.swap_mask = Tensor(np.block([[zero_block, id_block], [-id_block, zero_block]]))

    def construct(self, seq_length):
        return self.freqs_cos[:seq_length], self.freqs_sin[:seq_length], self.swap_mask


@_named("RotaryEmbedding")
class _MfRotaryEmbedding(msnn.Cell):
    def __init__(self):
        super().__init__(auto_prefix=False)
        self.bmm_swap = P.BatchMatMul()

    def construct(self, xq, xk, freqs_cis):
        freqs_cos, freqs_sin, swap_mask = freqs_cis
        xq_out = xq * freqs_cos + ops.matmul(xq, swap_mask) * freqs_sin
        xk_out = xk * freqs_cos + ops.matmul(xk, swap_mask) * freqs_sin
        return xq_out, xk_out


@_named("LLamaAttention")
class _MfLLamaAttention(msnn.Cell):
    def __init__(self, dim, n_heads, n_kv_heads, qkv_concat, qkv_has_bias):
        super().__init__()
        self.hidden_size, self.n_head, self.n_kv_head = dim, n_heads, n_kv_heads
        self.head_dim = dim // n_heads
        self.n_rep = n_heads // n_kv_heads
        self.kv_dim = n_kv_heads * self.head_dim
        self.qkv_concat = qkv_concat
        if qkv_concat:
            self.w_qkv = _MfLinear(dim, dim + self.kv_dim * 2, has_bias=qkv_has_bias)
        else:
            self.wq = _MfLinear(dim, dim, has_bias=qkv_has_bias)
            self.wk = _MfLinear(dim, self.kv_dim, has_bias=qkv_has_bias)
            self.wv = _MfLinear(dim, self.kv_dim, has_bias=qkv_has_bias)
        self.wo = _MfLinear(dim, dim, has_bias=False)
        self.inv_norm_factor = 1.0 / math.sqrt(self.head_dim)
        self.apply_rotary_emb = _MfRotaryEmbedding()

    def _repeat_kv(self, x):
        if self.n_rep == 1:
            return x
        bs, n_kv_head, seqlen, head_dim = x.shape
        x = ops.tile(x.reshape(bs, n_kv_head, 1, seqlen * head_dim), (1, 1, self.n_rep, 1))
        return x.reshape(bs, n_kv_head * self.n_rep, seqlen, head_dim)

    def construct(self, x, freqs_cis, mask):
        bs, seq_len, _ = x.shape
        if self.qkv_concat:  # mindformers 2.x: rows grouped per key/value head
            qkv = self.w_qkv(x).reshape(bs, seq_len, self.n_kv_head, (self.n_rep + 2) * self.head_dim)
            query, key, value = ops.split(qkv, (self.head_dim * self.n_rep, self.head_dim, self.head_dim), 3)
            query = query.reshape(bs, seq_len, self.hidden_size)
            key, value = key.reshape(bs, seq_len, self.kv_dim), value.reshape(bs, seq_len, self.kv_dim)
        else:
            query, key, value = self.wq(x), self.wk(x), self.wv(x)
        query = query.reshape(bs, seq_len, self.n_head, self.head_dim).transpose(0, 2, 1, 3)
        key = key.reshape(bs, seq_len, self.n_kv_head, self.head_dim).transpose(0, 2, 1, 3)
        query, key = self.apply_rotary_emb(query, key, freqs_cis)
        value = value.reshape(bs, seq_len, self.n_kv_head, self.head_dim).transpose(0, 2, 1, 3)
        key, value = self._repeat_kv(key), self._repeat_kv(value)
        score = ops.sigmoid(ops.matmul(query, key.swapaxes(-1, -2)) * self.inv_norm_factor) * mask
        context = ops.matmul(score, value).transpose(0, 2, 1, 3).reshape(bs, seq_len, self.hidden_size)
        return self.wo(context)


@_named("LlamaFeedForward")
class _MfLlamaFeedForward(msnn.Cell):
    def __init__(self, dim, intermediate_size, ffn_concat):
        super().__init__()
        self.hidden_dim, self.ffn_concat = intermediate_size, ffn_concat
        if ffn_concat:
            self.w_gate_hidden = _MfLinear(dim, intermediate_size * 2, has_bias=False)
            self.activate = _MfLlamaSiLU()
            self.w2 = _MfLinear(intermediate_size, dim, has_bias=False)
        else:
            self.w1 = _MfLinear(dim, intermediate_size, has_bias=False, activation=_MfLlamaSiLU)
            self.w2 = _MfLinear(intermediate_size, dim, has_bias=False)
            self.w3 = _MfLinear(dim, intermediate_size, has_bias=False)

    def construct(self, x):
        if self.ffn_concat:  # mindformers 2.x: gate and up alternate row by row
            bs, seq_len, _ = x.shape
            gate_hidden = self.w_gate_hidden(x).reshape(bs, seq_len, self.hidden_dim, 2)
            gate, hidden = ops.split(gate_hidden, (1, 1), 3)
            gate = self.activate(gate.reshape(bs, seq_len, self.hidden_dim))
            hidden = hidden.reshape(bs, seq_len, self.hidden_dim)
        else:
            gate, hidden = self.w1(x), self.w3(x)
        return self.w2(hidden * gate)


@_named("LLamaDecodeLayer")
class _MfLLamaDecodeLayer(msnn.Cell):
    def __init__(self, layer_id, n_kv_heads, qkv_concat, qkv_has_bias):
        super().__init__()
        self.layer_id = layer_id
        self.ffn_norm = _MfLlamaRMSNorm(HIDDEN, EPS)  # declared before attention_norm, as in mindformers
        self.attention_norm = _MfLlamaRMSNorm(HIDDEN, EPS)
        self.attention = _MfLLamaAttention(HIDDEN, HEADS, n_kv_heads, qkv_concat, qkv_has_bias)
        self.feed_forward = _MfLlamaFeedForward(HIDDEN, INTERMEDIATE, ffn_concat=qkv_concat)

    def construct(self, x, freqs_cis, mask):
        h = x + self.attention(self.attention_norm(x), freqs_cis, mask)
        return h + self.feed_forward(self.ffn_norm(h))


@_named("LlamaModel")
class _MfLlamaModel(msnn.Cell):
    def __init__(self, n_kv_heads, qkv_concat, qkv_has_bias):
        super().__init__(auto_prefix=True)
        self.num_layers = LAYERS
        self.freqs_mgr = _MfFreqsMgr(HIDDEN // HEADS, SEQ, THETA)
        self.tok_embeddings = _MfLlamaEmbedding(VOCAB, HIDDEN)
        self.layers = msnn.CellList()
        for layer_id in range(LAYERS):
            self.layers.append(_MfLLamaDecodeLayer(layer_id, n_kv_heads, qkv_concat, qkv_has_bias))
        self.norm_out = _MfLlamaRMSNorm(HIDDEN, EPS)

    def construct(self, tokens):
        seq_len = tokens.shape[1]
        freqs_cis = self.freqs_mgr(seq_len)
        mask = Tensor(np.tril(np.ones((SEQ, SEQ), np.float32)))[:seq_len, :seq_len]
        h = self.tok_embeddings(tokens)
        for i in range(self.num_layers):
            h = self.layers[i](h, freqs_cis, mask)
        return self.norm_out(h)


@_named("LlamaForCausalLM")
class _MfLlamaForCausalLM(msnn.Cell):
    def __init__(self, n_kv_heads=KV_HEADS, qkv_concat=False, qkv_has_bias=False, tie_word_embeddings=False):
        super().__init__(auto_prefix=True)
        self.model = _MfLlamaModel(n_kv_heads, qkv_concat, qkv_has_bias)
        self.lm_head = _MfLinear(HIDDEN, VOCAB, has_bias=False)
        if tie_word_embeddings:
            self.lm_head.weight = self.model.tok_embeddings.embedding_weight

    def construct(self, input_ids):
        return self.lm_head(self.model(input_ids))


# ================================================================ reference maps

def qkv_interleave(kv_heads, heads=HEADS, hidden=HIDDEN):
    """The transform putting stacked q, k, v rows into mindformers 2.x's per-group layout."""
    kv_dim = hidden // heads * kv_heads
    return f"interleave({kv_heads}, 0, {hidden}, {kv_dim}, {kv_dim})"


GATE_UP_INTERLEAVE = f"interleave({INTERMEDIATE}, 0, {INTERMEDIATE}, {INTERMEDIATE})"


def _llama_reference(qkv_concat, qkv_bias, tied, kv_heads=KV_HEADS, fused_torch=False):
    """mindformers name -> HF key, per convert_weight.py's name_replace, fused layers in 2.x's interleaved layout."""
    reference = {"model.tok_embeddings.embedding_weight": "model.embed_tokens.weight"}
    for i in range(LAYERS):
        ms, pt = f"model.layers.{i}", f"model.layers.{i}"
        reference |= {f"{ms}.ffn_norm.weight": f"{pt}.post_attention_layernorm.weight",
                      f"{ms}.attention_norm.weight": f"{pt}.input_layernorm.weight"}
        if qkv_concat and fused_torch:
            reference[f"{ms}.attention.w_qkv.weight"] = {"torch": f"{pt}.self_attn.qkv_proj.weight",
                                                         "transform": qkv_interleave(kv_heads)}
            if qkv_bias:
                reference[f"{ms}.attention.w_qkv.bias"] = {"torch": f"{pt}.self_attn.qkv_proj.bias",
                                                           "transform": qkv_interleave(kv_heads)}
        elif qkv_concat:
            reference[f"{ms}.attention.w_qkv.weight"] = {
                "torch": [f"{pt}.self_attn.{part}_proj.weight" for part in "qkv"],
                "transform": f"cat(0) | {qkv_interleave(kv_heads)}"}
            if qkv_bias:
                reference[f"{ms}.attention.w_qkv.bias"] = {
                    "torch": [f"{pt}.self_attn.{part}_proj.bias" for part in "qkv"],
                    "transform": f"cat(0) | {qkv_interleave(kv_heads)}"}
        else:
            for part in "qkv":
                reference[f"{ms}.attention.w{part}.weight"] = f"{pt}.self_attn.{part}_proj.weight"
                if qkv_bias:
                    reference[f"{ms}.attention.w{part}.bias"] = f"{pt}.self_attn.{part}_proj.bias"
        reference[f"{ms}.attention.wo.weight"] = f"{pt}.self_attn.o_proj.weight"
        if qkv_concat and fused_torch:
            reference |= {f"{ms}.feed_forward.w_gate_hidden.weight": {
                "torch": f"{pt}.mlp.gate_up_proj.weight", "transform": GATE_UP_INTERLEAVE},
                f"{ms}.feed_forward.w2.weight": f"{pt}.mlp.down_proj.weight"}
        elif qkv_concat:
            reference |= {f"{ms}.feed_forward.w_gate_hidden.weight": {
                "torch": [f"{pt}.mlp.gate_proj.weight", f"{pt}.mlp.up_proj.weight"],
                "transform": f"cat(0) | {GATE_UP_INTERLEAVE}"},
                f"{ms}.feed_forward.w2.weight": f"{pt}.mlp.down_proj.weight"}
        else:
            reference |= {f"{ms}.feed_forward.w1.weight": f"{pt}.mlp.gate_proj.weight",
                          f"{ms}.feed_forward.w2.weight": f"{pt}.mlp.down_proj.weight",
                          f"{ms}.feed_forward.w3.weight": f"{pt}.mlp.up_proj.weight"}
    reference["model.norm_out.weight"] = "model.norm.weight"
    if not tied:
        reference["lm_head.weight"] = "lm_head.weight"
    return reference


def llama_hf_vs_mindformers_pair():
    """HF LlamaForCausalLM vs mindformers LlamaForCausalLM (qkv_concat False): renamed everywhere, GQA.

    Every tensor keeps its layout; only names differ (q_proj -> wq, gate_proj -> w1, up_proj -> w3,
    down_proj -> w2, input_layernorm -> attention_norm, ...), and the port declares ffn_norm first.
    Shape twins per layer: q_proj/o_proj (16, 16), k_proj/v_proj (8, 16), gate_proj/up_proj (40, 16), the two
    norms, and embed_tokens/lm_head (20, 16).
    """
    return Pair("llama_hf_vs_mindformers", _hf_llama(), _MfLlamaForCausalLM(),
                _llama_reference(qkv_concat=False, qkv_bias=False, tied=False), [(2, SEQ)], token_vocab=VOCAB)


def llama_hf_vs_mindformers_qkv_concat_pair():
    """The same LLaMA with mindformers 2.x's qkv_concat=True: `attention.w_qkv` holds q, k, v (UNEQUAL: 16 + 8 + 8
    rows under GQA) interleaved per key/value group, `feed_forward.w_gate_hidden` gate_proj and up_proj row by row."""
    return Pair("llama_hf_vs_mindformers_qkv_concat", _hf_llama(), _MfLlamaForCausalLM(qkv_concat=True),
                _llama_reference(qkv_concat=True, qkv_bias=False, tied=False), [(2, SEQ)], token_vocab=VOCAB)


def llama_mha_hf_vs_mindformers_qkv_concat_pair():
    """qkv_concat=True without grouped-query attention (num_key_value_heads == num_heads, as LLaMA-2-7B/13B):
    `attention.w_qkv` = three EQUAL (16, 16) pieces interleaved per head (4 groups of one q, k and v head each),
    each the shape of o_proj too; w_gate_hidden as above."""
    return Pair("llama_mha_hf_vs_mindformers_qkv_concat", _hf_llama(kv_heads=HEADS),
                _MfLlamaForCausalLM(n_kv_heads=HEADS, qkv_concat=True),
                _llama_reference(qkv_concat=True, qkv_bias=False, tied=False, kv_heads=HEADS), [(2, SEQ)],
                token_vocab=VOCAB)


def qwen2_hf_vs_mindformers_pair():
    """HF Qwen2ForCausalLM (q/k/v biases, tied lm_head) vs mindformers LlamaForCausalLM as configured for
    Qwen2-0.5B finetuning (qkv_has_bias, tie_word_embeddings, qkv_concat False).

    The port has no `lm_head.weight` (its head uses the embedding table), so HF's tied `lm_head.weight`
    stays unused; `model.tok_embeddings.embedding_weight` takes `model.embed_tokens.weight`, the key a
    tied HF checkpoint (safetensors) actually stores.
    """
    return Pair("qwen2_hf_vs_mindformers", _hf_qwen2(), _MfLlamaForCausalLM(qkv_has_bias=True, tie_word_embeddings=True),
                _llama_reference(qkv_concat=False, qkv_bias=True, tied=True), [(2, SEQ)], token_vocab=VOCAB,
                torch_unmapped=("lm_head.weight",))


def qwen2_hf_vs_mindformers_qkv_concat_pair():
    """The same Qwen2 as mindformers' Qwen2-0.5B predict config runs it (qkv_concat True): w_qkv weight AND
    bias hold unequal q, k, v interleaved per key/value group; w_gate_hidden gate and up row by row; tied head."""
    return Pair("qwen2_hf_vs_mindformers_qkv_concat", _hf_qwen2(),
                _MfLlamaForCausalLM(qkv_concat=True, qkv_has_bias=True, tie_word_embeddings=True),
                _llama_reference(qkv_concat=True, qkv_bias=True, tied=True), [(2, SEQ)], token_vocab=VOCAB,
                torch_unmapped=("lm_head.weight",))


def phi3_hf_vs_mindformers_qkv_concat_pair():
    """HF Phi-3 layout (fused `qkv_proj` stacked q, k, v under GQA, with a bias here; fused `gate_up_proj`) vs
    mindformers 2.x LlamaForCausalLM with qkv_concat: the same fused layers, but interleaved per key/value group
    and row by row, so every fused tensor needs `interleave` alone (no cat): same shapes, other row order."""
    return Pair("phi3_hf_vs_mindformers_qkv_concat", _hf_phi3(qkv_bias=True),
                _MfLlamaForCausalLM(qkv_concat=True, qkv_has_bias=True),
                _llama_reference(qkv_concat=True, qkv_bias=True, tied=False, fused_torch=True), [(2, SEQ)],
                token_vocab=VOCAB)


# ================================================================ T5: HF T5ForConditionalGeneration vs mindformers

T5_VOCAB, T5_D_MODEL, T5_HEADS, T5_D_KV, T5_D_FF, T5_LAYERS, T5_SRC, T5_TGT = 20, 16, 2, 8, 32, 2, 6, 5
T5_BUCKETS, T5_MAX_DISTANCE = 32, 128


class _HFT5LayerNorm(tnn.Module):
    def __init__(self, hidden, eps=1e-6):
        super().__init__()
        self.weight = tnn.Parameter(torch.ones(hidden))
        self.variance_epsilon = eps

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.variance_epsilon))


def _hf_relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance):
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    if_large = max_exact + (torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact)
                            * (num_buckets - max_exact)).to(torch.long)
    if_large = torch.min(if_large, torch.full_like(if_large, num_buckets - 1))
    return relative_buckets + torch.where(is_small, relative_position, if_large)


class _HFT5Attention(tnn.Module):
    def __init__(self, is_decoder, has_relative_attention_bias):
        super().__init__()
        self.is_decoder, self.has_relative_attention_bias = is_decoder, has_relative_attention_bias
        self.n_heads, self.key_value_proj_dim = T5_HEADS, T5_D_KV
        inner = T5_HEADS * T5_D_KV
        self.q = tnn.Linear(T5_D_MODEL, inner, bias=False)
        self.k = tnn.Linear(T5_D_MODEL, inner, bias=False)
        self.v = tnn.Linear(T5_D_MODEL, inner, bias=False)
        self.o = tnn.Linear(inner, T5_D_MODEL, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = tnn.Embedding(T5_BUCKETS, T5_HEADS)

    def compute_bias(self, query_length, key_length):
        relative_position = torch.arange(key_length)[None, :] - torch.arange(query_length)[:, None]
        bucket = _hf_relative_position_bucket(relative_position, not self.is_decoder, T5_BUCKETS, T5_MAX_DISTANCE)
        return self.relative_attention_bias(bucket).permute([2, 0, 1]).unsqueeze(0)

    def forward(self, hidden, mask, kv=None, position_bias=None):
        kv = hidden if kv is None else kv
        b = hidden.shape[0]
        heads = lambda t: t.view(b, -1, self.n_heads, self.key_value_proj_dim).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.q(hidden)), heads(self.k(kv)), heads(self.v(kv))
        scores = q @ k.transpose(3, 2)  # T5: no 1/sqrt(d) scaling
        if position_bias is None:
            if self.has_relative_attention_bias:
                position_bias = self.compute_bias(q.shape[2], k.shape[2])
            else:
                position_bias = torch.zeros((1, self.n_heads, q.shape[2], k.shape[2]))
        weights = torch.sigmoid(scores + position_bias) * mask
        return self.o((weights @ v).transpose(1, 2).reshape(b, -1, self.n_heads * self.key_value_proj_dim)), position_bias


class _HFT5LayerSelfAttention(tnn.Module):
    def __init__(self, is_decoder, has_relative_attention_bias):
        super().__init__()
        self.SelfAttention = _HFT5Attention(is_decoder, has_relative_attention_bias)
        self.layer_norm = _HFT5LayerNorm(T5_D_MODEL)
        self.dropout = tnn.Dropout(0.0)

    def forward(self, x, mask, position_bias):
        out, position_bias = self.SelfAttention(self.layer_norm(x), mask, position_bias=position_bias)
        return x + self.dropout(out), position_bias


class _HFT5LayerCrossAttention(tnn.Module):
    def __init__(self):
        super().__init__()
        self.EncDecAttention = _HFT5Attention(True, False)
        self.layer_norm = _HFT5LayerNorm(T5_D_MODEL)
        self.dropout = tnn.Dropout(0.0)

    def forward(self, x, memory, mask, position_bias):
        out, position_bias = self.EncDecAttention(self.layer_norm(x), mask, kv=memory, position_bias=position_bias)
        return x + self.dropout(out), position_bias


class _HFT5DenseActDense(tnn.Module):
    def __init__(self):
        super().__init__()
        self.wi = tnn.Linear(T5_D_MODEL, T5_D_FF, bias=False)
        self.wo = tnn.Linear(T5_D_FF, T5_D_MODEL, bias=False)
        self.dropout = tnn.Dropout(0.0)
        self.act = tnn.ReLU()

    def forward(self, x):
        return self.wo(self.dropout(self.act(self.wi(x))))


class _HFT5LayerFF(tnn.Module):
    def __init__(self):
        super().__init__()
        self.DenseReluDense = _HFT5DenseActDense()
        self.layer_norm = _HFT5LayerNorm(T5_D_MODEL)
        self.dropout = tnn.Dropout(0.0)

    def forward(self, x):
        return x + self.dropout(self.DenseReluDense(self.layer_norm(x)))


class _HFT5Block(tnn.Module):
    def __init__(self, is_decoder, has_relative_attention_bias):
        super().__init__()
        self.is_decoder = is_decoder
        self.layer = tnn.ModuleList([_HFT5LayerSelfAttention(is_decoder, has_relative_attention_bias)])
        if is_decoder:
            self.layer.append(_HFT5LayerCrossAttention())
        self.layer.append(_HFT5LayerFF())

    def forward(self, x, mask, position_bias, memory=None, memory_mask=None, cross_bias=None):
        x, position_bias = self.layer[0](x, mask, position_bias)
        if self.is_decoder:
            x, cross_bias = self.layer[1](x, memory, memory_mask, cross_bias)
        return self.layer[-1](x), position_bias, cross_bias


class _HFT5Stack(tnn.Module):
    def __init__(self, embed_tokens, is_decoder):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.is_decoder = is_decoder
        self.block = tnn.ModuleList([_HFT5Block(is_decoder, has_relative_attention_bias=(i == 0))
                                     for i in range(T5_LAYERS)])
        self.final_layer_norm = _HFT5LayerNorm(T5_D_MODEL)
        self.dropout = tnn.Dropout(0.0)

    def forward(self, ids, memory=None):
        n = ids.shape[1]
        mask = torch.tril(torch.ones(n, n)) if self.is_decoder else torch.ones(n, n)
        memory_mask = torch.ones(n, memory.shape[1]) if memory is not None else None
        x, position_bias, cross_bias = self.dropout(self.embed_tokens(ids)), None, None
        for block in self.block:
            x, position_bias, cross_bias = block(x, mask, position_bias, memory, memory_mask, cross_bias)
        return self.dropout(self.final_layer_norm(x))


class _HFT5ForConditionalGeneration(tnn.Module):
    def __init__(self):
        super().__init__()
        self.model_dim = T5_D_MODEL
        self.shared = tnn.Embedding(T5_VOCAB, T5_D_MODEL)
        self.encoder = _HFT5Stack(self.shared, is_decoder=False)
        self.decoder = _HFT5Stack(self.shared, is_decoder=True)
        self.lm_head = tnn.Linear(T5_D_MODEL, T5_VOCAB, bias=False)
        self.lm_head.weight = self.shared.weight  # tie_word_embeddings (t5-small/base/large)

    def forward(self, input_ids, decoder_input_ids):
        sequence_output = self.decoder(decoder_input_ids, memory=self.encoder(input_ids))
        return self.lm_head(sequence_output * (self.model_dim ** -0.5))


for _cls in (_HFT5LayerNorm, _HFT5Attention, _HFT5LayerSelfAttention, _HFT5LayerCrossAttention, _HFT5DenseActDense,
             _HFT5LayerFF, _HFT5Block, _HFT5Stack, _HFT5ForConditionalGeneration):
    _named(_cls.__name__.removeprefix("_HF"))(_cls)


@_named("LayerNorm")
class _MfT5LayerNorm(msnn.Cell):
    """mindformers.models.t5.t5.LayerNorm: an RMS norm with a lone `gamma`."""

    def __init__(self, normalized_shape, eps=1e-6):
        super().__init__()
        self.gamma = Parameter(Tensor(np.ones(normalized_shape, np.float32)), name="gamma", parallel_optimizer=False)
        self.eps = eps

    def construct(self, x):
        return x / ops.sqrt(ops.square(x).mean(-1, keep_dims=True) + self.eps) * self.gamma


def _ms_relative_bucket(relative_position, bidirectional, num_buckets, max_distance):
    """RelaPosMatrixGenerator's bucketing, in NumPy (static sequence lengths)."""
    bucket = np.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket += (relative_position > 0).astype(np.int64) * num_buckets
        relative_position = np.abs(relative_position)
    else:
        relative_position = -np.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore"):
        if_large = max_exact + (np.log(relative_position.astype(np.float32) / max_exact)
                                / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    if_large = np.minimum(np.nan_to_num(if_large, neginf=0).astype(np.int64), num_buckets - 1)
    return bucket + np.where(relative_position < max_exact, relative_position, if_large)


@_named("RelaPosEmbeddingsGenerator")
class _MfRelaPosEmbeddingsGenerator(msnn.Cell):
    def __init__(self, depth, max_relative_position, is_decoder):
        super().__init__()
        self.embeddings_table = Parameter(_normal((max_relative_position, depth)))
        self.is_decoder = is_decoder

    def construct(self, query_length, key_length):
        relative_position = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]
        bucket = _ms_relative_bucket(relative_position, not self.is_decoder, T5_BUCKETS, T5_MAX_DISTANCE)
        return ops.gather(self.embeddings_table, Tensor(bucket.astype(np.int32)), 0).transpose(2, 0, 1).expand_dims(0)


@_named("T5MultiHeadAttention")
class _MfT5MultiHeadAttention(msnn.Cell):
    def __init__(self, src_seq_length, tgt_seq_length, is_decoder, has_relative_bias, is_cross_atten=False):
        super().__init__()
        self.inner_dim = T5_HEADS * T5_D_KV
        self.projection = _MfLinear(self.inner_dim, T5_D_MODEL, has_bias=False, transpose_b=False)  # declared first
        self.n_head, self.size_per_head = T5_HEADS, T5_D_KV
        self.dense1 = _MfLinear(T5_D_MODEL, self.inner_dim, has_bias=False)  # query
        self.dense2 = _MfLinear(T5_D_MODEL, self.inner_dim, has_bias=False)  # key
        self.dense3 = _MfLinear(T5_D_MODEL, self.inner_dim, has_bias=False)  # value
        self.has_relative_bias, self.is_cross_atten = has_relative_bias, is_cross_atten
        if has_relative_bias:
            if not is_cross_atten:
                self.bias_generator = _MfRelaPosEmbeddingsGenerator(T5_HEADS, 32, is_decoder)
            else:
                self.cross_bias = Parameter(Tensor(np.zeros((1, src_seq_length, tgt_seq_length), np.float32)),
                                            name="cross_attention_bias", parallel_optimizer=False)

    def construct(self, query_tensor, key_tensor, attention_mask, bias=None):
        b = query_tensor.shape[0]
        heads = lambda t: t.reshape(b, -1, self.n_head, self.size_per_head).transpose(0, 2, 1, 3)  # noqa: E731
        query, key, value = heads(self.dense1(query_tensor)), heads(self.dense2(key_tensor)), heads(self.dense3(key_tensor))
        score = ops.matmul(query, key.swapaxes(-1, -2))
        if bias is None and self.has_relative_bias:
            if not self.is_cross_atten:
                bias = self.bias_generator(score.shape[-1], score.shape[-1])
            else:
                bias = self.cross_bias.expand_dims(0)
        probs = ops.sigmoid(score + bias) * attention_mask
        merged = ops.matmul(probs, value).transpose(0, 2, 1, 3).reshape(b, -1, self.inner_dim)
        return self.projection(merged), bias


@_named("T5FeedFoward")
class _MfT5FeedFoward(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.mapping = _MfLinear(T5_D_MODEL, T5_D_FF, has_bias=False, activation=msnn.ReLU, transpose_b=False)
        self.projection = _MfLinear(T5_D_FF, T5_D_MODEL, has_bias=False, transpose_b=False)

    def construct(self, x):
        return self.projection(self.mapping(x))


@_named("TransformerEncoderLayer")
class _MfTransformerEncoderLayer(msnn.Cell):
    def __init__(self, has_bias):
        super().__init__()
        self.layernorm1 = _MfT5LayerNorm((T5_D_MODEL,))
        self.layernorm2 = _MfT5LayerNorm((T5_D_MODEL,))
        self.attention = _MfT5MultiHeadAttention(T5_SRC, T5_SRC, is_decoder=False, has_relative_bias=has_bias)
        self.output = _MfT5FeedFoward()

    def construct(self, x, input_mask, bias):
        attention, bias = self.attention(self.layernorm1(x), self.layernorm1(x), input_mask, bias)
        x = x + attention
        return x + self.output(self.layernorm2(x)), bias


@_named("TransformerDecoderLayer")
class _MfTransformerDecoderLayer(msnn.Cell):
    def __init__(self, has_bias):
        super().__init__()
        self.layernorm1 = _MfT5LayerNorm((T5_D_MODEL,))
        self.layernorm2 = _MfT5LayerNorm((T5_D_MODEL,))
        self.attention = _MfT5MultiHeadAttention(T5_TGT, T5_TGT, is_decoder=True, has_relative_bias=has_bias)
        self.cross_attention = _MfT5MultiHeadAttention(T5_TGT, T5_SRC, is_decoder=True, has_relative_bias=has_bias,
                                                       is_cross_atten=True)
        self.cross_attention_layernorm = _MfT5LayerNorm((T5_D_MODEL,))
        self.output = _MfT5FeedFoward()

    def construct(self, hidden_stats, decoder_mask, encoder_output, memory_mask, self_bias, encoder_attention_bias):
        input_x = self.layernorm1(hidden_stats)
        attention, self_bias = self.attention(input_x, input_x, decoder_mask, self_bias)
        x = hidden_stats + attention
        cross_attn_out, encoder_attention_bias = self.cross_attention(
            self.cross_attention_layernorm(x), encoder_output, memory_mask, encoder_attention_bias)
        x = x + cross_attn_out
        return x + self.output(self.layernorm2(x)), self_bias, encoder_attention_bias


@_named("TransformerEncoder")
class _MfTransformerEncoder(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.num_layers = T5_LAYERS
        self.blocks = msnn.CellList()
        for i in range(T5_LAYERS):
            self.blocks.append(_MfTransformerEncoderLayer(has_bias=(i == 0)))

    def construct(self, hidden_states, attention_mask):
        bias = None
        for i in range(self.num_layers):
            hidden_states, bias = self.blocks[i](hidden_states, attention_mask, bias)
        return hidden_states


@_named("TransformerDecoder")
class _MfTransformerDecoder(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.num_layers = T5_LAYERS
        self.blocks = msnn.CellList()
        for i in range(T5_LAYERS):
            self.blocks.append(_MfTransformerDecoderLayer(has_bias=(i == 0)))

    def construct(self, hidden_states, attention_mask, encoder_output, memory_mask):
        self_bias, encoder_decoder_bias = None, None
        for i in range(self.num_layers):
            hidden_states, self_bias, encoder_decoder_bias = self.blocks[i](
                hidden_states, attention_mask, encoder_output, memory_mask, self_bias, encoder_decoder_bias)
        return hidden_states


@_named("T5Model")
class _MfT5Model(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.hidden_size = T5_D_MODEL
        self.tfm_embedding_lookup = _MfVocabEmbedding(T5_VOCAB, T5_D_MODEL)
        self.tfm_encoder = _MfTransformerEncoder()
        self.tfm_decoder = _MfTransformerDecoder()
        self.encoder_layernorm = _MfT5LayerNorm((T5_D_MODEL,))
        self.decoder_layernorm = _MfT5LayerNorm((T5_D_MODEL,))

    def construct(self, source_ids, target_ids):
        src, _ = self.tfm_embedding_lookup(source_ids)
        n_src, n_tgt = source_ids.shape[1], target_ids.shape[1]
        encoder_output = self.encoder_layernorm(self.tfm_encoder(src, Tensor(np.ones((n_src, n_src), np.float32))))
        tgt, embedding_table = self.tfm_embedding_lookup(target_ids)
        decoder_output = self.decoder_layernorm(self.tfm_decoder(
            tgt, Tensor(np.tril(np.ones((n_tgt, n_tgt), np.float32))), encoder_output,
            Tensor(np.ones((n_tgt, n_src), np.float32))))
        decoder_output = decoder_output * (self.hidden_size ** -0.5)  # scale_output
        return ops.matmul(decoder_output, embedding_table.T)  # T5Head: logits from the embedding table


@_named("T5ForConditionalGeneration")
class _MfT5ForConditionalGeneration(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.t5_model = _MfT5Model()

    def construct(self, input_ids, decoder_input_ids):
        return self.t5_model(input_ids, decoder_input_ids)


def t5_hf_vs_mindformers_pair():
    """HF T5ForConditionalGeneration (t5-small layout: d_model == heads * d_kv, ReLU FF, tied embeddings) vs
    mindformers T5ForConditionalGeneration, per mindformers/models/t5/convert_weight.py's name table.

    SelfAttention.q/k/v -> attention.dense1/2/3 as stored; SelfAttention.o -> attention.projection, DenseReluDense.wi
    -> output.mapping, wo -> output.projection all TRANSPOSED (mindformers' Linear with transpose_b=False stores
    (in, out); the convert script transposes '.o.', '.wi.', '.wo.'). o is square (16, 16) as in t5-small/base/large,
    so only wi/wo show the transpose in their shapes. layer.0/1/2.layer_norm -> layernorm1 /
    cross_attention_layernorm / layernorm2; block 0's relative_attention_bias -> bias_generator.embeddings_table;
    `shared` -> tfm_embedding_lookup (HF's encoder/decoder embed_tokens and lm_head are the same tensor, unused).
    mindformers' block-0 cross attention has a zero bias Parameter HF lacks (HF adds zeros there): unmapped. It is
    created with name='cross_attention_bias' but MindSpore 2.10 names a nested cell's Parameter after its attribute
    (probed), so the port lists `...cross_attention.cross_bias`.
    """
    transposed = lambda key: {"torch": key, "transform": "transpose(0, 1)"}  # noqa: E731
    reference = {"t5_model.tfm_embedding_lookup.embedding_table": "shared.weight"}
    for stack, ms_stack in (("encoder", "tfm_encoder"), ("decoder", "tfm_decoder")):
        for i in range(T5_LAYERS):
            ms, pt = f"t5_model.{ms_stack}.blocks.{i}", f"{stack}.block.{i}.layer"
            ff = 2 if stack == "decoder" else 1
            reference |= {f"{ms}.layernorm1.gamma": f"{pt}.0.layer_norm.weight",
                          f"{ms}.layernorm2.gamma": f"{pt}.{ff}.layer_norm.weight"}
            attentions = [("attention", "0.SelfAttention")] + ([("cross_attention", "1.EncDecAttention")]
                                                              if stack == "decoder" else [])
            for ms_attn, pt_attn in attentions:
                if i == 0 and ms_attn == "cross_attention":  # the cell's own Parameter comes before its children's
                    reference[f"{ms}.cross_attention.cross_bias"] = None
                reference |= {f"{ms}.{ms_attn}.projection.weight": transposed(f"{pt}.{pt_attn}.o.weight"),
                              f"{ms}.{ms_attn}.dense1.weight": f"{pt}.{pt_attn}.q.weight",
                              f"{ms}.{ms_attn}.dense2.weight": f"{pt}.{pt_attn}.k.weight",
                              f"{ms}.{ms_attn}.dense3.weight": f"{pt}.{pt_attn}.v.weight"}
                if i == 0 and ms_attn == "attention":
                    reference[f"{ms}.attention.bias_generator.embeddings_table"] = \
                        f"{pt}.0.SelfAttention.relative_attention_bias.weight"
            if stack == "decoder":
                reference[f"{ms}.cross_attention_layernorm.gamma"] = f"{pt}.1.layer_norm.weight"
            reference |= {f"{ms}.output.mapping.weight": transposed(f"{pt}.{ff}.DenseReluDense.wi.weight"),
                          f"{ms}.output.projection.weight": transposed(f"{pt}.{ff}.DenseReluDense.wo.weight")}
    reference |= {"t5_model.encoder_layernorm.gamma": "encoder.final_layer_norm.weight",
                  "t5_model.decoder_layernorm.gamma": "decoder.final_layer_norm.weight"}
    return Pair("t5_hf_vs_mindformers", _HFT5ForConditionalGeneration(), _MfT5ForConditionalGeneration(), reference,
                [(2, T5_SRC), (2, T5_TGT)], token_vocab=T5_VOCAB,
                torch_unmapped=("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"))


ZOO_LLM_PAIRS = [
    llama_hf_vs_mindformers_pair,
    llama_hf_vs_mindformers_qkv_concat_pair,
    llama_mha_hf_vs_mindformers_qkv_concat_pair,
    qwen2_hf_vs_mindformers_pair,
    qwen2_hf_vs_mindformers_qkv_concat_pair,
    phi3_hf_vs_mindformers_qkv_concat_pair,
    t5_hf_vs_mindformers_pair,
]
