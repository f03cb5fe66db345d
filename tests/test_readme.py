"""Every command quoted in the README parses its flags, so the README cannot drift from the code."""
import importlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess

import pytest

from args import compare_parser, parse_args, parse_compare_args, search_parser, train_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()
CODE_BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)


def quoted_commands():
    commands = []
    for language, block in CODE_BLOCKS:
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith(("python ", "make ")):
                commands.append(line)
    commands += re.findall(r"`((?:python|make) [^`]+)`", README)  # inline ones, e.g. in the benchmark table
    return commands


def yaml_files():
    """README yaml blocks whose first line names the file, e.g. `# search.yaml`."""
    files = {}
    for language, block in CODE_BLOCKS:
        first, _, body = block.partition("\n")
        if language == "yaml" and first.startswith("# "):
            files[first[2:].strip()] = body
    return files


def load_script(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_script(script, argv):
    if script == "-m":  # python -m scripts.<name>
        module, *argv = argv
        return importlib.import_module(module).build_parser().parse_args(argv)
    if script == "darts_search.py":
        return parse_args(search_parser(), argv)
    if script == "darts_train.py":
        return parse_args(train_parser(), argv)
    if script == "darts_compare.py":
        return parse_compare_args(compare_parser(), argv)
    return load_script(script).build_parser().parse_args(argv)


def test_the_readme_quotes_the_commands_it_must():
    commands = quoted_commands()
    assert "make demo" in commands and "make test" in commands
    assert any(c.startswith("python darts_search.py --context cudnn") for c in commands)
    assert any(c.startswith("python darts_train.py --context cudnn --epoch 600") for c in commands)
    assert sum(c.startswith("python bench/") for c in commands) >= 4
    assert sum(c.startswith("python ") for c in commands) >= 15


def contributor_example():
    """The worked example of the README's section for contributors: a variant module."""
    section = README[README.index("## For contributors"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def example_variant():
    """The README's example variant, registered for the test and removed afterwards."""
    from utils.search.variants import VARIANTS
    namespace = {}
    exec(compile(contributor_example(), "README.md (example variant)", "exec"), namespace)
    yield namespace
    VARIANTS.pop("sharp")


def test_the_example_variant_searches(example_variant, tiny_search, tmp_path):
    out = tiny_search(tmp_path / "sharp", "--variant", "sharp", "--sharp-temperature", "0.2", "--epoch", "1")
    assert "sharp_temperature: 0.2" in (out / "config.yaml").read_text()
    assert (out / "DARTS_arch.json").exists()


@pytest.mark.parametrize("command", [c for c in quoted_commands() if c.startswith("python ")])
def test_python_command_parses(command, tmp_path, monkeypatch, request):
    if "--variant sharp" in command:
        request.getfixturevalue("example_variant")
    monkeypatch.chdir(tmp_path)
    shutil.copytree(os.path.join(ROOT, "configs"), tmp_path / "configs")  # commands that read --config configs/...
    for name, body in yaml_files().items():
        (tmp_path / name).write_text(body)
    script, *argv = shlex.split(command)[1:]
    if "--help" in argv:
        with pytest.raises(SystemExit) as exit_info:
            parse_script(script, argv)
        assert exit_info.value.code == 0
        return
    args = parse_script(script, argv)  # argparse exits on any flag it does not accept
    if "--config" in argv:
        assert args.config == argv[argv.index("--config") + 1]


@pytest.mark.parametrize("command", [c for c in quoted_commands() if c.startswith("make ")])
def test_make_command_exists(command):
    result = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_yaml_example_sets_what_it_says(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text(yaml_files()["search.yaml"])
    args = parse_args(search_parser(), ["--config", str(path), "--epoch", "2"])
    assert args.second_order is True and args.num_cells == 3 and args.epoch == 2 and args.dataset == "digits"
