"""Transformer model pairs written after real public code, for judging stage 2's matcher on zoo-like names.

Each factory returns a `tests.pairs.Pair`: a PyTorch model named exactly like a public PyTorch
implementation, a MindSpore port named exactly like a public MindSpore one, and a reference map
built by construction (MindSpore `Parameter.name` -> PyTorch key, None, or a transform object), in
the port's parameter order. Sizes are tiny (hidden 8-16, two blocks, two heads).

Sources the names (and parameter order) follow; the code is written here, not copied:
- GPT-2. PyTorch: Hugging Face transformers `models/gpt2/modeling_gpt2.py` (`GPT2LMHeadModel`,
  `transformer.h.N.attn.c_attn` a `Conv1D` whose weight is stored (in, out) with q, k, v fused,
  `lm_head.weight` tied to `transformer.wte.weight`). MindSpore: mindspore-lab/mindformers
  `mindformers/models/gpt2/gpt2.py` + `gpt_modules.py` + `modules/transformer/transformer.py`
  (`backbone.embedding.word_embedding.embedding_table`, `backbone.layernorm` declared before
  `backbone.blocks`, `attention.projection` declared before `attention.dense1/2/3`, `output.mapping`,
  `output.projection`; the `Linear` of `mindformers/modules/layers.py` stores (in, out) when built
  with transpose_b=False, as projection/mapping are, and (out, in) otherwise, as dense1/2/3 are; the
  head has no weight: logits use the word embedding table). The layout agrees with mindformers'
  own `convert_weight.py`, which transposes only c_attn and splits it into dense1/2/3.
- ViT. PyTorch: timm `models/vision_transformer.py` (`cls_token`, `pos_embed`, `patch_embed.proj`,
  `blocks.N.norm1`, `blocks.N.attn.qkv` fused, `attn.proj`, `mlp.fc1/fc2`, `norm`, `head`).
  MindSpore: mindspore-ai/models `official/cv/VIT/src/vit.py` (`cls`, `pos_embedding`,
  `stem.patch_to_embedding.dense` on flattened patches, `body.layers.N.0.cell.0` norm,
  `body.layers.N.0.cell.1.to_q/to_k/to_v/to_out`, `body.layers.N.1.cell.1.ff1.dense/ff2.dense`,
  `head.0` declared before `norm`).
- Swin. PyTorch: timm >= 0.9 `models/swin_transformer.py` (`layers.N.downsample` at the START of
  stage N >= 1, `attn.relative_position_bias_table`, fused `attn.qkv`, non-persistent
  relative_position_index / attn_mask buffers, `head.fc`). MindSpore: mindspore-lab/mindcv
  `mindcv/models/swin_transformer.py` (split `attn.q/k/v`, the table one level down in
  `attn.relative_bias`, non-trainable Parameters `attn.relative_bias.index` (one-hot) and
  `attn_mask`, `downsample` at the END of a stage with `reduction` declared before `norm`,
  `classifier`, stages in a `CellList` created empty and appended to).

Deliberate deviations, the same on both sides, so parity checks stay strict: attention uses a
sigmoid instead of a softmax (a softmax ignores a key bias, so a mis-mapped key bias would pass
parity; see tests/pairs.py), dropout and drop-path are left out (identity in eval mode), GELU is the
one the PyTorch side uses (MindSpore's nn.GELU defaults to the tanh approximation), LayerNorm
epsilons follow the PyTorch side, and GPT-2 uses a causal mask only (mindformers also masks eos ids).
"""
import math
from collections import OrderedDict

import mindspore as ms
import numpy as np
import torch
from mindspore import Parameter, Tensor, ops
from mindspore import nn as msnn
from mindspore.ops import operations as P
from torch import nn as tnn
from torch.nn import functional as F

from tests.pairs import Pair, _norm


def _named(name):
    """Give a class the name the real code uses: the matcher sees class names as layer types."""
    def rename(cls):
        cls.__name__ = cls.__qualname__ = name
        return cls
    return rename


def _torch_heads(x, heads):
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _torch_merge(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _ms_heads(x, heads):
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(0, 2, 1, 3)


def _ms_merge(x):
    b, h, n, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, n, h * d)


def _ms_ln(dim, eps):
    return msnn.LayerNorm((dim,), epsilon=eps)


# ================================================================ 1. GPT-2: HF transformers vs mindformers

@_named("Conv1D")
class _HFConv1D(tnn.Module):
    """transformers.pytorch_utils.Conv1D: a linear layer with its weight stored (in, out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = tnn.Parameter(torch.empty(nx, nf))
        self.bias = tnn.Parameter(torch.zeros(nf))
        tnn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(size_out)


@_named("GPT2Attention")
class _HFGPT2Attention(tnn.Module):
    def __init__(self, hidden, heads, n_positions):
        super().__init__()
        self.num_heads, self.embed_dim = heads, hidden
        causal = torch.tril(torch.ones(n_positions, n_positions, dtype=torch.bool))
        self.register_buffer("bias", causal.view(1, 1, n_positions, n_positions), persistent=False)
        self.c_attn = _HFConv1D(3 * hidden, hidden)
        self.c_proj = _HFConv1D(hidden, hidden)
        self.attn_dropout = tnn.Dropout(0.1)
        self.resid_dropout = tnn.Dropout(0.1)

    def forward(self, x):
        q, k, v = (_torch_heads(t, self.num_heads) for t in self.c_attn(x).split(self.embed_dim, dim=2))
        n = x.shape[1]
        weights = torch.sigmoid(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]))
        weights = weights * self.bias[:, :, :n, :n]
        return self.resid_dropout(self.c_proj(_torch_merge(self.attn_dropout(weights) @ v)))


@_named("GPT2MLP")
class _HFGPT2MLP(tnn.Module):
    def __init__(self, hidden, inner):
        super().__init__()
        self.c_fc = _HFConv1D(inner, hidden)
        self.c_proj = _HFConv1D(hidden, inner)
        self.dropout = tnn.Dropout(0.1)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))  # gelu_new


@_named("GPT2Block")
class _HFGPT2Block(tnn.Module):
    def __init__(self, hidden, heads, n_positions, eps):
        super().__init__()
        self.ln_1 = tnn.LayerNorm(hidden, eps=eps)
        self.attn = _HFGPT2Attention(hidden, heads, n_positions)
        self.ln_2 = tnn.LayerNorm(hidden, eps=eps)
        self.mlp = _HFGPT2MLP(hidden, 4 * hidden)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@_named("GPT2Model")
class _HFGPT2Model(tnn.Module):
    def __init__(self, vocab, n_positions, hidden, layers, heads, eps):
        super().__init__()
        self.wte = tnn.Embedding(vocab, hidden)
        self.wpe = tnn.Embedding(n_positions, hidden)
        self.drop = tnn.Dropout(0.1)
        self.h = tnn.ModuleList([_HFGPT2Block(hidden, heads, n_positions, eps) for _ in range(layers)])
        self.ln_f = tnn.LayerNorm(hidden, eps=eps)

    def forward(self, ids):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        x = self.drop(self.wte(ids) + self.wpe(positions))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


@_named("GPT2LMHeadModel")
class _HFGPT2LMHeadModel(tnn.Module):
    def __init__(self, vocab=20, n_positions=10, hidden=8, layers=2, heads=2, eps=1e-5):
        super().__init__()
        self.transformer = _HFGPT2Model(vocab, n_positions, hidden, layers, heads, eps)
        self.lm_head = tnn.Linear(hidden, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tie_weights(): two keys, one storage

    def forward(self, ids):
        return self.lm_head(self.transformer(ids))


@_named("LayerNorm")
class _MfLayerNorm(msnn.Cell):
    """mindformers.modules.layers.LayerNorm: gamma/beta Parameters around P.LayerNorm."""

    def __init__(self, normalized_shape, eps=1e-5):
        super().__init__()
        self.layer_norm = P.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)
        self.gamma = Parameter(Tensor(np.ones(normalized_shape, np.float32)), name="gamma")
        self.beta = Parameter(Tensor(np.zeros(normalized_shape, np.float32)), name="beta")

    def construct(self, x):
        output, _, _ = self.layer_norm(x, self.gamma, self.beta)
        return output


@_named("Linear")
class _MfLinear(msnn.Cell):
    """mindformers.modules.layers.Linear: weight (out, in) if transpose_b else (in, out)."""

    def __init__(self, in_channels, out_channels, has_bias=True, activation=None, transpose_b=True):
        super().__init__()
        self.in_channels, self.out_channels, self.transpose_b = in_channels, out_channels, transpose_b
        shape = (out_channels, in_channels) if transpose_b else (in_channels, out_channels)
        self.weight = Parameter(Tensor(np.random.normal(0, 0.01, shape).astype(np.float32)), name="weight")
        self.has_bias = has_bias
        if has_bias:
            self.bias = Parameter(Tensor(np.zeros(out_channels, np.float32)), name="bias")
        self.activation = activation
        self.matmul = P.MatMul(transpose_b=transpose_b)

    def construct(self, x):
        out_shape = x.shape[:-1] + (self.out_channels,)
        x = self.matmul(x.reshape(-1, self.in_channels), self.weight)
        if self.has_bias:
            x = x + self.bias
        if self.activation == "gelu":
            x = ops.gelu(x, approximate="tanh")
        return x.reshape(out_shape)


@_named("VocabEmbedding")
class _MfVocabEmbedding(msnn.Cell):
    """mindformers.modules.transformer.VocabEmbedding: returns (embeddings, embedding_table)."""

    def __init__(self, vocab_size, embedding_size):
        super().__init__()
        table = np.random.normal(0, 0.02, (vocab_size, embedding_size)).astype(np.float32)
        self.embedding_table = Parameter(Tensor(table), name="embedding_table")

    def construct(self, input_ids):
        return ops.gather(self.embedding_table, input_ids, 0), self.embedding_table


@_named("MultiHeadAttention")
class _MfMultiHeadAttention(msnn.Cell):
    def __init__(self, hidden_size, num_heads, seq_length):
        super().__init__()
        self.projection = _MfLinear(hidden_size, hidden_size, transpose_b=False)  # declared first, as there
        self.n_head = num_heads
        self.causal = Tensor(np.tril(np.ones((seq_length, seq_length), np.float32)))
        self.dense1 = _MfLinear(hidden_size, hidden_size)  # query
        self.dense2 = _MfLinear(hidden_size, hidden_size)  # key
        self.dense3 = _MfLinear(hidden_size, hidden_size)  # value

    def construct(self, x):
        q, k, v = (_ms_heads(t, self.n_head) for t in (self.dense1(x), self.dense2(x), self.dense3(x)))
        n = x.shape[1]
        score = ops.sigmoid(ops.matmul(q, k.swapaxes(-1, -2)) / math.sqrt(q.shape[-1]))
        return self.projection(_ms_merge(ops.matmul(score * self.causal[:n, :n], v)))


@_named("FeedForward")
class _MfFeedForward(msnn.Cell):
    def __init__(self, hidden_size, ffn_hidden_size):
        super().__init__()
        self.mapping = _MfLinear(hidden_size, ffn_hidden_size, activation="gelu", transpose_b=False)
        self.projection = _MfLinear(ffn_hidden_size, hidden_size, transpose_b=False)

    def construct(self, x):
        return self.projection(self.mapping(x))


@_named("GPTTransformerDecoderLayer")
class _MfGPTTransformerDecoderLayer(msnn.Cell):
    def __init__(self, hidden_size, ffn_hidden_size, num_heads, seq_length, eps):
        super().__init__()
        self.layernorm1 = _MfLayerNorm((hidden_size,), eps)
        self.layernorm2 = _MfLayerNorm((hidden_size,), eps)
        self.attention = _MfMultiHeadAttention(hidden_size, num_heads, seq_length)
        self.output = _MfFeedForward(hidden_size, ffn_hidden_size)

    def construct(self, x):
        x = x + self.attention(self.layernorm1(x))
        return x + self.output(self.layernorm2(x))


@_named("GPTEmbeddingLayer")
class _MfGPTEmbeddingLayer(msnn.Cell):
    def __init__(self, vocab_size, seq_length, hidden_size):
        super().__init__()
        self.word_embedding = _MfVocabEmbedding(vocab_size, hidden_size)
        self.position_embedding = _MfVocabEmbedding(seq_length, hidden_size)

    def construct(self, input_ids, input_position):
        word_embedding, word_table = self.word_embedding(input_ids)
        position_embedding, _ = self.position_embedding(input_position)
        return word_embedding + position_embedding, word_table


@_named("GPT2Model")
class _MfGPT2Model(msnn.Cell):
    def __init__(self, vocab_size, seq_length, hidden_size, num_layers, num_heads, eps):
        super().__init__()
        self.embedding = _MfGPTEmbeddingLayer(vocab_size, seq_length, hidden_size)
        self.layernorm = _MfLayerNorm((hidden_size,), eps)  # the final norm, declared before the blocks
        self.blocks = msnn.CellList()
        for _ in range(num_layers):
            self.blocks.append(_MfGPTTransformerDecoderLayer(hidden_size, 4 * hidden_size, num_heads,
                                                             seq_length, eps))
        self.num_layers = num_layers

    def construct(self, input_ids):
        positions = ops.arange(input_ids.shape[1], dtype=ms.int32).reshape(1, -1)
        hidden_states, embedding_table = self.embedding(input_ids, positions)
        for i in range(self.num_layers):
            hidden_states = self.blocks[i](hidden_states)
        return self.layernorm(hidden_states), embedding_table


@_named("GPTHead")
class _MfGPTHead(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.matmul = P.MatMul(transpose_b=True)

    def construct(self, state, embedding_table):
        return self.matmul(state, embedding_table)


@_named("GPT2LMHeadModel")
class _MfGPT2LMHeadModel(msnn.Cell):
    def __init__(self, vocab_size=20, seq_length=10, hidden_size=8, num_layers=2, num_heads=2, eps=1e-5):
        super().__init__()
        self.backbone = _MfGPT2Model(vocab_size, seq_length, hidden_size, num_layers, num_heads, eps)
        self.head = _MfGPTHead()

    def construct(self, input_ids):
        batch, seq = input_ids.shape
        output_states, embedding_table = self.backbone(input_ids)
        logits = self.head(output_states.reshape(batch * seq, -1), embedding_table)
        return logits.reshape(batch, seq, -1)


def gpt2_hf_vs_mindformers_pair():
    """HF GPT2LMHeadModel vs mindformers GPT2LMHeadModel: fused, transposed c_attn -> dense1/2/3.

    c_attn.weight is (in, 3*out): each of dense1/2/3 (out, in) is a transposed third of it; c_attn.bias
    splits into three plain thirds. attn.c_proj / mlp.c_fc / mlp.c_proj are (in, out) like the mindformers
    Linear layers built with transpose_b=False, so they need no transform. The MindSpore head has no
    weight (logits use the word embedding table), so `lm_head.weight` (tied to wte) stays unused.
    """
    reference = {"backbone.embedding.word_embedding.embedding_table": "transformer.wte.weight",
                 "backbone.embedding.position_embedding.embedding_table": "transformer.wpe.weight",
                 **_norm("backbone.layernorm", "transformer.ln_f")}
    for i in range(2):
        ms, pt = f"backbone.blocks.{i}", f"transformer.h.{i}"
        reference |= {**_norm(f"{ms}.layernorm1", f"{pt}.ln_1"), **_norm(f"{ms}.layernorm2", f"{pt}.ln_2"),
                      f"{ms}.attention.projection.weight": f"{pt}.attn.c_proj.weight",
                      f"{ms}.attention.projection.bias": f"{pt}.attn.c_proj.bias"}
        for index in range(3):
            reference |= {
                f"{ms}.attention.dense{index + 1}.weight": {"torch": f"{pt}.attn.c_attn.weight",
                                                             "transform": f"transpose(0, 1) | chunk(3, 0, {index})"},
                f"{ms}.attention.dense{index + 1}.bias": {"torch": f"{pt}.attn.c_attn.bias",
                                                           "transform": f"chunk(3, 0, {index})"}}
        reference |= {f"{ms}.output.mapping.weight": f"{pt}.mlp.c_fc.weight",
                      f"{ms}.output.mapping.bias": f"{pt}.mlp.c_fc.bias",
                      f"{ms}.output.projection.weight": f"{pt}.mlp.c_proj.weight",
                      f"{ms}.output.projection.bias": f"{pt}.mlp.c_proj.bias"}
    return Pair("gpt2_hf_vs_mindformers", _HFGPT2LMHeadModel(), _MfGPT2LMHeadModel(), reference, [(2, 10)],
                token_vocab=20, torch_unmapped=("lm_head.weight",))


# ================================================================ 2. ViT: timm vs the MindSpore model zoo

@_named("PatchEmbed")
class _TimmPatchEmbed(tnn.Module):
    def __init__(self, patch, in_chans, embed_dim):
        super().__init__()
        self.proj = tnn.Conv2d(in_chans, embed_dim, patch, stride=patch)
        self.norm = tnn.Identity()

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


@_named("Attention")
class _TimmAttention(tnn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = tnn.Linear(dim, dim * 3, bias=True)
        self.q_norm = tnn.Identity()
        self.k_norm = tnn.Identity()
        self.attn_drop = tnn.Dropout(0.0)
        self.proj = tnn.Linear(dim, dim)
        self.proj_drop = tnn.Dropout(0.0)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = torch.sigmoid((q * self.scale) @ k.transpose(-2, -1))
        return self.proj_drop(self.proj(_torch_merge(self.attn_drop(attn) @ v)))


@_named("Mlp")
class _TimmMlp(tnn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = tnn.Linear(in_features, hidden_features)
        self.act = tnn.GELU()
        self.drop1 = tnn.Dropout(0.0)
        self.norm = tnn.Identity()
        self.fc2 = tnn.Linear(hidden_features, in_features)
        self.drop2 = tnn.Dropout(0.0)

    def forward(self, x):
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


@_named("Block")
class _TimmBlock(tnn.Module):
    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.norm1 = tnn.LayerNorm(dim, eps=1e-6)
        self.attn = _TimmAttention(dim, num_heads)
        self.ls1 = tnn.Identity()
        self.drop_path1 = tnn.Identity()
        self.norm2 = tnn.LayerNorm(dim, eps=1e-6)
        self.mlp = _TimmMlp(dim, int(dim * mlp_ratio))
        self.ls2 = tnn.Identity()
        self.drop_path2 = tnn.Identity()

    def forward(self, x):
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


@_named("VisionTransformer")
class _TimmVisionTransformer(tnn.Module):
    def __init__(self, img_size=12, patch_size=4, num_classes=5, embed_dim=8, depth=2, num_heads=2, mlp_ratio=2.0):
        super().__init__()
        self.patch_embed = _TimmPatchEmbed(patch_size, 3, embed_dim)
        num_patches = (img_size // patch_size) ** 2
        self.cls_token = tnn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = tnn.Parameter(torch.randn(1, num_patches + 1, embed_dim) * 0.02)
        self.pos_drop = tnn.Dropout(0.0)
        self.patch_drop = tnn.Identity()
        self.norm_pre = tnn.Identity()
        self.blocks = tnn.Sequential(*[_TimmBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = tnn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = tnn.Identity()
        self.head_drop = tnn.Dropout(0.0)
        self.head = tnn.Linear(embed_dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(self.norm_pre(self.patch_drop(self.pos_drop(x)))))
        return self.head(self.head_drop(self.fc_norm(x[:, 0])))


@_named("BatchDense")
class _ZooBatchDense(msnn.Cell):
    def __init__(self, in_features, out_features, has_bias=True):
        super().__init__()
        self.out_features = out_features
        self.dense = msnn.Dense(in_features, out_features, has_bias=has_bias)

    def construct(self, x):
        bs, seq_len, d_model = x.shape
        out = self.dense(x.reshape(bs * seq_len, d_model))
        return out.reshape(bs, seq_len, self.out_features)


@_named("ResidualCell")
class _ZooResidualCell(msnn.Cell):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def construct(self, x):
        return self.cell(x) + x


@_named("VitStem")
class _ZooVitStem(msnn.Cell):
    def __init__(self, d_model, patch_size, channels=3):
        super().__init__()
        self.patch_size = patch_size
        self.patch_to_embedding = _ZooBatchDense(channels * patch_size ** 2, d_model, has_bias=True)

    def construct(self, img):
        p = self.patch_size
        bs, channels, h, w = img.shape
        x = img.reshape(bs, channels, h // p, p, w // p, p).transpose(0, 2, 4, 1, 3, 5)
        return self.patch_to_embedding(x.reshape(bs, (h // p) * (w // p), channels * p * p))


@_named("Attention")
class _ZooAttention(msnn.Cell):
    def __init__(self, d_model, heads, dim_head):
        super().__init__()
        inner_dim = heads * dim_head
        self.dim_head, self.heads = dim_head, heads
        self.scale = dim_head ** -0.5
        self.to_q = msnn.Dense(d_model, inner_dim, has_bias=True)
        self.to_k = msnn.Dense(d_model, inner_dim, has_bias=True)
        self.to_v = msnn.Dense(d_model, inner_dim, has_bias=True)
        self.to_out = msnn.Dense(inner_dim, d_model, has_bias=True)

    def construct(self, x):
        q, k, v = (_ms_heads(t, self.heads) for t in (self.to_q(x), self.to_k(x), self.to_v(x)))
        attn_scores = ops.sigmoid(ops.matmul(q * self.scale, k.swapaxes(-1, -2)))
        return self.to_out(_ms_merge(ops.matmul(attn_scores, v)))


@_named("FeedForward")
class _ZooFeedForward(msnn.Cell):
    def __init__(self, d_model, hidden_dim):
        super().__init__()
        self.ff1 = _ZooBatchDense(d_model, hidden_dim)
        self.activation = msnn.GELU(approximate=False)
        self.ff2 = _ZooBatchDense(hidden_dim, d_model)

    def construct(self, x):
        return self.ff2(self.activation(self.ff1(x)))


@_named("Transformer")
class _ZooTransformer(msnn.Cell):
    def __init__(self, d_model, depth, heads, dim_head, mlp_dim):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers.append(msnn.SequentialCell([
                _ZooResidualCell(msnn.SequentialCell([_ms_ln(d_model, 1e-6), _ZooAttention(d_model, heads, dim_head)])),
                _ZooResidualCell(msnn.SequentialCell([_ms_ln(d_model, 1e-6), _ZooFeedForward(d_model, mlp_dim)]))]))
        self.layers = msnn.SequentialCell(layers)

    def construct(self, x):
        return self.layers(x)


@_named("ViT")
class _ZooViT(msnn.Cell):
    def __init__(self, image_size=12, patch_size=4, num_classes=5, d_model=8, depth=2, heads=2, mlp_dim=16):
        super().__init__()
        num_patches = (image_size // patch_size) ** 2
        self.cls_token = Parameter(Tensor(np.zeros((1, 1, d_model), np.float32)), name="cls", requires_grad=True)
        self.pos_embedding = Parameter(Tensor(np.zeros((1, num_patches + 1, d_model), np.float32)),
                                       name="pos_embedding", requires_grad=True)
        self.stem = _ZooVitStem(d_model, patch_size)
        self.body = _ZooTransformer(d_model, depth, heads, d_model // heads, mlp_dim)
        self.head = msnn.SequentialCell([msnn.Dense(d_model, num_classes)])
        self.norm = _ms_ln(d_model, 1e-6)  # declared after the head, as in the zoo's ViT

    def construct(self, img):
        x = self.stem(img)
        bs, seq_len, _ = x.shape
        x = ops.concat((ops.tile(self.cls_token, (bs, 1, 1)), x), axis=1) + self.pos_embedding[:, :seq_len + 1]
        x = self.norm(self.body(x))
        return self.head(x[:, 0])


def vit_timm_vs_model_zoo_pair():
    """timm VisionTransformer vs mindspore-ai/models ViT: fused qkv -> to_q/to_k/to_v, conv patch -> dense."""
    reference = {"cls": "cls_token", "pos_embedding": "pos_embed",
                 "stem.patch_to_embedding.dense.weight": {"torch": "patch_embed.proj.weight",
                                                          "transform": "reshape(8, 48)"},
                 "stem.patch_to_embedding.dense.bias": "patch_embed.proj.bias"}
    for i in range(2):
        ms, pt = f"body.layers.{i}", f"blocks.{i}"
        reference |= _norm(f"{ms}.0.cell.0", f"{pt}.norm1")
        for index, part in enumerate(("to_q", "to_k", "to_v")):
            for tensor in ("weight", "bias"):
                reference[f"{ms}.0.cell.1.{part}.{tensor}"] = {"torch": f"{pt}.attn.qkv.{tensor}",
                                                               "transform": f"chunk(3, 0, {index})"}
        reference |= {f"{ms}.0.cell.1.to_out.weight": f"{pt}.attn.proj.weight",
                      f"{ms}.0.cell.1.to_out.bias": f"{pt}.attn.proj.bias",
                      **_norm(f"{ms}.1.cell.0", f"{pt}.norm2"),
                      f"{ms}.1.cell.1.ff1.dense.weight": f"{pt}.mlp.fc1.weight",
                      f"{ms}.1.cell.1.ff1.dense.bias": f"{pt}.mlp.fc1.bias",
                      f"{ms}.1.cell.1.ff2.dense.weight": f"{pt}.mlp.fc2.weight",
                      f"{ms}.1.cell.1.ff2.dense.bias": f"{pt}.mlp.fc2.bias"}
    reference |= {"head.0.weight": "head.weight", "head.0.bias": "head.bias", **_norm("norm", "norm")}
    return Pair("vit_timm_vs_model_zoo", _TimmVisionTransformer(), _ZooViT(), reference, [(2, 3, 12, 12)])


# ================================================================ 3. Swin: timm vs mindcv

def _relative_position_index(window):
    """(N*N,) index into the (2w-1)^2 bias table, as both implementations compute it."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    relative[:, :, 0] += window - 1
    relative[:, :, 1] += window - 1
    relative[:, :, 0] *= 2 * window - 1
    return relative.sum(-1).reshape(-1)


def _shift_mask(resolution, window, shift):
    """(nW, N, N) 0/-100 mask of shifted-window attention, numpy."""
    img_mask = np.zeros((resolution, resolution))
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    count = 0
    for h in slices:
        for w in slices:
            img_mask[h, w] = count
            count += 1
    windows = img_mask.reshape(resolution // window, window, resolution // window, window)
    windows = windows.transpose(0, 2, 1, 3).reshape(-1, window * window)
    diff = windows[:, None, :] - windows[:, :, None]
    return np.where(diff == 0, 0.0, -100.0).astype(np.float32)


def _torch_window_partition(x, window):
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def _torch_window_reverse(windows, window, h, w):
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


@_named("WindowAttention")
class _TimmWindowAttention(tnn.Module):
    def __init__(self, dim, num_heads, window):
        super().__init__()
        self.num_heads, self.window = num_heads, window
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = tnn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", torch.from_numpy(_relative_position_index(window)),
                             persistent=False)
        self.qkv = tnn.Linear(dim, dim * 3, bias=True)
        self.attn_drop = tnn.Dropout(0.0)
        self.proj = tnn.Linear(dim, dim)
        self.proj_drop = tnn.Dropout(0.0)

    def forward(self, x, mask=None):
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(-1, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.attn_drop(torch.sigmoid(attn))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(b_, n, -1)))


@_named("SwinTransformerBlock")
class _TimmSwinBlock(tnn.Module):
    def __init__(self, dim, resolution, num_heads, window, shift, mlp_ratio):
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = tnn.LayerNorm(dim)
        self.attn = _TimmWindowAttention(dim, num_heads, window)
        self.drop_path1 = tnn.Identity()
        self.norm2 = tnn.LayerNorm(dim)
        self.mlp = _TimmMlp(dim, int(dim * mlp_ratio))
        self.drop_path2 = tnn.Identity()
        mask = torch.from_numpy(_shift_mask(resolution, window, shift)) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x):  # NHWC, as timm's stages run
        b, h, w, c = x.shape
        shifted = self.norm1(x)
        if self.shift:
            shifted = torch.roll(shifted, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(_torch_window_partition(shifted, self.window), mask=self.attn_mask)
        shifted = _torch_window_reverse(windows, self.window, h, w)
        attn_out = torch.roll(shifted, shifts=(self.shift, self.shift), dims=(1, 2)) if self.shift else shifted
        x = x + self.drop_path1(attn_out)
        return x + self.drop_path2(self.mlp(self.norm2(x)))


@_named("PatchMerging")
class _TimmPatchMerging(tnn.Module):
    def __init__(self, dim, out_dim):
        super().__init__()
        self.norm = tnn.LayerNorm(4 * dim)
        self.reduction = tnn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x):
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


@_named("SwinTransformerStage")
class _TimmSwinStage(tnn.Module):
    def __init__(self, dim, out_dim, resolution, depth, downsample, num_heads, window, mlp_ratio):
        super().__init__()
        self.downsample = _TimmPatchMerging(dim, out_dim) if downsample else tnn.Identity()
        self.blocks = tnn.Sequential(*[
            _TimmSwinBlock(out_dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


@_named("ClassifierHead")
class _TimmClassifierHead(tnn.Module):
    def __init__(self, in_features, num_classes):
        super().__init__()
        self.drop = tnn.Dropout(0.0)
        self.fc = tnn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.fc(self.drop(x.mean((1, 2))))


@_named("PatchEmbed")
class _TimmSwinPatchEmbed(tnn.Module):
    def __init__(self, patch, in_chans, embed_dim):
        super().__init__()
        self.proj = tnn.Conv2d(in_chans, embed_dim, patch, stride=patch)
        self.norm = tnn.LayerNorm(embed_dim)

    def forward(self, x):
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # NHWC, timm's output_fmt for Swin


@_named("SwinTransformer")
class _TimmSwinTransformer(tnn.Module):
    def __init__(self, img_size=8, patch_size=2, num_classes=5, embed_dim=8, depths=(2, 2), num_heads=(2, 4),
                 window_size=2, mlp_ratio=4.0):
        super().__init__()
        self.patch_embed = _TimmSwinPatchEmbed(patch_size, 3, embed_dim)
        resolution = img_size // patch_size
        stages, dim = [], embed_dim
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            out_dim = embed_dim * 2 ** i
            stages.append(_TimmSwinStage(dim, out_dim, resolution // 2 ** i, depth, i > 0, heads, window_size,
                                         mlp_ratio))
            dim = out_dim
        self.layers = tnn.Sequential(*stages)
        self.norm = tnn.LayerNorm(dim)
        self.head = _TimmClassifierHead(dim, num_classes)

    def forward(self, x):
        return self.head(self.norm(self.layers(self.patch_embed(x))))


def _ms_roll(x, shift):
    """Roll (b, h, w, c) by `shift` along h and w (ops.roll has no CPU kernel)."""
    for axis in (1, 2):
        size = x.shape[axis]
        s = shift % size
        if s:
            x = ops.concat((x.narrow(axis, size - s, s), x.narrow(axis, 0, size - s)), axis=axis)
    return x


@_named("RelativeBias")
class _CvRelativeBias(msnn.Cell):
    def __init__(self, window, num_heads):
        super().__init__()
        self.window = window
        table_size = (2 * window - 1) ** 2
        self.relative_position_bias_table = Parameter(
            Tensor(np.random.randn(table_size, num_heads).astype(np.float32)))
        one_hot = np.eye(table_size, dtype=np.float32)[_relative_position_index(window)]
        self.index = Parameter(Tensor(one_hot), requires_grad=False)

    def construct(self):
        n = self.window * self.window
        out = ops.matmul(self.index, self.relative_position_bias_table).reshape(n, n, -1)
        return ops.expand_dims(out.transpose(2, 0, 1), 0)


@_named("WindowAttention")
class _CvWindowAttention(msnn.Cell):
    def __init__(self, dim, window, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_bias = _CvRelativeBias(window, num_heads)
        self.q = msnn.Dense(dim, dim, has_bias=True)
        self.k = msnn.Dense(dim, dim, has_bias=True)
        self.v = msnn.Dense(dim, dim, has_bias=True)
        self.proj = msnn.Dense(dim, dim, has_bias=True)

    def construct(self, x, mask=None):
        b_, n, c = x.shape
        q, k, v = (_ms_heads(t, self.num_heads) for t in (self.q(x), self.k(x), self.v(x)))
        attn = ops.matmul(q * self.scale, k.swapaxes(-1, -2)) + self.relative_bias()
        if mask is not None:
            nw = mask.shape[1]
            attn = (attn.reshape(b_ // nw, nw, self.num_heads, n, n) + mask).reshape(-1, self.num_heads, n, n)
        return self.proj(_ms_merge(ops.matmul(ops.sigmoid(attn), v)))


@_named("Mlp")
class _CvMlp(msnn.Cell):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = msnn.Dense(in_features, hidden_features, has_bias=True)
        self.act = msnn.GELU(approximate=False)
        self.fc2 = msnn.Dense(hidden_features, in_features, has_bias=True)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


@_named("SwinTransformerBlock")
class _CvSwinBlock(msnn.Cell):
    def __init__(self, dim, resolution, num_heads, window, shift, mlp_ratio):
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = _ms_ln(dim, 1e-5)
        self.attn = _CvWindowAttention(dim, window, num_heads)
        self.norm2 = _ms_ln(dim, 1e-5)
        self.mlp = _CvMlp(dim, int(dim * mlp_ratio))
        if shift:
            mask = _shift_mask(resolution, window, shift)[None, :, None]  # (1, nW, 1, N, N)
            self.attn_mask = Parameter(Tensor(mask), requires_grad=False)
        else:
            self.attn_mask = None

    def construct(self, x):
        h = w = self.resolution
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).reshape(b, h, w, c)
        if self.shift:
            x = _ms_roll(x, -self.shift)
        win = self.window
        windows = x.reshape(b, h // win, win, w // win, win, c).transpose(0, 1, 3, 2, 4, 5).reshape(-1, win * win, c)
        windows = self.attn(windows, self.attn_mask)
        x = windows.reshape(b, h // win, w // win, win, win, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if self.shift:
            x = _ms_roll(x, self.shift)
        x = shortcut + x.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


@_named("PatchMerging")
class _CvPatchMerging(msnn.Cell):
    def __init__(self, resolution, dim):
        super().__init__()
        self.reduction = msnn.Dense(4 * dim, 2 * dim, has_bias=False)  # declared before norm, as in mindcv
        self.norm = _ms_ln(4 * dim, 1e-5)
        self.resolution, self.dim = resolution, dim

    def construct(self, x):
        b = x.shape[0]
        h = self.resolution
        x = x.reshape(b, h // 2, 2, h // 2, 2, self.dim).transpose(0, 1, 3, 4, 2, 5)
        return self.reduction(self.norm(x.reshape(b, h * h // 4, 4 * self.dim)))


@_named("BasicLayer")
class _CvBasicLayer(msnn.Cell):
    def __init__(self, dim, resolution, depth, num_heads, window, mlp_ratio, downsample):
        super().__init__()
        self.blocks = msnn.CellList([
            _CvSwinBlock(dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)])
        self.downsample = _CvPatchMerging(resolution, dim) if downsample else None

    def construct(self, x):
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


@_named("PatchEmbed")
class _CvPatchEmbed(msnn.Cell):
    def __init__(self, patch_size, in_chans, embed_dim):
        super().__init__()
        self.embed_dim = embed_dim
        self.proj = msnn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, pad_mode="pad", has_bias=True)
        self.norm = _ms_ln(embed_dim, 1e-5)

    def construct(self, x):
        b = x.shape[0]
        return self.norm(self.proj(x).reshape(b, self.embed_dim, -1).transpose(0, 2, 1))


@_named("SwinTransformer")
class _CvSwinTransformer(msnn.Cell):
    def __init__(self, image_size=8, patch_size=2, num_classes=5, embed_dim=8, depths=(2, 2), num_heads=(2, 4),
                 window_size=2, mlp_ratio=4.0, append_stages=True):
        super().__init__()
        self.patch_embed = _CvPatchEmbed(patch_size, 3, embed_dim)
        resolution = image_size // patch_size
        stages = [_CvBasicLayer(embed_dim * 2 ** i, resolution // 2 ** i, depth, heads, window_size, mlp_ratio,
                                downsample=i < len(depths) - 1)
                  for i, (depth, heads) in enumerate(zip(depths, num_heads))]
        if append_stages:  # mindcv's code: an empty CellList appended to
            self.layers = msnn.CellList()
            for stage in stages:
                self.layers.append(stage)
        else:
            self.layers = msnn.CellList(stages)
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = _ms_ln(self.num_features, 1e-5)
        self.classifier = msnn.Dense(self.num_features, num_classes, has_bias=True)

    def construct(self, x):
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.norm(x).mean(axis=1))


def _swin_reference(stage_prefixes):
    stage = stage_prefixes.__getitem__
    reference = {"patch_embed.proj.weight": "patch_embed.proj.weight", "patch_embed.proj.bias": "patch_embed.proj.bias",
                 **_norm("patch_embed.norm", "patch_embed.norm")}
    for i in range(2):
        for j in range(2):
            ms, pt = f"{stage(i)}blocks.{j}", f"layers.{i}.blocks.{j}"
            if i == 0 and j == 1:  # the only shifted block (stage 1 is a single 2x2 window); a cell's own
                reference[f"{ms}.attn_mask"] = None  # Parameters come before its children's
            reference |= {**_norm(f"{ms}.norm1", f"{pt}.norm1"),
                          f"{ms}.attn.relative_bias.relative_position_bias_table":
                              f"{pt}.attn.relative_position_bias_table",
                          f"{ms}.attn.relative_bias.index": None}
            for index, part in enumerate("qkv"):
                for tensor in ("weight", "bias"):
                    reference[f"{ms}.attn.{part}.{tensor}"] = {"torch": f"{pt}.attn.qkv.{tensor}",
                                                               "transform": f"chunk(3, 0, {index})"}
            reference |= {f"{ms}.attn.proj.weight": f"{pt}.attn.proj.weight",
                          f"{ms}.attn.proj.bias": f"{pt}.attn.proj.bias",
                          **_norm(f"{ms}.norm2", f"{pt}.norm2"),
                          f"{ms}.mlp.fc1.weight": f"{pt}.mlp.fc1.weight", f"{ms}.mlp.fc1.bias": f"{pt}.mlp.fc1.bias",
                          f"{ms}.mlp.fc2.weight": f"{pt}.mlp.fc2.weight", f"{ms}.mlp.fc2.bias": f"{pt}.mlp.fc2.bias"}
        if i == 0:
            reference |= {f"{stage(0)}downsample.reduction.weight": "layers.1.downsample.reduction.weight",
                          **_norm(f"{stage(0)}downsample.norm", "layers.1.downsample.norm")}
    return reference | {**_norm("norm", "norm"),
                        "classifier.weight": "head.fc.weight", "classifier.bias": "head.fc.bias"}


def swin_timm_vs_mindcv_pair():
    """timm SwinTransformer vs mindcv SwinTransformer (tiny: embed 8, depths (2, 2), window 2).

    Fused qkv -> q/k/v; `attn.relative_position_bias_table` one level deeper on the MindSpore side;
    patch merging at the start of stage 1 (timm) vs the end of stage 0 (mindcv). mindcv's
    `relative_bias.index` (a one-hot of the relative position index) and `attn_mask` are constants
    the port computes; timm keeps both as non-persistent buffers, so they stay unmapped (None).

    mindcv appends its stages to an empty top-level CellList; under MindSpore 2.10 that gives stage 0
    the prefix `0.` and stage 1 the garbled prefix `0.blocks.1.` (probed: a later appended cell's
    names are built on the first one's path), so these are the names a checkpoint saved from it has.
    """
    return Pair("swin_timm_vs_mindcv", _TimmSwinTransformer(), _CvSwinTransformer(),
                _swin_reference(["0.", "0.blocks.1."]), [(2, 3, 8, 8)])


def swin_timm_vs_mindcv_listed_stages_pair():
    """The same Swin pair with the stages given to the CellList as a list: names `layers.N.` as in the
    mindcv layout on MindSpore versions that keep the list's path, so only the naming conventions differ."""
    return Pair("swin_timm_vs_mindcv_listed_stages", _TimmSwinTransformer(), _CvSwinTransformer(append_stages=False),
                _swin_reference(["layers.0.", "layers.1."]), [(2, 3, 8, 8)])


# ================================================================ 4. CLIP text tower: HF transformers vs mindformers

def _quick_gelu_torch(x):
    return x * torch.sigmoid(1.702 * x)


@_named("CLIPTextEmbeddings")
class _HFCLIPTextEmbeddings(tnn.Module):
    def __init__(self, vocab, max_positions, hidden):
        super().__init__()
        self.token_embedding = tnn.Embedding(vocab, hidden)
        self.position_embedding = tnn.Embedding(max_positions, hidden)
        self.register_buffer("position_ids", torch.arange(max_positions).expand((1, -1)), persistent=False)

    def forward(self, ids):
        return self.token_embedding(ids) + self.position_embedding(self.position_ids[:, :ids.shape[1]])


@_named("CLIPAttention")
class _HFCLIPAttention(tnn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.num_heads, self.scale = heads, (hidden // heads) ** -0.5
        self.k_proj = tnn.Linear(hidden, hidden)  # HF declares k, v, q, out in this order
        self.v_proj = tnn.Linear(hidden, hidden)
        self.q_proj = tnn.Linear(hidden, hidden)
        self.out_proj = tnn.Linear(hidden, hidden)

    def forward(self, x, causal):
        q, k, v = (_torch_heads(t, self.num_heads)
                   for t in (self.q_proj(x) * self.scale, self.k_proj(x), self.v_proj(x)))
        weights = torch.sigmoid(q @ k.transpose(-1, -2)) * causal
        return self.out_proj(_torch_merge(weights @ v))


@_named("CLIPMLP")
class _HFCLIPMLP(tnn.Module):
    def __init__(self, hidden, intermediate):
        super().__init__()
        self.fc1 = tnn.Linear(hidden, intermediate)
        self.fc2 = tnn.Linear(intermediate, hidden)

    def forward(self, x):
        return self.fc2(_quick_gelu_torch(self.fc1(x)))


@_named("CLIPEncoderLayer")
class _HFCLIPEncoderLayer(tnn.Module):
    def __init__(self, hidden, heads, intermediate):
        super().__init__()
        self.self_attn = _HFCLIPAttention(hidden, heads)
        self.layer_norm1 = tnn.LayerNorm(hidden, eps=1e-5)
        self.mlp = _HFCLIPMLP(hidden, intermediate)
        self.layer_norm2 = tnn.LayerNorm(hidden, eps=1e-5)

    def forward(self, x, causal):
        x = x + self.self_attn(self.layer_norm1(x), causal)
        return x + self.mlp(self.layer_norm2(x))


@_named("CLIPEncoder")
class _HFCLIPEncoder(tnn.Module):
    def __init__(self, hidden, heads, intermediate, layers):
        super().__init__()
        self.layers = tnn.ModuleList([_HFCLIPEncoderLayer(hidden, heads, intermediate) for _ in range(layers)])

    def forward(self, x, causal):
        for layer in self.layers:
            x = layer(x, causal)
        return x


@_named("CLIPTextTransformer")
class _HFCLIPTextTransformer(tnn.Module):
    def __init__(self, vocab, max_positions, hidden, heads, layers):
        super().__init__()
        self.embeddings = _HFCLIPTextEmbeddings(vocab, max_positions, hidden)
        self.encoder = _HFCLIPEncoder(hidden, heads, 4 * hidden, layers)
        self.final_layer_norm = tnn.LayerNorm(hidden, eps=1e-5)

    def forward(self, ids):
        n = ids.shape[1]
        causal = torch.tril(torch.ones(n, n))
        x = self.final_layer_norm(self.encoder(self.embeddings(ids), causal))
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)]  # the eos token: highest id, as in CLIP


@_named("CLIPTextModelWithProjection")
class _HFCLIPTextModelWithProjection(tnn.Module):
    def __init__(self, vocab=20, max_positions=6, hidden=8, heads=2, layers=2, projection_dim=12):
        super().__init__()
        self.text_model = _HFCLIPTextTransformer(vocab, max_positions, hidden, heads, layers)
        self.text_projection = tnn.Linear(hidden, projection_dim, bias=False)

    def forward(self, ids):
        return self.text_projection(self.text_model(ids))


@_named("MultiheadAttention")
class _MfCLIPMultiheadAttention(msnn.Cell):
    def __init__(self, d_model, n_head):
        super().__init__()
        self.num_heads, self.scaling = n_head, (d_model // n_head) ** -0.5
        self.out_proj = msnn.Dense(d_model, d_model)  # declared before in_proj, as in mindformers
        self.in_proj = msnn.Dense(d_model, 3 * d_model)

    def construct(self, x, attn_mask):
        q, k, v = ops.split(self.in_proj(x), x.shape[-1], axis=-1)
        q, k, v = (_ms_heads(t, self.num_heads) for t in (q * self.scaling, k, v))
        weights = ops.sigmoid(ops.matmul(q, k.swapaxes(-1, -2))) * attn_mask
        return self.out_proj(_ms_merge(ops.matmul(weights, v)))


@_named("QuickGELU")
class _MfQuickGELU(msnn.Cell):
    def construct(self, x):
        return x * ops.sigmoid(1.702 * x)


@_named("ResidualAttentionBlock")
class _MfResidualAttentionBlock(msnn.Cell):
    def __init__(self, d_model, n_head, attn_mask):
        super().__init__()
        self.attn = _MfCLIPMultiheadAttention(d_model, n_head)
        self.ln_1 = _ms_ln(d_model, 1e-5)
        self.mlp = msnn.SequentialCell(OrderedDict([("c_fc", msnn.Dense(d_model, 4 * d_model)),
                                                    ("gelu", _MfQuickGELU()),
                                                    ("c_proj", msnn.Dense(4 * d_model, d_model))]))
        self.ln_2 = _ms_ln(d_model, 1e-5)
        self.attn_mask = attn_mask

    def construct(self, x):
        x = x + self.attn(self.ln_1(x), self.attn_mask)
        return x + self.mlp(self.ln_2(x))


@_named("Transformer")
class _MfCLIPTransformer(msnn.Cell):
    def __init__(self, width, layers, heads, attn_mask):
        super().__init__()
        self.resblocks = msnn.SequentialCell(*[_MfResidualAttentionBlock(width, heads, attn_mask)
                                               for _ in range(layers)])

    def construct(self, x):
        return self.resblocks(x)


@_named("CLIPTextTower")
class _MfCLIPTextTower(msnn.Cell):
    """The text half of mindformers' CLIPModel (`get_text_features`), with its attribute names and order."""

    def __init__(self, vocab_size=20, max_position_embeddings=6, hidden_size=8, heads=2, layers=2, projection_dim=12):
        super().__init__()
        causal = Tensor(np.tril(np.ones((max_position_embeddings, max_position_embeddings), np.float32)))
        self.transformer = _MfCLIPTransformer(hidden_size, layers, heads, causal)
        self.token_embedding = msnn.Embedding(vocab_size, hidden_size)
        self.positional_embedding = Parameter(
            Tensor(np.random.normal(0, 0.01, (max_position_embeddings, hidden_size)).astype(np.float32)))
        self.ln_final = _MfLayerNorm((hidden_size,), 1e-5)
        self.text_projection = Parameter(
            Tensor(np.random.normal(0, 0.3, (hidden_size, projection_dim)).astype(np.float32)))

    def construct(self, text):
        x = self.ln_final(self.transformer(self.token_embedding(text) + self.positional_embedding))
        return ops.matmul(x[ops.arange(x.shape[0]), text.argmax(-1)], self.text_projection)


def clip_text_hf_vs_mindformers_pair():
    """HF CLIPTextModelWithProjection vs the text tower of mindformers' CLIPModel: split k/v/q_proj -> in_proj.

    mindformers keeps OpenAI CLIP's names: a fused `attn.in_proj` (q, k, v stacked on dim 0), `ln_1`,
    `mlp.c_fc`, `positional_embedding` and `text_projection` as bare Parameters, the latter used as x @ W,
    so it is HF's `text_projection.weight` transposed (projection_dim 12 != width 8, so shapes say so).
    """
    reference = {"positional_embedding": "text_model.embeddings.position_embedding.weight",
                 "text_projection": {"torch": "text_projection.weight", "transform": "transpose(0, 1)"}}
    for i in range(2):
        ms, pt = f"transformer.resblocks.{i}", f"text_model.encoder.layers.{i}"
        reference |= {f"{ms}.attn.out_proj.weight": f"{pt}.self_attn.out_proj.weight",
                      f"{ms}.attn.out_proj.bias": f"{pt}.self_attn.out_proj.bias",
                      **{f"{ms}.attn.in_proj.{tensor}": {
                          "torch": [f"{pt}.self_attn.{part}_proj.{tensor}" for part in "qkv"], "transform": "cat(0)"}
                         for tensor in ("weight", "bias")},
                      **_norm(f"{ms}.ln_1", f"{pt}.layer_norm1"),
                      f"{ms}.mlp.c_fc.weight": f"{pt}.mlp.fc1.weight", f"{ms}.mlp.c_fc.bias": f"{pt}.mlp.fc1.bias",
                      f"{ms}.mlp.c_proj.weight": f"{pt}.mlp.fc2.weight", f"{ms}.mlp.c_proj.bias": f"{pt}.mlp.fc2.bias",
                      **_norm(f"{ms}.ln_2", f"{pt}.layer_norm2")}
    reference |= {"token_embedding.embedding_table": "text_model.embeddings.token_embedding.weight",
                  **_norm("ln_final", "text_model.final_layer_norm")}
    return Pair("clip_text_hf_vs_mindformers", _HFCLIPTextModelWithProjection(), _MfCLIPTextTower(), reference,
                [(2, 6)], token_vocab=20)


ZOO_TRANSFORMER_PAIRS = [
    gpt2_hf_vs_mindformers_pair,
    vit_timm_vs_model_zoo_pair,
    swin_timm_vs_mindcv_pair,
    swin_timm_vs_mindcv_listed_stages_pair,
    clip_text_hf_vs_mindformers_pair,
]


def gpt2_torch():
    """The GPT-2 pair's PyTorch side, as a factory a config can name."""
    return gpt2_hf_vs_mindformers_pair().torch_model


def gpt2_ms():
    """The GPT-2 pair's MindSpore side, as a factory a config can name."""
    return gpt2_hf_vs_mindformers_pair().ms_model
