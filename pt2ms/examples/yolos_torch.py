"""A small PyTorch YOLOS: a DeiT-style ViT backbone with detection tokens and DETR-style MLP heads.

Parameter names follow hustvl/YOLOS (`backbone.cls_token`, `backbone.det_token`, `backbone.pos_embed`,
`backbone.patch_embed.proj`, `backbone.blocks.N.attn.qkv` (one fused Linear), ..., `class_embed.layers.N`,
`bbox_embed.layers.N`), shrunk so a CPU forward takes milliseconds. Tokens are laid out
[cls, patches..., det...] with one learned position embedding covering all of them. The MindSpore port
is `yolos_ms.py`; tests/reference_maps/yolos_tiny.json maps a MindSpore training template onto these keys.
"""
import torch
from torch import nn


class PatchEmbed(nn.Module):
    """Non-overlapping patches projected by a strided conv, flattened to (batch, patches, dim)."""

    def __init__(self, patch_size, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Transformer feed-forward: fc1, exact GELU, fc2."""

    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim, num_heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT backbone that appends `det_tokens` learned detection tokens and returns their features."""

    def __init__(self, img_size, patch_size, embed_dim, depth, num_heads, det_tokens):
        super().__init__()
        num_patches = (img_size[0] // patch_size) * (img_size[1] // patch_size)
        self.det_tokens = det_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.det_token = nn.Parameter(torch.zeros(1, det_tokens, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches + det_tokens, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        for token in (self.cls_token, self.det_token, self.pos_embed):
            nn.init.trunc_normal_(token, std=0.02)

    def forward(self, x):
        patches = self.patch_embed(x)
        batch = patches.shape[0]
        x = torch.cat([self.cls_token.expand(batch, -1, -1), patches,
                       self.det_token.expand(batch, -1, -1)], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, -self.det_tokens:]


class MLP(nn.Module):
    """DETR's head: Linear layers with ReLU between them (not after the last)."""

    def __init__(self, in_dim, hidden_dim, out_dim, num_layers):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class Yolos(nn.Module):
    """Backbone plus class and box heads applied to the detection tokens."""

    def __init__(self, img_size, patch_size, embed_dim, depth, num_heads, det_tokens, num_classes):
        super().__init__()
        self.backbone = VisionTransformer(img_size, patch_size, embed_dim, depth, num_heads, det_tokens)
        # One extra logit for DETR's "no object" class.
        self.class_embed = MLP(embed_dim, embed_dim, num_classes + 1, 3)
        self.bbox_embed = MLP(embed_dim, embed_dim, 4, 3)

    def forward(self, x):
        det = self.backbone(x)
        return {"pred_logits": self.class_embed(det), "pred_boxes": self.bbox_embed(det).sigmoid()}


def yolos_tiny(img_size=(64, 96), patch_size=16, embed_dim=192, depth=4, num_heads=3, det_tokens=10,
               num_classes=5):
    """Return a randomly initialised small YOLOS."""
    return Yolos(tuple(img_size), patch_size, embed_dim, depth, num_heads, det_tokens, num_classes)
