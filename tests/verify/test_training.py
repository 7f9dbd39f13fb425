"""4_verify.py --train: one training step compared through the map, on pairs that agree in inference.

Each pair is a tiny PyTorch model with a seeded .pth and a MindSpore twin from tests/train_models.py, taken
through stages 1 to 3 and then 4_verify.py --train. Every broken twin agrees in inference (the overall
verdict) and differs in training, with the first divergence naming what differs.
"""

import json
import textwrap
from types import SimpleNamespace

import pytest

from pt2ms.config import PROJECT_ROOT, load_config
from tests import train_models
from tests.conftest import run_script, write_config
from tests.tiny_models import randomized_state_dict

FACTORIES = "tests.train_models:"


def make_project(directory, torch_kwargs="", ms_kwargs="", train="", verify=""):
    """A project taken through stages 1-3; kwargs are TOML tables, `train` the [verify.train] lines, `verify`
    lines that replace [verify]'s inputs."""
    import torch

    torch_model = train_models.torch_net(**_kwargs(torch_kwargs))
    torch.save(randomized_state_dict(torch_model), directory / "weights.pth")
    config = write_config(directory, torch_model=FACTORIES + "torch_net", ms_model=FACTORIES + "ms_net",
                          extra=f"[verify.train]\n{textwrap.dedent(train)}" if train else "")
    text = config.read_text()
    if verify:
        text = text.replace("inputs = [[2, 3, 8, 8]]", textwrap.dedent(verify).strip())
    for side, kwargs in (("torch_net", torch_kwargs), ("ms_net", ms_kwargs)):
        if kwargs:
            line = f'model = "{FACTORIES}{side}"'
            text = text.replace(line, f"{line}\nkwargs = {kwargs}")
    config.write_text(text)
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        code, _, stderr = run_script(script, "--config", str(config))
        assert code == 0, f"{script}: {stderr}"
    return config


def _kwargs(toml_table):
    import tomllib

    return tomllib.loads(f"x = {toml_table}")["x"] if toml_table else {}


def run_train(config, *args):
    code, stdout, stderr = run_script("4_verify.py", "--config", str(config), "--train", *args)
    out = config.parent / "outputs" / "tiny"
    assert (out / "verify.json").exists(), stderr
    report = json.loads((out / "verify.json").read_text())
    return SimpleNamespace(code=code, stdout=stdout, stderr=stderr, report=report, train=report.get("train"),
                           markdown=(out / "verify.md").read_text(), out=out)


def assert_differs_in_training_only(run, kind):
    # The outputs agree in inference; stage 4's verdict may still be "differ" when it reads a training-only
    # setting (momentum, dropout) from the models, which is what --train then shows at work.
    assert run.report["outputs_agree"], "the pair's outputs should agree in inference"
    assert all(row["verdict"] != "differ" for row in run.report["outputs"])
    assert run.code == 1 and run.train["agree"] is False
    detail = run.train["first_divergence_detail"]
    assert detail["kind"] == kind, run.train["first_divergence"]
    assert run.train["first_divergence"] in run.markdown and run.train["first_divergence"] in run.stdout
    return run.train["first_divergence"]


@pytest.fixture(scope="module")
def agree_run(tmp_path_factory):
    return run_train(make_project(tmp_path_factory.mktemp("agree")))


def test_identical_pair_trains_alike(agree_run):
    train = agree_run.train
    assert agree_run.code == 0 and train["agree"] and train["first_divergence"] is None
    assert train["loss"][0]["verdict"] != "differ" and train["loss"][0]["torch"] > 0
    # conv.weight, bn gamma/beta, fc weight/bias train on both sides; MindSpore's conv has no bias here.
    assert {row["mindspore"] for row in train["gradients"]} == {"conv.weight", "bn.gamma", "bn.beta", "fc.weight",
                                                               "fc.bias"}
    assert all(row["verdict"] != "differ" for row in train["gradients"] + train["after_step"] + train["statistics"])
    assert {row["mindspore"] for row in train["statistics"]} == {"bn.moving_mean", "bn.moving_variance"}
    assert all(row["before"] < 1e-6 for row in train["statistics"])
    assert "## Training (4_verify.py --train)" in agree_run.markdown
    assert (agree_run.out / "verify_train.png").stat().st_size > 1000


def test_gradients_follow_backward_order(agree_run):
    ranks = {row["mindspore"]: row["rank"] for row in agree_run.train["gradients"]}
    assert ranks["fc.weight"] < ranks["bn.gamma"] < ranks["conv.weight"]


def test_batchnorm_momentum_in_the_other_convention(tmp_path):
    """MindSpore momentum 0.1 (PyTorch's number) weighs the old statistic by 0.1: the statistics differ."""
    run = run_train(make_project(tmp_path, ms_kwargs="{ bn_momentum = 0.1 }"))
    text = assert_differs_in_training_only(run, "statistics")
    assert "bn" in run.train["first_divergence_detail"]["torch"] and "1 - 0.1 = 0.9" in text
    assert all(row["verdict"] != "differ" for row in run.train["gradients"])


def test_dropout_on_one_side_only(tmp_path):
    run = run_train(make_project(tmp_path, torch_kwargs="{ dropout = 0.5 }"))
    text = assert_differs_in_training_only(run, "dropout")
    assert "drop (p=0.5)" in text and "MindSpore has none" in text
    assert run.train["loss"][0]["verdict"] != "differ"  # dropout is off in the step itself


def test_parameter_frozen_on_one_side(tmp_path):
    run = run_train(make_project(tmp_path, ms_kwargs='{ frozen = "fc.bias" }'))
    text = assert_differs_in_training_only(run, "trains on one side")
    assert "fc.bias" in text and "PyTorch only" in text
    frozen = next(row for row in run.train["gradients"] if row["mindspore"] == "fc.bias")
    assert frozen["trains_one_side"] and frozen["verdict"] == "differ"
    update = next(row for row in run.train["after_step"] if row["mindspore"] == "fc.bias")
    assert update["torch_moved"] and not update["ms_moved"]


def test_loss_summed_on_one_side(tmp_path):
    run = run_train(make_project(tmp_path, train=f'''
        torch_loss = "{FACTORIES}torch_sum_mse"
        mindspore_loss = "{FACTORIES}ms_mean_mse"
        '''))
    text = assert_differs_in_training_only(run, "loss")
    # Output [2, 3]: PyTorch sums 6 squared errors where MindSpore averages them.
    assert "PyTorch's loss is 6 times MindSpore's" in text


def test_batchnorm_on_running_statistics_in_training(tmp_path):
    run = run_train(make_project(tmp_path, ms_kwargs="{ running_stats = true }"))
    text = assert_differs_in_training_only(run, "forward")
    assert "use_batch_statistics=False" in text and run.train["output"]["verdict"] == "differ"


def test_gradient_stopped_between_layers(tmp_path):
    """A stop_gradient after the BatchNorm: forward agrees, the gradient flowing into the BatchNorm does not."""
    run = run_train(make_project(tmp_path, ms_kwargs="{ stop_gradient = true }"))
    text = assert_differs_in_training_only(run, "between layers")
    detail = run.train["first_divergence_detail"]
    assert detail["torch"] == "bn" and detail["after"] == "fc" and "down to fc agrees" in text
    inflow = {row["torch"]: row["verdict"] for row in run.train["flowing"]}
    assert inflow["fc"] != "differ" and inflow["bn"] == "differ"


@pytest.mark.parametrize("train", [
    'optimizer = "momentum"\nsteps = 2\nweight_decay = 0.01',
    'optimizer = "adam"\nweight_decay = 0.01\nlr = 0.001',
    'optimizer = "adamw"\nweight_decay = 0.1\nsteps = 2',
    'loss = "cross_entropy"',
    'labels = { shape = [2, 3] }\nlr = 0.1',
])
def test_settings_train_alike(tmp_path, train):
    run = run_train(make_project(tmp_path, train=train))
    assert run.code == 0 and run.train["agree"], run.train["first_divergence"]
    assert len(run.train["loss"]) == (2 if "steps = 2" in train else 1)
    assert all(row["ms_moved"] and row["torch_moved"] for row in run.train["after_step"])


def test_labels_from_the_dataset(tmp_path):
    config = make_project(tmp_path, train='loss = "cross_entropy"\nlabels = "dataset"', verify="""\
        dataset = "tests.broken_models:MyDataset"
        batch_size = 2
        batches = 1""")
    run = run_train(config)
    assert run.code == 0 and run.train["agree"], run.train["first_divergence"]
    assert run.train["settings"]["labels"] == "the dataset's next field"
    assert run.train["settings"]["labels_shape"] == [2]


@pytest.mark.parametrize("train, words", [
    ('optimizer = "rmsprop"', "bad optimizer 'rmsprop'"),
    ("steps = 0", "[verify.train] steps must be a positive integer"),
    ('tolerance = "1e-3"', "[verify.train] tolerance must be a positive number"),
    ('torch_loss = "x.py:f"', "torch_loss and mindspore_loss go together"),
    ('labels = "next"', "labels must be an input spec table or \"dataset\""),
    ("learning_rate = 0.1", "unknown key 'learning_rate' in [verify.train]"),
    ('labels = "dataset"', 'bad labels = "dataset" without a [verify] dataset'),
])
def test_bad_train_settings_are_one_line_errors(tmp_path, train, words):
    config = make_project(tmp_path)
    config.write_text(config.read_text() + f"[verify.train]\n{train}\n")
    code, _, stderr = run_script("4_verify.py", "--config", str(config), "--train")
    assert code == 2 and words in stderr and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "outputs" / "tiny" / "verify.json").exists()  # refused before any work


def test_without_train_flag_nothing_changes(tmp_path):
    config = make_project(tmp_path, ms_kwargs="{ bn_momentum = 0.1 }")
    code, _, _ = run_script("4_verify.py", "--config", str(config))
    report = json.loads((tmp_path / "outputs" / "tiny" / "verify.json").read_text())
    assert "train" not in report
    # Inference alone reads the training-only setting from both models and names it, without calling the
    # agreeing models "differ": --train is what measures it.
    assert code == 0 and report["outputs_agree"] and report["cause"] is None
    assert [item["setting"] for item in report["differs_in_training"]] == ["momentum"]


@pytest.mark.parametrize("name", ["efficientnet_b0"])
def test_bundled_examples_train_alike(tmp_path, name):
    """Slow (about 60 s): the bundled example's port also trains like its PyTorch model.

    ResNet-50 takes twice as long: benchmarks/train_parity.py runs it (and prints time and memory).
    """
    from pt2ms.stages.build_map import build_map
    from pt2ms.stages.convert import convert
    from pt2ms.stages.demo import make_example_checkpoint
    from pt2ms.stages.show import show
    from pt2ms.stages.verify import verify

    config = load_config(PROJECT_ROOT / "configs" / f"{name}.toml")
    outputs = tmp_path / "outputs"
    config.torch.checkpoint = outputs / config.torch.checkpoint.relative_to(config.paths.outputs)
    config.paths.outputs, config.paths.maps = outputs, tmp_path / "maps"
    make_example_checkpoint(config)
    show(config)
    build_map(config)
    convert(config)
    result = verify(config, train=True)
    train = result["train"]
    assert train["agree"], train["first_divergence"]
    assert len(train["gradients"]) > 100 and len(train["statistics"]) > 60


def test_an_in_place_relu_after_the_last_norm_against_a_relu_layer_trains_alike(tmp_path):
    """torchvision's DenseNet applies F.relu(features, inplace=True) after norm5, MindCV a ReLU layer: the
    gradient flowing into the norm is compared at the norm's own output on both sides, so they agree."""
    run = run_train(make_project(tmp_path, torch_kwargs="{ inplace_relu = true }", ms_kwargs="{ relu_layer = true }"))
    assert run.code == 0 and run.train["agree"], run.train["first_divergence"]
    flowing = {row["torch"]: row["verdict"] for row in run.train["flowing"]}
    assert flowing["bn"] != "differ" and set(flowing) >= {"bn", "fc", "conv"}


def test_the_same_pair_with_momentum_in_the_other_convention_names_momentum(tmp_path):
    run = run_train(make_project(tmp_path, torch_kwargs="{ inplace_relu = true }",
                                 ms_kwargs="{ relu_layer = true, bn_momentum = 0.1 }"))
    text = assert_differs_in_training_only(run, "statistics")
    assert "1 - 0.1 = 0.9" in text and all(row["verdict"] != "differ" for row in run.train["flowing"])
