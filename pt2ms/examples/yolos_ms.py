"""MindSpore port of `yolos_torch.py`, plus the training-checkpoint template seed 004's user started from.

Same structure and attribute names as the PyTorch model, built from MindSpore's own layers, with the
defaults that would change the function overridden: nn.LayerNorm epsilon=1e-6 (MindSpore's default is
1e-7), nn.GELU(approximate=False) (the default is the tanh approximation), nn.Conv2d pad_mode='valid' and
has_bias=True (defaults 'same' and False). Its parameter names are the PyTorch keys with LayerNorm's
weight/bias renamed gamma/beta.

`save_training_template` writes what a real MindSpore training script saves. Its train-step cell is a
plain `nn.Cell` (auto_prefix on) holding the model as `self.network` and the Adam optimizer as
`self.optimizer`. The optimizer holds the model's own Parameter objects, and assigning it to the
attribute `optimizer` renames every parameter it holds, so each model parameter's `Parameter.name`
becomes `optimizer.<model name>` (`optimizer.backbone.cls_token`), even though its attribute path is
`network.backbone.cls_token`. Adam's own state gets the same prefix (`optimizer.global_step`,
`optimizer.learning_rate`, `optimizer.beta1_power`, `optimizer.beta2_power`, `optimizer.moment1.<model
name>`, `optimizer.moment2.<model name>`), and `ms.save_checkpoint(cell)` writes all of it under those
names. MindSpore's own `nn.TrainOneStepCell` sets auto_prefix=False and would keep the plain names.
"""
import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.common.initializer import TruncatedNormal, initializer


class PatchEmbed(nn.Cell):
    """Non-overlapping patches projected by a strided conv, flattened to (batch, patches, dim)."""

    def __init__(self, patch_size, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size, pad_mode="valid", has_bias=True)

    def construct(self, x):
        x = self.proj(x)
        return x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1)


class Attention(nn.Cell):
    """Multi-head self-attention with one fused qkv projection."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Dense(dim, dim * 3)
        self.proj = nn.Dense(dim, dim)

    def construct(self, x):
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        qkv = qkv.transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ops.softmax(ops.matmul(q, k.swapaxes(-2, -1)) * self.scale, axis=-1)
        return self.proj(ops.matmul(attn, v).swapaxes(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Cell):
    """Transformer feed-forward: fc1, exact GELU, fc2."""

    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Dense(dim, hidden_dim)
        self.act = nn.GELU(approximate=False)
        self.fc2 = nn.Dense(hidden_dim, dim)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Cell):
    """Pre-norm transformer block."""

    def __init__(self, dim, num_heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm((dim,), epsilon=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm((dim,), epsilon=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def construct(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Cell):
    """ViT backbone that appends `det_tokens` learned detection tokens and returns their features."""

    def __init__(self, img_size, patch_size, embed_dim, depth, num_heads, det_tokens):
        super().__init__()
        num_patches = (img_size[0] // patch_size) * (img_size[1] // patch_size)
        self.det_tokens = det_tokens
        self.cls_token = _token((1, 1, embed_dim), "cls_token")
        self.det_token = _token((1, det_tokens, embed_dim), "det_token")
        self.pos_embed = _token((1, 1 + num_patches + det_tokens, embed_dim), "pos_embed")
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.blocks = nn.CellList([Block(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm((embed_dim,), epsilon=1e-6)

    def construct(self, x):
        patches = self.patch_embed(x)
        batch = patches.shape[0]
        x = ops.cat([ops.tile(self.cls_token, (batch, 1, 1)), patches,
                     ops.tile(self.det_token, (batch, 1, 1))], axis=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, -self.det_tokens:]


def _token(shape, name):
    """A learned token/position tensor, initialised like timm's trunc_normal_(std=0.02)."""
    return ms.Parameter(initializer(TruncatedNormal(0.02), shape, ms.float32), name=name)


class MLP(nn.Cell):
    """DETR's head: Dense layers with ReLU between them (not after the last)."""

    def __init__(self, in_dim, hidden_dim, out_dim, num_layers):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.CellList([nn.Dense(a, b) for a, b in zip(dims[:-1], dims[1:])])

    def construct(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = ops.relu(x)
        return x


class Yolos(nn.Cell):
    """Backbone plus class and box heads applied to the detection tokens."""

    def __init__(self, img_size, patch_size, embed_dim, depth, num_heads, det_tokens, num_classes):
        super().__init__()
        self.backbone = VisionTransformer(img_size, patch_size, embed_dim, depth, num_heads, det_tokens)
        # One extra logit for DETR's "no object" class.
        self.class_embed = MLP(embed_dim, embed_dim, num_classes + 1, 3)
        self.bbox_embed = MLP(embed_dim, embed_dim, 4, 3)

    def construct(self, x):
        det = self.backbone(x)
        return {"pred_logits": self.class_embed(det), "pred_boxes": ops.sigmoid(self.bbox_embed(det))}


def yolos_tiny(img_size=(64, 96), patch_size=16, embed_dim=192, depth=4, num_heads=3, det_tokens=10,
               num_classes=5):
    """Return a randomly initialised small YOLOS (MindSpore)."""
    return Yolos(tuple(img_size), patch_size, embed_dim, depth, num_heads, det_tokens, num_classes)


class TrainStep(nn.Cell):
    """A hand-written train-one-step cell, as training scripts write them (auto_prefix left on)."""

    def __init__(self, network, optimizer):
        super().__init__()
        self.network = network
        self.optimizer = optimizer
        self.grad_fn = ms.value_and_grad(self._loss, None, optimizer.parameters)

    def _loss(self, images):
        # Stand-in for YOLOS's Hungarian-matched set loss: any scalar gives Adam real state to save.
        out = self.network(images)
        return (out["pred_logits"] ** 2).mean() + out["pred_boxes"].mean()

    def construct(self, images):
        loss, grads = self.grad_fn(images)
        self.optimizer(grads)
        return loss


def save_training_template(path, **model_kwargs):
    """Run one Adam step on a random batch and save the whole train-step cell to `path` (.ckpt)."""
    network = yolos_tiny(**model_kwargs)
    height, width = model_kwargs.get("img_size", (64, 96))
    train_step = TrainStep(network, nn.Adam(network.trainable_params(), learning_rate=1e-4))
    images = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    train_step(ms.Tensor(images))
    ms.save_checkpoint(train_step, str(path))
    return path
