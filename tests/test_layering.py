"""The package's layout is its architecture: imports go down the layers (pt2ms/__init__.py lists them), never
up, never in a circle, and no module grows past the size one reads top to bottom."""

import ast

import pytest

from tests.conftest import ROOT

# Bottom to top, as pt2ms/__init__.py's docstring lists them. A module may import its own layer and lower ones.
LAYERS = ("errors", "formats", "config", "running", "mapping", "verify", "stages", "__main__")
MAX_LINES = 600


def module_name(path, root):
    """`pt2ms/formats/pth.py` -> `pt2ms.formats.pth`; a package's `__init__.py` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path, name, known):
    """Every module of `known` that `path` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pt2ms.running import compare` imports the module pt2ms.running.compare
            modules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            targets = modules or [base]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def import_graph(root, package="pt2ms"):
    """{module: modules of the package it imports} for every .py file under root/package."""
    paths = {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}
    return {name: imported_modules(path, name, paths) for name, path in paths.items()}, paths


def layer_of(name):
    """The layer's index, None for the package root and the bundled examples (they belong to no layer)."""
    parts = name.split(".")
    if len(parts) == 1 or parts[1] == "examples":
        return None
    return LAYERS.index(parts[1])


def upward_imports(graph):
    """(importer, imported) pairs where a module imports from a layer above its own."""
    bad = []
    for name, targets in graph.items():
        for target in sorted(targets):
            mine, theirs = layer_of(name), layer_of(target)
            if name.split(".")[1:2] == ["examples"] or (mine is not None and theirs is not None and theirs > mine):
                bad.append((name, target))
            elif mine is None and name.count(".") == 0:  # the package root imports nothing of its own
                bad.append((name, target))
    return bad


def cycles(graph):
    """Each import cycle once, as the list of modules around it."""
    found, state = [], {}

    def visit(name, stack):
        state[name] = "open"
        stack.append(name)
        for target in sorted(graph.get(name, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    return found


def test_the_package_imports_only_down_its_layers_and_never_in_a_circle():
    graph, paths = import_graph(ROOT)
    assert len(paths) > 40 and all(layer_of(name) is not None or name.count(".") == 0 or ".examples" in name
                                   for name in graph), sorted(graph)
    assert upward_imports(graph) == []
    assert cycles(graph) == []


def test_each_subpackage_says_what_it_owns_and_what_it_may_import():
    for folder in sorted(path for path in (ROOT / "pt2ms").iterdir() if (path / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
        assert doc and (folder.name == "examples" or "import" in doc), folder


@pytest.mark.parametrize("path", sorted((ROOT / "pt2ms").rglob("*.py")), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_is_longer_than_one_reads_top_to_bottom(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES


def test_the_tests_mirror_the_subpackages():
    for folder in ("formats", "running", "mapping", "verify", "stages"):
        assert list((ROOT / "tests" / folder).glob("test_*.py")), folder


def test_the_checker_finds_an_upward_import_and_a_cycle(tmp_path):
    """The checks above can fail: a formats module that imports stages, and two modules importing each other."""
    for relative, text in {"pt2ms/__init__.py": "", "pt2ms/errors.py": "",
                           "pt2ms/formats/__init__.py": "", "pt2ms/formats/a.py": "from pt2ms.stages import cli\n",
                           "pt2ms/stages/__init__.py": "", "pt2ms/stages/cli.py": "from . import show\n",
                           "pt2ms/stages/show.py": "def f():\n    from pt2ms.stages.cli import x\n"}.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    graph, _ = import_graph(tmp_path)
    assert upward_imports(graph) == [("pt2ms.formats.a", "pt2ms.stages.cli")]
    assert cycles(graph) == [["pt2ms.stages.cli", "pt2ms.stages.show", "pt2ms.stages.cli"]]
