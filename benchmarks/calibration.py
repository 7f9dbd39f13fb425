"""Does stage 2's confidence mean the same on pairs it was not tuned on? Figures for issue 18.

Real pairs nobody here wrote, none of them used by the tests: transformers' PyTorch models (built offline from
configs, seeded random weights) against MindCV 0.3.0's MindSpore ports. Each goes through the four stages as a
user runs them (both models in the config, so stage 2's probe runs). The ports' own setting differences are
configured away on the PyTorch side (BatchNorm eps, GELU's approximation, ReLU for ReLU6; odd input sizes, at
which MindCV's `pad_mode="same"` pools pad as PyTorch's `padding=1` does), so that a right map makes the outputs
agree. The truth is then numeric: where stage 4's outputs agree within the tolerance ("outputs agree", whatever
stage 4's verdict says of the layers), every entry on the path is right (a wrong tensor in a used layer moves the
output by far more: swapping EfficientNet-B0's same-shaped depthwise and expand BatchNorms moves that layer's
output by 0.73-0.90); where they do not, an entry counts as wrong when its layer's isolated output is off by more
than WRONG and no setting of that layer changes its math (a layout error; a swap of two layers escapes that check,
so such pairs are marked "isolated only"; a layer with a differing setting, such as eps, is counted unchecked).

    /work/main/.venv/bin/python benchmarks/calibration.py [pair ...] [--keep FOLDER]

prints, per pair, the entries at confidence >= 0.9 and how many of them are wrong, the entries below and how many
of them are wrong, and the probe's decided / cannot-tell counts.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SURE, WRONG = 0.9, 0.1

# id -> (transformers config class, model class, config kwargs, MindCV factory, its kwargs, input shape)
PAIRS = {
    "resnet34": ("ResNetConfig", "ResNetForImageClassification",
                 dict(depths=[3, 4, 6, 3], hidden_sizes=[64, 128, 256, 512], layer_type="basic", embedding_size=64,
                      num_labels=10, downsample_in_first_stage=False),
                 "mindcv.models.resnet:resnet34", dict(num_classes=10), [2, 3, 65, 65]),
    "resnet50": ("ResNetConfig", "ResNetForImageClassification",
                 dict(depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck",
                      embedding_size=64, num_labels=10, downsample_in_first_stage=False),
                 "mindcv.models.resnet:resnet50", dict(num_classes=10), [2, 3, 65, 65]),
    "regnet_x_200mf": ("RegNetConfig", "RegNetForImageClassification",
                       dict(embedding_size=32, hidden_sizes=[24, 56, 152, 368], depths=[1, 1, 4, 7], groups_width=8,
                            layer_type="x", num_labels=10),
                       "mindcv.models.regnet:regnet_x_200mf", dict(num_classes=10), [2, 3, 64, 64]),
    "mobilenet_v1_025": ("MobileNetV1Config", "MobileNetV1ForImageClassification",
                         dict(depth_multiplier=0.25, num_labels=10, tf_padding=False, layer_norm_eps=1e-5,
                              hidden_act="relu"),
                         "mindcv.models.mobilenetv1:mobilenet_v1_025", dict(num_classes=10), [2, 3, 64, 64]),
    # MindCV keeps B0's BatchNorm eps at 1e-5; transformers' 1e-3 moved the isolated output of the last stage's
    # BatchNorms by 0.10-0.22 with the map right (running variances down to 8e-4 at this input size).
    "efficientnet_b0": ("EfficientNetConfig", "EfficientNetForImageClassification",
                        dict(width_coefficient=1.0, depth_coefficient=1.0, image_size=224, hidden_dim=1280,
                             num_labels=10, batch_norm_eps=1e-5),
                        "mindcv.models.efficientnet:efficientnet_b0", dict(num_classes=10), [2, 3, 64, 64]),
    "swin": ("SwinConfig", "SwinForImageClassification",
             dict(image_size=224, patch_size=4, embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8],
                  window_size=7, num_labels=10, hidden_act="gelu_pytorch_tanh"),
             "mindcv.models.swintransformer:SwinTransformer",
             dict(image_size=224, patch_size=4, num_classes=10, embed_dim=32, depths=[1, 1, 2, 1],
                  num_heads=[1, 2, 4, 8], window_size=7), [2, 3, 224, 224]),
}




def write_pair(directory, pair_id):
    """The pair's config and seeded PyTorch weights under `directory`; returns the config path."""
    import torch

    from pt2ms.stages.demo import calibrate_batchnorm, randomize
    from tests.real_ports import hf_model, toml_value

    config_cls, model_cls, kwargs, ms_factory, ms_kwargs, shape = PAIRS[pair_id]
    model = randomize(hf_model(config_cls, model_cls, kwargs), 0)
    calibrate_batchnorm(model, [torch.randn(*shape, generator=torch.Generator().manual_seed(1))])
    torch.save(model.state_dict(), directory / "weights.pth")
    path = directory / f"{pair_id}.toml"
    path.write_text(f'name = "{pair_id}"\n[torch]\ncheckpoint = "weights.pth"\nmodel = "tests.real_ports:hf_model"\n'
                    f"kwargs = {toml_value(dict(config_cls=config_cls, model_cls=model_cls, kwargs=kwargs))}\n"
                    f'[mindspore]\nmodel = "{ms_factory}"\nkwargs = {toml_value(ms_kwargs)}\n'
                    f"[verify]\ninputs = [{toml_value(shape)}]\n"
                    'outputs = { torch = ["logits"], mindspore = [0] }\n'
                    '[paths]\nmaps = "maps"\noutputs = "outputs"\n')
    return path


def _layer_errors(report):
    """MindSpore layer path -> its isolated relative error (None where stage 4 did not compare it alone)."""
    errors = {}
    for layer in report.get("layers", []):
        isolated = layer.get("isolated") or {}
        if layer.get("mindspore"):
            errors[layer["mindspore"]] = isolated.get("relative") if isolated.get("compared") else None
    return errors


def _owner(ms_name, errors):
    """The longest compared layer path that owns a parameter name."""
    parts = ms_name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        path = ".".join(parts[:end])
        if path in errors:
            return path
    return None


def matcher_alone(directory, pair_id, final):
    """Stage 2's matcher without the probe on the inventories stage 1 wrote, scored against the final map (right
    where the outputs agree): (entries >= SURE, of those wrong, entries below, of those wrong)."""
    from pt2ms.formats.inventory import read_inventory
    from pt2ms.mapping.matching import match
    from pt2ms.mapping.splits import propose_splits
    from pt2ms.stages.build_map import split_ignored, to_value

    folder = directory / "outputs" / pair_id
    ms_rows, torch_rows, _ = split_ignored(read_inventory(folder / "ms_params.csv"),
                                           read_inventory(folder / "torch_params.csv"))
    counts = [0, 0, 0, 0]
    for item in propose_splits(match(ms_rows, torch_rows), ms_rows, torch_rows):
        sure = item.confidence >= SURE
        counts[0 if sure else 2] += 1
        counts[1 if sure else 3] += to_value(item) != final.get(item.ms_name)
    return counts


def calibrate(pair_id, directory):
    from tests.conftest import run_script

    config = write_pair(directory, pair_id)
    started = time.perf_counter()
    # --allow-initial: MindCV's Swin keeps its relative-position index tables and attention masks as Parameters,
    # which transformers computes as buffers outside the state dict; both sides build them alike.
    codes = [run_script(*script, "--config", str(config))[0]
             for script in (("1_show.py",), ("2_build_map.py",), ("3_pth2ckpt.py", "--allow-initial"), ("4_verify.py",))]
    mapping = json.loads((directory / "maps" / f"{pair_id}.json").read_text())
    report = json.loads((directory / "outputs" / pair_id / "verify.json").read_text())
    errors = _layer_errors(report)
    for setting in report.get("settings_differ", []):
        if setting.get("effect") == "changes" and setting.get("mindspore") in errors:
            errors[setting["mindspore"]] = None     # its isolated error is the setting's, not the map's
    truth = "outputs agree" if report.get("outputs_agree") else "isolated only"
    row = {"pair": pair_id, "truth": truth, "codes": codes, "entries": len(mapping["map"]), "sure": 0, "sure_wrong": 0, "unsure": 0,
           "unsure_wrong": 0, "unchecked": 0, "null": 0, "wrong": [],
           "probed": sum(found["method"] == "probed" for found in mapping["found"].values()),
           "cannot_tell": sum("could not decide" in found["note"] for found in mapping["found"].values()),
           "agree": report.get("agree"), "output_error": max((output["relative"] for output in report["outputs"]
                                                               if output.get("relative") is not None), default=None),
           "seconds": round(time.perf_counter() - started)}
    if truth == "outputs agree":
        row["matcher_alone"] = matcher_alone(directory, pair_id, mapping["map"])
    for ms_name, value in mapping["map"].items():
        confidence = mapping["found"][ms_name]["confidence"]
        sure = confidence >= SURE
        row["sure" if sure else "unsure"] += 1
        if value is None:
            row["null"] += 1
        owner = _owner(ms_name, errors)
        error = errors.get(owner) if owner else None
        if truth == "outputs agree":
            wrong = value is None and mapping["found"][ms_name]["method"] != "none"
        elif error is None:
            row["unchecked"] += 1
            wrong = value is None
        else:
            wrong = error > WRONG
        if wrong:
            row["sure_wrong" if sure else "unsure_wrong"] += 1
            row["wrong"].append((ms_name, confidence, error))
    return row


def main(argv):
    keep = Path(argv[argv.index("--keep") + 1]) if "--keep" in argv else None  # a folder to keep each pair's files
    pairs = [arg for arg in argv if arg in PAIRS] or list(PAIRS)
    rows = []
    for pair_id in pairs:
        with tempfile.TemporaryDirectory() as folder:
            directory = keep / pair_id if keep else Path(folder)
            directory.mkdir(parents=True, exist_ok=True)
            try:
                rows.append(calibrate(pair_id, directory))
            except Exception as error:  # noqa: BLE001 - a pair that does not build is reported, the rest run
                rows.append({"pair": pair_id, "failed": f"{type(error).__name__}: {str(error)[:200]}"})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n| pair | truth | entries | >= {SURE} | of those wrong | < {SURE} | of those wrong | probed | "
          f"cannot tell | matcher alone: >= {SURE} (wrong), < {SURE} (wrong) | s |")
    print("| --- " * 11 + "|")
    for row in rows:
        if "failed" in row:
            print(f"| {row['pair']} | failed: {row['failed']} |")
            continue
        error = "-" if row["output_error"] is None else f"{row['output_error']:.1e}"
        print(f"| {row['pair']} | {row['truth']} ({error}) | {row['entries']} | {row['sure']} | {row['sure_wrong']} | "
              f"{row['unsure']} | {row['unsure_wrong']} | {row['probed']} | {row['cannot_tell']} | "
              f"{_alone(row.get('matcher_alone'))} | {row['seconds']} |")


def _alone(counts):
    return "-" if counts is None else f"{counts[0]} ({counts[1]}), {counts[2]} ({counts[3]})"


if __name__ == "__main__":
    main(sys.argv[1:])
