"""The layers import one way: ops <- models <- utils <- scripts, and the utils groups one way too."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What each package may import from the project, besides itself.
ALLOWED = {
    "ops": (),
    "models": ("ops",),
    "utils/data": ("ops", "models"),
    "utils/pictures": ("ops", "models", "utils/data"),
    "utils/training": ("ops", "models", "utils/data", "utils/pictures"),
}
PROJECT = ("ops", "models", "utils", "args", "darts_search", "darts_train", "darts_plot", "darts_random", "demo")


def package_of(module):
    """'utils.training.run' -> 'utils/training', 'models.genotype' -> 'models', 'args' -> 'args'."""
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
    for package in ALLOWED:
        folder = os.path.join(ROOT, package)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                yield package, os.path.join(package, name)


@pytest.mark.parametrize("package, path", list(modules()))
def test_no_import_runs_against_the_layers(package, path):
    for line, name in project_imports(os.path.join(ROOT, path)):
        target = package_of(name)
        assert target == package or target in ALLOWED[package], f"{path}:{line} imports {name}"


def test_the_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from utils.training.run import Run\nimport darts_train\n")
    assert [package_of(name) for _, name in project_imports(bad)] == ["utils/training", "darts_train"]
