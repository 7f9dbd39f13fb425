"""Real detector pairs nobody here wrote, through the four stages: stage 2's map, stage 4's verdict and cause.

Issue 18's first two pairs, each built from its own library's code with seeded random weights (nothing
downloads weights):
- `yolov8n`: ultralytics 8.2.103's `DetectionModel("yolov8n.yaml")` against mindyolo 0.5.0's YOLOv8 built from its
  `configs/yolov8/yolov8n.yaml` (the layer list is written out below: mindyolo's wheel ships no configs). The
  heads run their same-shaped branches in other orders (ultralytics every box branch, then every class branch;
  mindyolo box and class level by level). Compared: the raw per-level head maps (output 1 on both sides; output
  0 is the decoded boxes, transposed on mindyolo's side).
- `yolox_darknet53`: Megvii's `yolox` 0.3.0 (`exps/default/yolov3.py`'s model: YOLOFPN + YOLOXHead, BatchNorm
  eps 1e-3) against mindyolo's `configs/yolox/yolox-darknet53.yaml`. Compared: the decoded boxes (output 0),
  whose `exp` box decode amplifies float32 rounding through 53 layers.

Each pair gets a work folder with its config and weights; 1_show.py, 2_build_map.py, 3_pth2ckpt.py and
4_verify.py run as child processes (imports count; peak RSS is each child's own). Printed per pair: stage 2's
summary (mapped, probe), stage 4's verdict line and first cause (verify.json), the output's relative error, and
each stage's wall time. A pair whose packages are missing is skipped, saying so.

These packages are benchmark-only (not in the requirements files); install them beside the tests' requirements,
in a virtual environment of their own:
    python -m venv venv && venv/bin/pip install -r requirements-test.txt
    venv/bin/pip install --no-deps mindyolo==0.5.0 ultralytics==8.2.103 "setuptools<81" opencv-python-headless \
        requests urllib3 certifi torchvision==0.28.0
    venv/bin/pip install --no-deps --no-build-isolation yolox==0.3.0 loguru thop
Not ultralytics 8.3.0: its Detect builds YOLO11's class branch (depthwise convs) for every model, so its
"yolov8n" is not YOLOv8n (2.72 M parameters against mindyolo's 3.16 M). mindyolo imports pkg_resources,
hence setuptools < 81. torchvision is there for its metadata only: ultralytics reads its version at import, and
imports it only for NMS, which these runs never reach; `import torchvision` itself fails beside the CPU torch 2.13 (its C ops do not
load), so Megvii's `yolox.utils`, which imports it for NMS, is replaced below by its own `compat.py` (see
`_yolox_without_torchvision`).

    venv/bin/python benchmarks/real_detectors.py [yolov8n] [yolox_darknet53] [--size 320] [--keep FOLDER]
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()
STAGES = ["1_show.py", "2_build_map.py", "3_pth2ckpt.py", "4_verify.py"]

# mindyolo's network sections (configs/yolov8/yolov8n.yaml, configs/yolox/yolox-darknet53.yaml), as data.
YOLOV8_BACKBONE = [
    [-1, 1, "ConvNormAct", [64, 3, 2]], [-1, 1, "ConvNormAct", [128, 3, 2]], [-1, 3, "C2f", [128, True]],
    [-1, 1, "ConvNormAct", [256, 3, 2]], [-1, 6, "C2f", [256, True]], [-1, 1, "ConvNormAct", [512, 3, 2]],
    [-1, 6, "C2f", [512, True]], [-1, 1, "ConvNormAct", [1024, 3, 2]], [-1, 3, "C2f", [1024, True]],
    [-1, 1, "SPPF", [1024, 5]]]
YOLOV8_HEAD = [
    [-1, 1, "Upsample", ["None", 2, "'nearest'"]], [[-1, 6], 1, "Concat", [1]], [-1, 3, "C2f", [512]],
    [-1, 1, "Upsample", ["None", 2, "'nearest'"]], [[-1, 4], 1, "Concat", [1]], [-1, 3, "C2f", [256]],
    [-1, 1, "ConvNormAct", [256, 3, 2]], [[-1, 12], 1, "Concat", [1]], [-1, 3, "C2f", [512]],
    [-1, 1, "ConvNormAct", [512, 3, 2]], [[-1, 9], 1, "Concat", [1]], [-1, 3, "C2f", [1024]],
    [[15, 18, 21], 1, "YOLOv8Head", ["nc", "reg_max", "stride"]]]
YOLOV8_SCALES = {"n": (0.33, 0.25), "s": (0.33, 0.50)}  # depth_multiple, width_multiple

LEAKY = "act=nn.LeakyReLU(0.1)"
DARKNET53_BACKBONE = [
    [-1, 1, "ConvNormAct", [32, 3, 1, LEAKY]], [-1, 1, "ConvNormAct", [64, 3, 2, LEAKY]],
    [-1, 1, "Bottleneck", [64, LEAKY]], [-1, 1, "ConvNormAct", [128, 3, 2, LEAKY]], [-1, 2, "Bottleneck", [128, LEAKY]],
    [-1, 1, "ConvNormAct", [256, 3, 2, LEAKY]], [-1, 8, "Bottleneck", [256, LEAKY]],
    [-1, 1, "ConvNormAct", [512, 3, 2, LEAKY]], [-1, 8, "Bottleneck", [512, LEAKY]],
    [-1, 1, "ConvNormAct", [1024, 3, 2, LEAKY]], [-1, 4, "Bottleneck", [1024, LEAKY]],
    [-1, 1, "ConvNormAct", [512, 1, 1, LEAKY]], [-1, 1, "ConvNormAct", [1024, 3, 1, LEAKY]],
    [-1, 1, "SPPF", [512, LEAKY]], [-1, 1, "ConvNormAct", [1024, 3, 1, LEAKY]],
    [-1, 1, "ConvNormAct", [512, 1, 1, LEAKY]]]
DARKNET53_HEAD = [
    [-1, 1, "ConvNormAct", [256, 1, 1, LEAKY]], [-1, 1, "Upsample", ["None", 2, "'nearest'"]],
    [[-1, 8], 1, "Concat", [1]],
    *[[-1, 1, "ConvNormAct", [c, k, 1, LEAKY]] for c, k in ((256, 1), (512, 3), (256, 1), (512, 3), (256, 1))],
    [-1, 1, "ConvNormAct", [128, 1, 1, LEAKY]], [-1, 1, "Upsample", ["None", 2, "'nearest'"]],
    [[-1, 6], 1, "Concat", [1]],
    *[[-1, 1, "ConvNormAct", [c, k, 1, LEAKY]] for c, k in ((128, 1), (256, 3), (128, 1), (256, 3), (128, 1))],
    [[31, 23, 15], 1, "YOLOXHead", ["nc", "stride", "is_standard_backbone=False", LEAKY]]]

# id -> (packages it needs, torch factory, MindSpore factory, [verify] outputs)
PAIRS = {
    "yolov8n": (["ultralytics", "mindyolo"], "ultralytics_yolov8", "mindyolo_yolov8",
                '{ torch = [1], mindspore = [1] }'),
    "yolox_darknet53": (["yolox", "mindyolo"], "megvii_yolox_darknet53", "mindyolo_yolox_darknet53",
                        '{ torch = [0], mindspore = [0] }'),
}


def ultralytics_yolov8(scale="n", nc=80):
    """ultralytics' YOLOv8 DetectionModel from its packaged yaml (BatchNorm eps 1e-3, as ultralytics sets it)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(f"yolov8{scale}.yaml", nc=nc, verbose=False).eval()


def _mindyolo(model_name, network, nc):
    import mindspore as ms
    from mindyolo.models.model_factory import create_model
    from mindyolo.utils.config import Config

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    net = create_model(model_name=model_name, model_cfg=Config(network), num_classes=nc)
    net.set_train(False)
    return net


def mindyolo_yolov8(scale="n", nc=80):
    """mindyolo 0.5.0's YOLOv8 as its configs/yolov8/yolov8<scale>.yaml builds it."""
    depth, width = YOLOV8_SCALES[scale]
    return _mindyolo("yolov8", dict(model_name="yolov8", nc=nc, reg_max=16, depth_multiple=depth,
                                    width_multiple=width, stride=[8, 16, 32], backbone=YOLOV8_BACKBONE,
                                    head=YOLOV8_HEAD), nc)


def _yolox_without_torchvision():
    """Megvii's `yolox.utils` imports torchvision (for NMS, which inference never reaches), and torchvision
    does not import beside the CPU torch 2.13; its models need only `meshgrid` (utils/compat.py, loaded from
    the installed package) and `bboxes_iou` (training's label assignment)."""
    if "yolox.utils" in sys.modules:
        return
    folder = Path(importlib.util.find_spec("yolox").origin).parent / "utils"
    spec = importlib.util.spec_from_file_location("yolox.utils.compat", folder / "compat.py")
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    utils = types.ModuleType("yolox.utils")
    utils.meshgrid = compat.meshgrid

    def bboxes_iou(*_):
        raise NotImplementedError("training only: the real yolox.utils needs torchvision")

    utils.bboxes_iou = bboxes_iou
    sys.modules["yolox.utils"] = utils


def megvii_yolox_darknet53(nc=80):
    """Megvii's YOLOX-Darknet53 as exps/default/yolov3.py's get_model builds it (YOLOFPN, YOLOXHead with
    LeakyReLU, every BatchNorm at eps 1e-3 and momentum 0.03). The Exp class itself needs all of yolox.utils."""
    import torch

    _yolox_without_torchvision()
    from yolox.models import YOLOFPN, YOLOX, YOLOXHead

    model = YOLOX(YOLOFPN(), YOLOXHead(nc, 1.0, in_channels=[128, 256, 512], act="lrelu"))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps, module.momentum = 1e-3, 0.03
    model.head.initialize_biases(1e-2)
    return model.eval()


def mindyolo_yolox_darknet53(nc=80):
    """mindyolo 0.5.0's YOLOX as its configs/yolox/yolox-darknet53.yaml builds it."""
    return _mindyolo("yolox", dict(model_name="yolox", nc=nc, depth_multiple=1.0, width_multiple=1.0,
                                   stride=[8, 16, 32], backbone=DARKNET53_BACKBONE, head=DARKNET53_HEAD), nc)


def missing_packages(names):
    return [name for name in names if importlib.util.find_spec(name) is None]


def write_pair(directory, pair_id, size):
    """The pair's seeded PyTorch weights (BatchNorm statistics of one batch) and its config; returns the config."""
    import torch

    sys.path.insert(0, str(ROOT))
    from pt2ms.stages.demo import calibrate_batchnorm, randomize

    _, torch_factory, ms_factory, outputs = PAIRS[pair_id]
    model = randomize(globals()[torch_factory](), 0)
    calibrate_batchnorm(model, [torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))])
    torch.save(model.state_dict(), directory / "weights.pth")
    path = directory / f"{pair_id}.toml"
    path.write_text(f'name = "{pair_id}"\n[torch]\ncheckpoint = "weights.pth"\nmodel = "{HERE}:{torch_factory}"\n'
                    f'[mindspore]\nmodel = "{HERE}:{ms_factory}"\n'
                    f"[verify]\ninputs = [[1, 3, {size}, {size}]]\noutputs = {outputs}\n"
                    '[paths]\nmaps = "maps"\noutputs = "outputs"\n')
    return path


def run(args):
    """(exit code, wall seconds, peak RSS in MB, stdout and stderr) of one child process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        return os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss / 1024, out.read()


def first_line(stdout, pattern):
    found = re.search(pattern, stdout, re.MULTILINE)
    return found.group(0) if found else ""


def bench(pair_id, directory, size):
    """Runs the four stages on one pair; prints what they said and returns the figures."""
    config = write_pair(directory, pair_id, size)
    row = {"pair": pair_id, "input": [1, 3, size, size], "stages": {}}
    for script in STAGES:
        # --allow-initial: mindyolo's heads keep their strides ([8, 16, 32]) as a Parameter, which the PyTorch
        # side holds outside its state dict; mindyolo's constructor sets it, so its initial value is the right one.
        extra = ["--allow-initial"] if script == "3_pth2ckpt.py" else []
        code, wall, peak, stdout = run([script, "--config", str(config), *extra])
        row["stages"][script] = {"exit": code, "wall_s": round(wall, 1), "peak_mb": round(peak)}
        if script == "2_build_map.py":
            row["mapped"] = first_line(stdout, r"^mapped .*$")
            row["probe"] = first_line(stdout, r"^probe.*$")
        if script == "4_verify.py":
            row["verdict_line"] = first_line(stdout, r"^(agree|differ|not verified|not compared)[^\n]*$")
        if code not in (0, 1):
            row["failed"] = f"{script} exit {code}: {stdout.strip().splitlines()[-1] if stdout.strip() else ''}"
            print(stdout[-3000:], file=sys.stderr)
            return row
    report = json.loads((directory / "outputs" / pair_id / "verify.json").read_text())
    row.update(verdict=report["verdict"], cause=report["cause"], first_divergence=report["first_divergence"],
               output_relative=[output.get("relative") for output in report["outputs"]],
               tolerance=report["tolerance"], layers_differ=report["layers_differ"],
               layers_paired=report["layers_paired"], unconfirmed=report.get("unconfirmed_findings", [])[:3])
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="*", metavar="pair", help=f"which pairs ({', '.join(PAIRS)}; default all)")
    parser.add_argument("--size", type=int, default=320, help="input image side (default 320)")
    parser.add_argument("--keep", type=Path, help="a folder to keep each pair's work folder in")
    args = parser.parse_args()
    unknown = set(args.pairs) - set(PAIRS)
    if unknown:
        parser.error(f"unknown pair(s) {', '.join(sorted(unknown))}; known: {', '.join(PAIRS)}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; python {sys.version.split()[0]}")
    for pair_id in args.pairs or list(PAIRS):
        missing = missing_packages(PAIRS[pair_id][0])
        if missing:
            print(f"{pair_id}: skipped, not installed: {', '.join(missing)} (see this script's docstring)")
            continue
        directory = Path(tempfile.mkdtemp(prefix=f"pt2ms-{pair_id}-")) if not args.keep else args.keep / pair_id
        directory.mkdir(parents=True, exist_ok=True)
        try:
            row = bench(pair_id, directory, args.size)
        finally:
            if not args.keep:
                shutil.rmtree(directory, ignore_errors=True)
        print(f"\n== {pair_id} ({row['input']})")
        for key in ("mapped", "probe", "verdict_line", "first_divergence", "output_relative", "tolerance",
                    "layers_paired", "layers_differ", "unconfirmed", "failed"):
            if row.get(key) not in (None, "", []):
                print(f"  {key}: {row[key]}")
        print("  stages: " + "; ".join(f"{script} {s['wall_s']} s, {s['peak_mb']:,} MB, exit {s['exit']}"
                                       for script, s in row["stages"].items()))
        print("  json: " + json.dumps(row), flush=True)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
