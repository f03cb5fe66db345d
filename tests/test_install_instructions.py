"""The install commands the README and the optional requirements file quote: .venv is built by uv, without
pip, so each must go through uv into .venv's python."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quoted_pip_installs(text):
    """Each `pip install ...` of a text, with whatever comes before it on its line (e.g. `uv `)."""
    return re.findall(r"[^\s`]*\s?pip install [^`\n&]*", text)


@pytest.mark.parametrize("name", ["README.md", "requirements-onnx.txt"])
def test_every_quoted_pip_install_goes_through_uv_into_the_venv(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        installs = quoted_pip_installs(f.read())
    assert installs, f"{name} quotes no install command"
    for command in installs:
        assert command.startswith("uv pip install --python .venv/bin/python "), command


def test_the_onnx_extras_are_quoted_in_full():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        installs = quoted_pip_installs(f.read())
    assert any("--no-deps nnabla-converter==1.39.0" in command for command in installs)
    assert any("-r requirements-onnx.txt" in command for command in installs)


def test_the_missing_cuda_extension_error_quotes_installs_into_the_venv(monkeypatch):
    import sys

    from utils.run.context import ContextError, set_context
    monkeypatch.setitem(sys.modules, "nnabla_ext.cudnn", None)  # import then fails, as without the extension
    with pytest.raises(ContextError) as error:
        set_context("cudnn")
    installs = quoted_pip_installs(str(error.value))
    assert installs and all(c.startswith("uv pip install --python .venv/bin/python ") for c in installs), installs
    assert "make env CUDA=120" in str(error.value)
