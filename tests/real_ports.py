"""Real pairs nobody here wrote: Hugging Face transformers' PyTorch vision models against MindCV's own ports.

Both sides are the zoos' real code (installed by the test command), built small and offline. The PyTorch
side gets seeded random weights (BatchNorm statistics measured on a seeded batch), saved as a real .pth.
"""

import json

import torch

from pt2ms.stages.demo import calibrate_batchnorm, randomize

# id -> (transformers config class, model class, config kwargs, MindCV factory, its kwargs, input shape)
REAL_PAIRS = {
    "resnet18": ("ResNetConfig", "ResNetForImageClassification",
                 dict(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic", embedding_size=64,
                      num_labels=10, downsample_in_first_stage=False),
                 "mindcv.models.resnet:resnet18", dict(num_classes=10), [2, 3, 64, 64]),
    "vit": ("ViTConfig", "ViTForImageClassification",
            dict(hidden_size=192, num_hidden_layers=2, num_attention_heads=3, intermediate_size=768, image_size=224,
                 patch_size=16, num_labels=10),
            "mindcv.models.vit:VisionTransformer", dict(num_classes=10, embed_dim=192, depth=2, num_heads=3),
            [2, 3, 224, 224]),
    "mobilenet_v2": ("MobileNetV2Config", "MobileNetV2ForImageClassification", dict(num_labels=10, tf_padding=False),
                     "mindcv.models.mobilenetv2:MobileNetV2", dict(num_classes=10), [2, 3, 64, 64]),
    "convnext": ("ConvNextConfig", "ConvNextForImageClassification",
                 dict(depths=[1, 1, 2, 1], hidden_sizes=[16, 32, 64, 128], num_labels=10),
                 "mindcv.models.convnext:ConvNeXt",
                 dict(in_channels=3, num_classes=10, depths=[1, 1, 2, 1], dims=[16, 32, 64, 128]), [2, 3, 64, 64]),
}


def toml_value(value):
    """A Python value (dict, list, bool, number, string) written as TOML, for a pair's config."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value)


def hf_model(config_cls, model_cls, kwargs):
    """A transformers model built from a config, no download."""
    import transformers

    torch.manual_seed(0)
    return getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs)).eval()


def save_weights(pair_id, path):
    """Seeded weights for the PyTorch side of a pair, saved as a real state-dict .pth."""
    config_cls, model_cls, kwargs, _, _, shape = REAL_PAIRS[pair_id]
    model = randomize(hf_model(config_cls, model_cls, kwargs), 0)
    calibrate_batchnorm(model, [torch.randn(*shape, generator=torch.Generator().manual_seed(1))])
    torch.save(model.state_dict(), path)
