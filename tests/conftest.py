import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


import pytest  # noqa: E402


def tiny_search_runner(patch, images=64):
    """run(out_dir, *flags): darts_search.py on the first `images` embedded digits (two steps an epoch at
    64) at a 3-cell, C = 4 network (flags may override them), with the pictures off (tests/test_pictures.py
    tests them). patch: a pytest MonkeyPatch, which puts the data and the pictures back when it ends."""
    import darts_search
    import utils.run.run
    from tests.helpers import digits_head
    data = digits_head(images)
    patch.setattr(darts_search, "load_dataset", lambda name, data_dir: data)
    patch.setattr(utils.run.run, "draw_run", lambda monitor_dir: [])

    def run(out, *flags):
        darts_search.main(["--dataset", "digits", "--batch-size", "16", "--num-cells", "3", "--output-filter", "4",
                           "--seed", "3", "-m", str(out), "--model-arch-name", str(out / "DARTS_arch.json"), *flags])
        return out
    return run


@pytest.fixture
def tiny_search(monkeypatch):
    """tiny_search_runner for one test."""
    return tiny_search_runner(monkeypatch)
