"""Model factories for stage 2's probe tests: the mindformers 2.x fused layouts of tests/zoo_llm_pairs.py, and a
dual-path block whose port splits one fused 1x1 conv into two of unequal height.

Config files name these as "tests.probe_pairs:<factory>". The dual-path pair follows DPN's shape of things
(Chen et al. 2017; timm's `dpn.py` cuts the output of one 1x1 conv, `c1x1_c`, into a residual part of 256
channels and a dense part of 32, x_s[:, :256] and x_s[:, 256:]); its port holds two convs instead, the
dense one declared first, so declaration order puts the pieces the wrong way round.
"""

import torch
from mindspore import float16 as ms_float16
from mindspore import nn as msnn
from mindspore import ops
from torch import nn as tnn

from tests import zoo_llm_pairs as llm

RES, DENSE, IN, STEM, CLASSES = 256, 32, 3, 16, 5


# ---------------------------------------------------------------- mindformers 2.x fused layouts

def llama_torch():
    return llm._hf_llama()


def llama_keywords_torch():
    return llm._hf_llama_keywords()


def qwen2_torch():
    return llm._hf_qwen2()


def phi3_torch():
    return llm._hf_phi3(qkv_bias=True)


def mindformers_qkv_concat(qkv_has_bias=False, tie_word_embeddings=False):
    return llm._MfLlamaForCausalLM(qkv_concat=True, qkv_has_bias=qkv_has_bias, tie_word_embeddings=tie_word_embeddings)


def llama_mindformers():
    return mindformers_qkv_concat()


def qwen2_mindformers():
    return mindformers_qkv_concat(qkv_has_bias=True, tie_word_embeddings=True)


def phi3_mindformers():
    return mindformers_qkv_concat(qkv_has_bias=True)


# ---------------------------------------------------------------- dual-path block with an uneven split

class DualPathBlock(tnn.Module):
    def __init__(self, cin):
        super().__init__()
        self.bn = tnn.BatchNorm2d(cin)
        self.c1x1 = tnn.Conv2d(cin, RES + DENSE, 1, bias=True)

    def forward(self, x):
        x_s = self.c1x1(torch.relu(self.bn(x)))
        resid, dense = x_s[:, :RES], x_s[:, RES:]
        return torch.cat([resid * 0.5, torch.tanh(dense)], dim=1)


class DualPathNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.stem = tnn.Conv2d(IN, STEM, 3, padding=1)
        self.block1 = DualPathBlock(STEM)
        self.block2 = DualPathBlock(RES + DENSE)
        self.head = tnn.Linear(RES + DENSE, CLASSES)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


class MsDualPathBlock(msnn.Cell):
    def __init__(self, cin, broken=False):
        super().__init__()
        self.squash = ops.sigmoid if broken else ops.tanh  # broken: computes something else, no layout can agree
        self.bn = msnn.BatchNorm2d(cin)
        self.c1x1_dense = msnn.Conv2d(cin, DENSE, 1, has_bias=True)   # declared first
        self.c1x1_res = msnn.Conv2d(cin, RES, 1, has_bias=True)

    def construct(self, x):
        x = ops.relu(self.bn(x))
        return ops.cat([self.c1x1_res(x) * 0.5, self.squash(self.c1x1_dense(x))], axis=1)


class MsDualPathNet(msnn.Cell):
    def __init__(self, broken=False):
        super().__init__()
        self.stem = msnn.Conv2d(IN, STEM, 3, pad_mode="pad", padding=1, has_bias=True)
        self.block1 = MsDualPathBlock(STEM, broken)
        self.block2 = MsDualPathBlock(RES + DENSE, broken)
        self.head = msnn.Dense(RES + DENSE, CLASSES)

    def construct(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.head(x.mean(axis=(2, 3)))


def dpn_torch():
    return DualPathNet()


def dpn_mindspore(broken=False):
    return MsDualPathNet(broken)


def seeded_state(model, seed=0):
    """The model's state dict after filling it with seeded random floats (running variances positive); tied
    weights stay tied, so every key of a shared tensor saves the same values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict(keep_vars=True).items():
            if tensor.is_floating_point():
                values = 0.5 * torch.randn(tensor.shape, generator=generator)
                tensor.copy_(values.abs() + 0.5 if key.endswith("running_var") else values)
    return {key: tensor.clone() for key, tensor in model.state_dict().items()}


# ---------------------------------------------------------------- any zoo LLM pair, by name (config kwargs)

def _zoo_pair(pair):
    from tests.zoo_llm_pairs import ZOO_LLM_PAIRS

    return next(make for make in ZOO_LLM_PAIRS if make.__name__ == f"{pair}_pair")()


def zoo_torch(pair):
    return _zoo_pair(pair).torch_model


def zoo_mindspore(pair):
    return _zoo_pair(pair).ms_model


# ---------------------------------------------------------------- a port whose forward needs Ascend kernels

class _OnAscendLlama(llm._MfLlamaForCausalLM):
    """mindformers' LLaMA whose forward first calls the fused attention kernel MindSpore has only on Ascend
    (`FlashAttentionScore`): on a CPU its forward fails for real, as a parallel_core port's does."""

    def construct(self, input_ids):
        h = self.model(input_ids)
        q = h.astype(ms_float16)[:, None]
        attended = ops.flash_attention_score(q, q, q, 1, input_layout="BNSD")
        return self.lm_head(h + attended[:, 0].astype(h.dtype) * 0)


def llama_mindformers_on_ascend():
    return _OnAscendLlama(qkv_concat=True)
