"""Checking the factories a config names before anything is imported: the module exists, the file exists, and
(where its source says so without running it) the name is defined there.

A typo in a factory used to cost both frameworks' import (about 12 s and 600 MB) before it failed, with a
message that named neither the config key nor what the module has. The check reads source with `ast` and finds
modules with `importlib.util.find_spec`, so nothing of the user's runs; what it cannot tell (a module that makes
its names at run time) is left to the import, whose error says the same things.
"""

import ast
import difflib
import importlib.util
import pkgutil
from pathlib import Path

from pt2ms.errors import Pt2MsError


def factory_keys(config):
    """(config key, factory spec) for the factories the config names; [verify.train]'s loss factories are
    left to `4_verify.py --train`, which checks that section as a whole."""
    named = [("[torch] model", config.torch.model), ("[mindspore] model", config.mindspore.model),
             ("[verify] dataset", config.verify.dataset), ("[example] template", config.example.template)]
    return [(key, spec) for key, spec in named if spec]


def check_factories(config):
    """Raise a one-line Pt2MsError for the first factory whose module, file or name does not exist."""
    for key, spec in factory_keys(config):
        check_factory(key, spec, config.source)


def check_factory(key, spec, config_file):
    """One factory: "package.module:attr" or "file.py:attr" (relative to the config file)."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise Pt2MsError(f"{config_file}: {key} {spec!r} must look like 'package.module:function' or "
                         "'file.py:function'")
    if module_name.endswith(".py"):
        source = (Path(config_file).parent / module_name).resolve()
        if not source.is_file():
            raise Pt2MsError(f"{config_file}: {key} {spec!r}: factory file {source} not found")
    else:
        source = _module_source(key, spec, module_name, config_file)
    names = defined_names(source) if source else None
    first = attr.split(".")[0]
    if names is not None and first not in names:
        raise Pt2MsError(f"{config_file}: {key} {spec!r}: {module_name!r} has no attribute {first!r}"
                         f"{suggestion(first, names)}")


def _module_source(key, spec, module_name, config_file):
    """The .py file of an installed module (None when it has none, or finding it needs more than a look)."""
    try:
        found = importlib.util.find_spec(module_name)
    except ModuleNotFoundError as error:  # a parent package is missing
        found, module_name = None, error.name or module_name
    except Exception:  # noqa: BLE001 - a parent package that fails to import: the real import will say why
        return None
    if found is None:
        parent, _, leaf = module_name.rpartition(".")
        close = [f"{parent}.{name}" if parent else name
                 for name in difflib.get_close_matches(leaf, _modules_in(parent), n=3, cutoff=0.75)]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise Pt2MsError(f"{config_file}: {key} {spec!r}: no module named {module_name!r} is installed{hint}")
    origin = found.origin
    return Path(origin) if origin and origin.endswith(".py") and Path(origin).is_file() else None


def _modules_in(parent):
    """Names of the modules inside a package ("": the top-level ones), for suggestions."""
    if not parent:
        return [module.name for module in pkgutil.iter_modules()]
    try:
        found = importlib.util.find_spec(parent)
    except Exception:  # noqa: BLE001 - no suggestions, the error still says what is missing
        return []
    return [module.name for module in pkgutil.iter_modules(found.submodule_search_locations or [])] if found else []


def defined_names(source):
    """The names a Python file defines at its top level, read without running it; None when it cannot tell
    (a star import, a module __getattr__, text that does not parse)."""
    try:
        tree = ast.parse(Path(source).read_text(encoding="utf-8"))
    except (OSError, UnicodeError, SyntaxError, ValueError):
        return None
    dynamic = {"globals", "setattr", "exec", "vars"}  # names made at run time: only the import can tell
    if any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in dynamic
           for node in ast.walk(tree)):
        return None
    names = {}
    for node in tree.body:
        for name, kind in _bound(node):
            if name == "*" or name == "__getattr__":
                return None
            names.setdefault(name, kind)
    return names


def _bound(node):
    """(name, kind) for what one top-level statement binds; kind "callable" for def and class."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [(node.name, "callable")]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [((alias.asname or alias.name).split(".")[0], "imported") for alias in node.names]
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [(leaf.id, "value") for target in targets for leaf in ast.walk(target) if isinstance(leaf, ast.Name)]
    if isinstance(node, (ast.If, ast.Try, ast.With)):  # names bound under `if TYPE_CHECKING`, `try: import`
        inner = [child for block in ("body", "orelse", "finalbody") for child in getattr(node, block, [])]
        inner += [child for handler in getattr(node, "handlers", []) for child in handler.body]
        return [pair for child in inner for pair in _bound(child)]
    return []


def suggestion(name, names):
    """" (did you mean 'build'? it has: build, helper, ...)": close matches first, then the module's other
    callables (its own functions and classes before what it imports)."""
    kinds = names if isinstance(names, dict) else {other: "callable" for other in names}
    public = [other for other in kinds if not other.startswith("_")]
    close = difflib.get_close_matches(name, public, n=3, cutoff=0.6)
    order = {"callable": 0, "imported": 1, "value": 2}
    rest = sorted((other for other in public if other not in close and kinds[other] != "value"),
                  key=lambda other: (order[kinds[other]], other))
    listed = close + rest
    shown = ", ".join(listed[:12]) + (f", ... ({len(listed) - 12} more)" if len(listed) > 12 else "")
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f" ({guess}it has: {shown})" if listed else " (it defines no public names)"
