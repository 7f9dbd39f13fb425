"""Reading a run's TOML config into dataclasses (pt2ms.running.build builds the models it names).

Every path in a config is relative to the config file. Unknown keys are an error, so that a typo is
not silently ignored.
"""

import dataclasses
import importlib
import importlib.util
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pt2ms.errors import Pt2MsError
from pt2ms.formats.hf_folder import weights_file

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The example configs: the checkout's configs/, or, installed with pip, the copy the wheel ships as pt2ms/configs/.
BUNDLED_CONFIGS = PROJECT_ROOT / "configs"
INSTALLED = not BUNDLED_CONFIGS.is_dir()
if INSTALLED:
    BUNDLED_CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = BUNDLED_CONFIGS / "efficientnet_b0.toml"
# The factory that builds the PyTorch model of a Hugging Face folder named with no [torch] model.
HF_FACTORY = "pt2ms.running.hf:from_folder"


@dataclass
class TorchSection:
    checkpoint: Path | None = None     # .pth/.pt/.bin/.safetensors, a sharded *.index.json, or a HF folder
    model: str | None = None           # "package.module:factory" or "path/to/file.py:factory"
    kwargs: dict = field(default_factory=dict)
    state_dict_key: str | None = None  # where the state dict sits in the file; None: found automatically
    trust_pickle: bool = False         # True runs code in the .pth (only for files you trust)
    device: str = "cpu"                # where stage 4 and the probe run the model: cpu, cuda, cuda:N or mps


@dataclass
class MindSporeSection:
    model: str | None = None           # factory of the target Cell
    template: Path | None = None       # or a .ckpt saved from the target (names and shapes only)
    kwargs: dict = field(default_factory=dict)
    device: str = "CPU"                # where stage 4 and the probe run the Cell: CPU, GPU, Ascend or Ascend:N


@dataclass
class InputSpec:
    shape: list
    dtype: str = "float32"             # float inputs are seeded normal(0, 1)
    low: int = 0                       # integer inputs are seeded uniform in [low, high)
    high: int = 2


@dataclass
class VerifySection:
    inputs: list = field(default_factory=list)   # one InputSpec (or bare shape) per positional input
    seed: int = 0
    tolerance: float = 1e-4            # largest error allowed, relative to the largest output magnitude
    #                                    (unset: by dtype, DEFAULT_TOLERANCES)
    dataset: str | None = None         # factory of a map-style dataset (__getitem__/__len__) to use instead
    dataset_kwargs: dict = field(default_factory=dict)
    dataset_inputs: int = 1            # how many leading fields of each sample the models take
    batch_size: int = 2
    batches: int = 2
    layers: bool = True                # compare layer by layer as well as the outputs
    train: "TrainSection | None" = None  # [verify.train]: how 4_verify.py --train runs its step
    outputs: dict = field(default_factory=dict)  # which outputs correspond: { torch = ["logits"], mindspore = [0] }
    dtype: str = "float32"             # both models compute in it: stage 4 casts the weights on load


@dataclass
class TrainSection:
    """[verify.train]: one training step on both models (4_verify.py --train); every key is optional."""
    loss: str = "mse"                  # "mse" (seeded target shaped like output 0) or "cross_entropy"
    torch_loss: str | None = None      # or a factory per side: returns loss(output, labels) -> scalar
    mindspore_loss: str | None = None
    optimizer: str = "sgd"             # "sgd", "momentum", "adam" or "adamw"
    lr: float = 0.01
    momentum: float = 0.9              # for optimizer = "momentum"
    weight_decay: float = 0.0
    steps: int = 1
    labels: object = None              # None: seeded; an input spec table; or "dataset" (the sample's next field)
    tolerance: float | None = None     # for gradients, updates, statistics; default 1e-3


@dataclass
class PathsSection:
    maps: Path = PROJECT_ROOT / "maps"
    outputs: Path = PROJECT_ROOT / "outputs"


@dataclass
class Config:
    name: str
    source: Path                       # the config file itself
    torch: TorchSection
    mindspore: MindSporeSection
    verify: VerifySection
    paths: PathsSection
    example: "ExampleSection"

    @property
    def map_path(self):
        return _inside(self.paths.maps / f"{self.name}.json", self.paths.maps, self.source, "map file")

    @property
    def output_dir(self):
        return _inside(self.paths.outputs / self.name, self.paths.outputs, self.source, "output folder")


# A run's name becomes file names under maps/ and outputs/: letters, digits, '.', '_' and '-', not starting
# with '.', so that no name (not "..", not "a/../b") reaches outside those folders.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
MAX_INPUT_ELEMENTS = 2**31  # one [verify] input of more values would not fit in memory anyway
INT64 = 2**63
INPUT_DTYPES = ("float32", "float16", "float64", "int64", "int32", "bool")  # what running.models.make_inputs makes
COMPUTE_DTYPES = ("float32", "float16", "bfloat16", "float64")  # [verify] dtype
# [verify] tolerance when the config sets none: two right implementations computing in float16 or bfloat16 part
# by about a hundred roundings of 2**-11 or 2**-8 over a deep model, not float32's 1e-7.
DEFAULT_TOLERANCES = {"float64": 1e-4, "float32": 1e-4, "float16": 2e-2, "bfloat16": 1e-1}
TORCH_DEVICE = re.compile(r"cpu|cuda|cuda:\d{1,3}|mps")
MS_DEVICE = re.compile(r"(CPU|GPU|Ascend)(:\d{1,3})?")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value):
    return isinstance(value, str) and "\0" not in value and len(value) <= 4096


# What each key holds: (test, what the error says it must be). Every config value is checked against this
# before it is used, so that a quoted "false" is not true, a string is not a seed, and a shape cannot ask for
# 112 GiB. Paths and factories are strings here; whether they exist is checked where they are used.
KINDS = {
    "text": (_is_text, "a string"),
    "bool": (lambda value: isinstance(value, bool), "true or false (unquoted)"),
    "table": (lambda value: isinstance(value, dict), "a table, e.g. { key = 1 }"),
    "seed": (lambda value: _is_int(value) and 0 <= value < 2**32, "an integer from 0 to 2**32 - 1"),
    "count": (lambda value: _is_int(value) and 1 <= value <= 2**20, "a positive integer (at most 2**20)"),
    "int64": (lambda value: _is_int(value) and -INT64 <= value < INT64, "a 64-bit integer"),
    "positive": (lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)
                 and 0 < value < math.inf, "a positive number, e.g. 1e-4"),
    "list": (lambda value: isinstance(value, list), "a list"),
    "nonnegative": (lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)
                    and 0 <= value < math.inf, "a number of at least 0"),
    "labels": (lambda value: isinstance(value, dict) or value == "dataset", 'an input spec table or "dataset"'),
    "shape": (lambda value: isinstance(value, list) and len(value) <= 32
              and all(_is_int(size) and size >= 1 for size in value), "a list of positive integers, e.g. [2, 3, 224, 224]"),
    "compute_dtype": (lambda value: value in COMPUTE_DTYPES, f"one of {', '.join(COMPUTE_DTYPES)}"),
    "torch_device": (lambda value: isinstance(value, str) and TORCH_DEVICE.fullmatch(value) is not None,
                     '"cpu", "cuda", "cuda:N" or "mps"'),
    "ms_device": (lambda value: isinstance(value, str) and MS_DEVICE.fullmatch(value) is not None,
                  '"CPU", "GPU", "Ascend" or "Ascend:N"'),
}
SCHEMA = {
    "torch": {"checkpoint": "text", "model": "text", "kwargs": "table", "state_dict_key": "text", "trust_pickle": "bool",
              "device": "torch_device"},
    "mindspore": {"model": "text", "template": "text", "kwargs": "table", "device": "ms_device"},
    "verify": {"inputs": "list", "seed": "seed", "tolerance": "positive", "dataset": "text", "dataset_kwargs": "table",
               "dataset_inputs": "count", "batch_size": "count", "batches": "count", "layers": "bool", "train": "table",
               "outputs": "table", "dtype": "compute_dtype"},
    "verify.train": {"loss": "text", "torch_loss": "text", "mindspore_loss": "text", "optimizer": "text",
                     "lr": "positive", "momentum": "nonnegative", "weight_decay": "nonnegative", "steps": "count",
                     "labels": "labels", "tolerance": "positive"},
    "verify.inputs": {"shape": "shape", "dtype": "text", "low": "int64", "high": "int64"},
    "paths": {"maps": "text", "outputs": "text"},
    "example": {"template": "text"},
}


def _check(where, key, value, label):
    test, wanted = KINDS[SCHEMA[where][key]]
    if not test(value):
        raise Pt2MsError(f"{label} {key} must be {wanted}, got {_shown(value)}")


def _shown(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _section(cls, data, where, base, label=None):
    """Build one section dataclass, refusing unknown keys and values of the wrong kind, resolving paths."""
    if not isinstance(data, dict):
        raise Pt2MsError(f"[{where}] must be a table, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise Pt2MsError(f"unknown key {unknown[0]!r} in [{where}] (known: {', '.join(known)})")
    values = {}
    for key, value in data.items():
        _check(where, key, value, label or f"[{where}]")
        if "Path" in str(known[key].type):
            value = _resolve_path(value, base, where)
        values[key] = value
    return cls(**values)


def _inside(path, folder, source, what):
    """`path`, refused unless it resolves to a place inside `folder` (symlinks followed)."""
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError) as error:  # Python 3.11 reports a symlink loop as RuntimeError
        raise Pt2MsError(f"{source}: {what} {path}: {error}") from None
    if not inside:
        raise Pt2MsError(f"{source}: {what} {path} would lie outside {folder}; pick another name")
    return path


def _resolve_path(value, base, where):
    """A config path: relative to the config file, or "package:NAME/inside/it" for files a package ships."""
    if not isinstance(value, str):
        raise Pt2MsError(f"[{where}] paths must be strings, got {value!r}")
    try:
        if value.startswith("package:"):
            package, _, inside = value.removeprefix("package:").partition("/")
            spec = importlib.util.find_spec(package) if package else None
            if spec is None or not spec.submodule_search_locations:
                raise Pt2MsError(f"[{where}] {value!r}: package {package!r} is not installed")
            return Path(list(spec.submodule_search_locations)[0]) / inside
        return (base / value).resolve()
    except (ImportError, ValueError, OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (3.11)
        raise Pt2MsError(f"[{where}] {value!r}: {error}") from None


@dataclass
class ExampleSection:
    template: str | None = None        # factory(path) that writes the example's MindSpore template


def _input_spec(index, item, source):
    """One [verify] input: a bare shape or a table; its size is counted exactly, before anything is allocated."""
    if isinstance(item, list):
        item = {"shape": item}
    label = f"[verify] inputs: input {index}"
    if not isinstance(item, dict) or "shape" not in item:
        raise Pt2MsError(f"{label} must be a shape list or a table with a shape, got {_shown(item)}")
    spec = _section(InputSpec, item, "verify.inputs", source.parent, label)
    if math.prod(spec.shape) > MAX_INPUT_ELEMENTS:
        raise Pt2MsError(f"{label} has shape {spec.shape}: {math.prod(spec.shape):,} values, more than "
                         f"{MAX_INPUT_ELEMENTS:,}; use a smaller batch or size")
    if spec.dtype not in INPUT_DTYPES:
        raise Pt2MsError(f"{label}: dtype {spec.dtype!r} is not supported (use one of {', '.join(INPUT_DTYPES)})")
    if spec.low >= spec.high:
        raise Pt2MsError(f"{label}: low ({spec.low}) must be below high ({spec.high})")
    return spec


def _check_folders(paths):
    for key in ("maps", "outputs"):
        folder = getattr(paths, key)
        if folder.exists() and not folder.is_dir():
            raise Pt2MsError(f"[paths] {key}: {folder} is a file, not a folder")


def _train_section(data, source):
    try:
        train = _section(TrainSection, data, "verify.train", source.parent)
    except Pt2MsError as error:
        raise Pt2MsError(f"{source}: {error}") from None
    if isinstance(train.labels, dict):
        train.labels = _section(InputSpec, train.labels, "verify.inputs", source.parent, "[verify.train] labels")
    elif train.labels not in (None, "dataset"):
        raise Pt2MsError(f"{source}: [verify.train] labels must be an input spec table or \"dataset\", got {train.labels!r}")
    return train


def load_config(path=None):
    """Read a TOML config (the bundled default example when `path` is None)."""
    source = Path(path or DEFAULT_CONFIG).resolve()
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        bundled = f" (the bundled examples: {BUNDLED_CONFIGS}/)" if INSTALLED else ""
        raise Pt2MsError(f"{source}: config file not found{bundled}") from None
    except IsADirectoryError:
        raise Pt2MsError(f"{source}: is a folder, not a config file") from None
    except OSError as error:
        raise Pt2MsError(f"{source}: cannot read the config ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise Pt2MsError(f"{source}: not UTF-8 text (byte {error.start}); save the config as UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise Pt2MsError(f"{source}: TOML syntax error: {error}") from None
    data = dict(data)
    name = data.pop("name", None)
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise Pt2MsError(f"{source}: missing or bad top-level key 'name': {name!r} (letters, digits, '.', '_' and "
                         "'-', at most 100, not starting with '.'; e.g. name = \"resnet50\")")
    base = source.parent
    if INSTALLED and base == BUNDLED_CONFIGS:
        # A bundled example run from an installed package: its "../outputs/..." paths and its maps/ and outputs/
        # go into the current folder, as if the configs lay in ./configs/, never into site-packages.
        base = Path.cwd().resolve() / "configs"
    sections = {"torch": TorchSection, "mindspore": MindSporeSection, "verify": VerifySection, "paths": PathsSection,
                "example": ExampleSection}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise Pt2MsError(f"{source}: unknown key {unknown[0]!r} (known: name, {', '.join(sections)})")
    try:
        built = {key: _section(cls, data.get(key, {}), key, base) for key, cls in sections.items()}
        built["verify"].inputs = [_input_spec(index, item, source)
                                  for index, item in enumerate(built["verify"].inputs)]
        _check_folders(built["paths"])
    except Pt2MsError as error:
        raise Pt2MsError(f"{source}: {error}") from None
    if INSTALLED:  # no checkout to hold maps/ and outputs/: beside the config (a bundled one: the current folder)
        home = base.parent if source.parent == BUNDLED_CONFIGS else base
        for key in set(("maps", "outputs")) - set(data.get("paths", {})):
            setattr(built["paths"], key, home / key)
    if "tolerance" not in data.get("verify", {}):
        built["verify"].tolerance = DEFAULT_TOLERANCES[built["verify"].dtype]
    if built["verify"].train is not None:
        built["verify"].train = _train_section(built["verify"].train, source)
    config = Config(name=name, source=source, **built)
    if config.torch.checkpoint is None:
        raise Pt2MsError(f"{source}: missing key 'checkpoint' in [torch]")
    if config.torch.checkpoint.is_dir():  # a Hugging Face model folder: its weights file, and maybe its model
        adopt_folder(config.torch)
    if config.mindspore.model is None and config.mindspore.template is None:
        raise Pt2MsError(f"{source}: [mindspore] needs 'model' (a factory) or 'template' (a .ckpt)")
    return config


def adopt_folder(torch_section):
    """Point [torch] at a folder's weights file, and build the model from its config.json unless a factory is named."""
    folder = torch_section.checkpoint
    torch_section.checkpoint = weights_file(folder)
    if torch_section.model is None:
        if not (folder / "config.json").is_file():
            raise Pt2MsError(f"{folder}: no config.json to build the PyTorch model from; name a factory as [torch] model")
        # kwargs, if any, override config.json fields (e.g. attn_implementation = "eager").
        torch_section.model = HF_FACTORY
        torch_section.kwargs = {"folder": str(folder), **torch_section.kwargs}
