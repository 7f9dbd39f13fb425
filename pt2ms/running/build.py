"""Building the two models from the factories a config names ("package.module:function" or "file.py:function")."""

import importlib
import importlib.util
import re
import sys
from pathlib import Path

from pt2ms.errors import Pt2MsError
from pt2ms.running.blocks import empty_ms, empty_torch


def user_module_name(file):
    """A stable module name for a factory file: the same file always gets the same name, two files never do."""
    import hashlib

    stem = re.sub(r"\W", "_", file.stem)
    return f"pt2ms_user_{stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:10]}"


def import_object(spec, config_file, key=None):
    """Import "package.module:attr" or "path/to/file.py:attr" (relative to the config file); `key` is the config
    key that names it (e.g. "[torch] model"), for the error messages."""
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
            name = user_module_name(file)
            module_spec = importlib.util.spec_from_file_location(name, file)
            module = importlib.util.module_from_spec(module_spec)
            # Registered under its name: MindSpore's GRAPH_MODE compiles a Cell by importing its module again.
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
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
            from pt2ms.running.factories import suggestion

            callables = [name for name in dir(found) if callable(getattr(found, name, None))]
            raise Pt2MsError(f"{config_file}: {key or 'factory'} {spec!r}: {module_name!r} has no attribute "
                             f"{part!r}{suggestion(part, callables)}")
        found = getattr(found, part)
    return found


def call_factory(spec, kwargs, config_file, key=None):
    """Build an object with the factory named in the config; its failures become a one-line error."""
    factory = import_object(spec, config_file, key)
    try:
        return factory(**kwargs)
    except Pt2MsError:
        raise
    except Exception as error:
        raise Pt2MsError(f"{config_file}: factory {spec!r} raised {type(error).__name__}: {error}") from None


def _empty_or_whole(empty_build, build, spec):
    """The model built empty, or, when its factory reads its own weights while building (MindCV's ConvNeXt scales
    its head's initial values), built whole with a note: correct, only not bounded by a block."""
    try:
        return empty_build(build)
    except Pt2MsError as error:
        model = build()  # fails again, with the factory's own error, when the fault is not the empty build
        print(f"note: {spec} cannot be built empty ({str(error).split(' raised ', 1)[-1].splitlines()[0][:160]}); "
              "built with its weights in memory", file=sys.stderr)
        return model


def build_torch_model(config, empty=False):
    """The PyTorch model named under [torch], in eval mode; `empty`: with no parameter memory (parameters on the
    meta device, see pt2ms.running.blocks), a Hugging Face folder's model included."""
    import torch

    def build():
        return call_factory(config.torch.model, config.torch.kwargs, config.source, "[torch] model")

    model = _empty_or_whole(empty_torch, build, config.torch.model) if empty else build()
    if not isinstance(model, torch.nn.Module):
        raise Pt2MsError(f"{config.source}: factory {config.torch.model!r} returned {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model.eval()


def build_ms_model(config, empty=False):
    """The MindSpore Cell named under [mindspore], in inference mode; `empty`: with no parameter memory
    (built under no_init_parameters: each Parameter stays uninitialised until data is set)."""
    from mindspore import nn

    def build():
        return call_factory(config.mindspore.model, config.mindspore.kwargs, config.source, "[mindspore] model")

    net = _empty_or_whole(empty_ms, build, config.mindspore.model) if empty else build()
    if not isinstance(net, nn.Cell):
        raise Pt2MsError(f"{config.source}: factory {config.mindspore.model!r} returned {type(net).__name__}, "
                         "not a mindspore.nn.Cell")
    net.set_train(False)
    return net
