"""The layers import one way: ops <- models <- utils <- scripts, and the utils groups one way too."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What each package may import from the project, besides itself: each layer only from the layers above it
# in this list. The entry points (the top level's scripts and scripts/) may import any library package.
LAYERS = ("ops", "models", "utils/run_files", "utils/data", "utils/pictures", "utils/optim", "utils/run",
          "utils/training", "utils/search", "utils/recurrent")
ALLOWED = {package: LAYERS[:i] for i, package in enumerate(LAYERS)}
ENTRY_POINTS = ("args", "darts_search", "darts_train", "darts_plot", "darts_compare", "scripts")
# Entry points that run the others' runs in-process (the demo, the comparison of search variants).
COMPOSERS = ("scripts", "darts_compare.py")
PROJECT = tuple(p.split("/")[0] for p in LAYERS) + ENTRY_POINTS


def package_of(module):
    """'utils.run.run' -> 'utils/run', 'models.genotype' -> 'models', 'args' -> 'args'."""
    parts = module.split(".")
    if parts[0] == "utils" and len(parts) >= 2:
        return "/".join(parts[:2])
    return parts[0]


def project_imports(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names
                                     if node.module == "utils"]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PROJECT and name != "utils":
                yield node.lineno, name


def modules():
    """(package, path) of every library module, subpackages included."""
    for package in ALLOWED:
        if package.endswith("_files"):
            yield package, package + ".py"
            continue
        for folder, _, names in sorted(os.walk(os.path.join(ROOT, package))):
            for name in sorted(names):
                if name.endswith(".py"):
                    yield package, os.path.relpath(os.path.join(folder, name), ROOT)


def test_every_library_module_is_in_a_layer():
    checked = {path for _, path in modules()}
    for folder in ("ops", "models", "utils"):
        for root, _, names in os.walk(os.path.join(ROOT, folder)):
            for name in names:
                path = os.path.relpath(os.path.join(root, name), ROOT)
                if name.endswith(".py") and name != "__init__.py" or path == "utils/__init__.py":
                    assert path in checked or path == "utils/__init__.py", f"{path} belongs to no layer"


def entry_points():
    names = [n for n in sorted(os.listdir(ROOT)) if n.endswith(".py")]
    scripts = os.path.join(ROOT, "scripts")
    names += [os.path.join("scripts", n) for n in sorted(os.listdir(scripts)) if n.endswith(".py")]
    return names


@pytest.mark.parametrize("path", entry_points())
def test_entry_points_import_the_library_but_not_each_other(path):
    own = path[:-3].replace(os.sep, ".")
    for line, name in project_imports(os.path.join(ROOT, path)):
        target = package_of(name)
        allowed = target in LAYERS or target == "args" or (path.startswith(COMPOSERS) and target in ENTRY_POINTS)
        assert allowed or name == own, f"{path}:{line} imports {name}"


@pytest.mark.parametrize("package, path", list(modules()))
def test_no_import_runs_against_the_layers(package, path):
    for line, name in project_imports(os.path.join(ROOT, path)):
        target = package_of(name)
        assert target == package or target in ALLOWED[package], f"{path}:{line} imports {name}"


def test_the_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from utils.run.run import Run\nimport darts_train\n")
    assert [package_of(name) for _, name in project_imports(bad)] == ["utils/run", "darts_train"]
