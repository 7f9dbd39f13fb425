"""Reading a run's TOML config into dataclasses, and building models from the factories it names.

Every path in a config is relative to the config file. Unknown keys are an error, so that a typo is
not silently ignored.
"""

import dataclasses
import importlib
import re
import importlib.util
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Pt2MsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "efficientnet_b0.toml"


@dataclass
class TorchSection:
    checkpoint: Path | None = None     # .pth/.pt/.bin/.safetensors, or a sharded *.index.json
    model: str | None = None           # "package.module:factory" or "path/to/file.py:factory"
    kwargs: dict = field(default_factory=dict)
    state_dict_key: str | None = None  # where the state dict sits in the file; None: found automatically
    trust_pickle: bool = False         # True runs code in the .pth (only for files you trust)


@dataclass
class MindSporeSection:
    model: str | None = None           # factory of the target Cell
    template: Path | None = None       # or a .ckpt saved from the target (names and shapes only)
    kwargs: dict = field(default_factory=dict)


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
    dataset: str | None = None         # factory of a map-style dataset (__getitem__/__len__) to use instead
    dataset_kwargs: dict = field(default_factory=dict)
    dataset_inputs: int = 1            # how many leading fields of each sample the models take
    batch_size: int = 2
    batches: int = 2
    layers: bool = True                # compare layer by layer as well as the outputs
    train: "TrainSection | None" = None  # [verify.train]: how 4_verify.py --train runs its step


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
# Keys whose value must be a real TOML boolean: a string such as "false" is truthy in Python, and for
# trust_pickle that would run a hostile pickle's code.
BOOLEAN_KEYS = {"trust_pickle", "layers"}


def _section(cls, data, where, base):
    """Build one section dataclass, refusing unknown keys and resolving paths against `base`."""
    if not isinstance(data, dict):
        raise Pt2MsError(f"[{where}] must be a table, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise Pt2MsError(f"unknown key {unknown[0]!r} in [{where}] (known: {', '.join(known)})")
    values = {}
    for key, value in data.items():
        if key in BOOLEAN_KEYS and not isinstance(value, bool):
            raise Pt2MsError(f"[{where}] {key} must be true or false (unquoted), got {value!r}")
        if "Path" in str(known[key].type):
            value = _resolve_path(value, base, where)
        values[key] = value
    return cls(**values)


def _inside(path, folder, source, what):
    """`path`, refused unless it resolves to a place inside `folder` (symlinks followed)."""
    if not path.resolve().is_relative_to(folder.resolve()):
        raise Pt2MsError(f"{source}: {what} {path} would lie outside {folder}; pick another name")
    return path


def _resolve_path(value, base, where):
    """A config path: relative to the config file, or "package:NAME/inside/it" for files a package ships."""
    if not isinstance(value, str):
        raise Pt2MsError(f"[{where}] paths must be strings, got {value!r}")
    if value.startswith("package:"):
        package, _, inside = value.removeprefix("package:").partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise Pt2MsError(f"[{where}] {value!r}: package {package!r} is not installed")
        return Path(list(spec.submodule_search_locations)[0]) / inside
    return (base / value).resolve()


@dataclass
class ExampleSection:
    template: str | None = None        # factory(path) that writes the example's MindSpore template


def _input_spec(item, source):
    if isinstance(item, list):
        return InputSpec(shape=item)
    if isinstance(item, dict):
        return _section(InputSpec, item, "verify.inputs", source.parent)
    raise Pt2MsError(f"{source}: each [verify] input must be a shape list or a table, got {item!r}")


def _train_section(data, source):
    try:
        train = _section(TrainSection, data, "verify.train", source.parent)
    except Pt2MsError as error:
        raise Pt2MsError(f"{source}: {error}") from None
    if isinstance(train.labels, dict):
        train.labels = _section(InputSpec, train.labels, "verify.train.labels", source.parent)
    elif train.labels not in (None, "dataset"):
        raise Pt2MsError(f"{source}: [verify.train] labels must be an input spec table or \"dataset\", got {train.labels!r}")
    return train


def load_config(path=None):
    """Read a TOML config (the bundled default example when `path` is None)."""
    source = Path(path or DEFAULT_CONFIG).resolve()
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Pt2MsError(f"{source}: config file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise Pt2MsError(f"{source}: TOML syntax error: {error}") from None
    data = dict(data)
    name = data.pop("name", None)
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise Pt2MsError(f"{source}: missing or bad top-level key 'name': {name!r} (letters, digits, '.', '_' and "
                         "'-', at most 100, not starting with '.'; e.g. name = \"resnet50\")")
    base = source.parent
    sections = {"torch": TorchSection, "mindspore": MindSporeSection, "verify": VerifySection, "paths": PathsSection,
                "example": ExampleSection}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise Pt2MsError(f"{source}: unknown key {unknown[0]!r} (known: name, {', '.join(sections)})")
    try:
        built = {key: _section(cls, data.get(key, {}), key, base) for key, cls in sections.items()}
    except Pt2MsError as error:
        raise Pt2MsError(f"{source}: {error}") from None
    except TypeError as error:
        raise Pt2MsError(f"{source}: bad value: {error}") from None
    built["verify"].inputs = [_input_spec(item, source) for item in built["verify"].inputs]
    if built["verify"].train is not None:
        built["verify"].train = _train_section(built["verify"].train, source)
    config = Config(name=name, source=source, **built)
    if config.torch.checkpoint is None:
        raise Pt2MsError(f"{source}: missing key 'checkpoint' in [torch]")
    if config.mindspore.model is None and config.mindspore.template is None:
        raise Pt2MsError(f"{source}: [mindspore] needs 'model' (a factory) or 'template' (a .ckpt)")
    return config


def import_object(spec, config_file):
    """Import "package.module:attr" or "path/to/file.py:attr" (relative to the config file)."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise Pt2MsError(f"{config_file}: factory {spec!r} must look like 'package.module:function' or 'file.py:function'")
    try:
        if module_name.endswith(".py"):
            file = (Path(config_file).parent / module_name).resolve()
            if not file.is_file():
                raise Pt2MsError(f"{config_file}: factory file {file} not found")
            # Let the user's file import its neighbours, as it would when run from its own folder.
            sys.path.insert(0, str(file.parent))
            module_spec = importlib.util.spec_from_file_location(f"pt2ms_user_{file.stem}", file)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Pt2MsError:
        raise
    except Exception as error:
        raise Pt2MsError(f"{config_file}: cannot import {module_name!r} for factory {spec!r}: "
                         f"{type(error).__name__}: {error}") from None
    found = module
    for part in attr.split("."):  # "pkg.mod:Class.from_name" reaches a classmethod
        if not hasattr(found, part):
            raise Pt2MsError(f"{config_file}: {module_name!r} has no attribute {attr!r}")
        found = getattr(found, part)
    return found


def call_factory(spec, kwargs, config_file):
    """Build an object with the factory named in the config; its failures become a one-line error."""
    factory = import_object(spec, config_file)
    try:
        return factory(**kwargs)
    except Exception as error:
        raise Pt2MsError(f"{config_file}: factory {spec!r} raised {type(error).__name__}: {error}") from None


def build_torch_model(config):
    """The PyTorch model named under [torch], in eval mode."""
    import torch

    model = call_factory(config.torch.model, config.torch.kwargs, config.source)
    if not isinstance(model, torch.nn.Module):
        raise Pt2MsError(f"{config.source}: factory {config.torch.model!r} returned {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model.eval()


def build_ms_model(config):
    """The MindSpore Cell named under [mindspore], in inference mode."""
    from mindspore import nn

    net = call_factory(config.mindspore.model, config.mindspore.kwargs, config.source)
    if not isinstance(net, nn.Cell):
        raise Pt2MsError(f"{config.source}: factory {config.mindspore.model!r} returned {type(net).__name__}, "
                         "not a mindspore.nn.Cell")
    net.set_train(False)
    return net
