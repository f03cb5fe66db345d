"""darts_search.py's own behaviour end to end on a slice of the embedded digits (what every variant's
search writes, resumes and repeats is tests/test_variants.py's contract)."""
import pytest

import darts_search


@pytest.mark.slow
def test_alpha_epoch_derives_the_architecture_of_that_epoch(tiny_search, tmp_path):
    out = tiny_search(tmp_path / "run", "--epoch", "2")
    darts_search.main(["-m", str(out), "--alpha-epoch", "1"])
    assert (out / "arch_alpha_epoch_001.json").read_text() == (out / "arch" / "epoch_001.json").read_text()


@pytest.mark.slow
def test_alpha_epoch_out_of_range_is_a_one_line_error(tiny_search, tmp_path, capsys):
    out = tiny_search(tmp_path / "run", "--epoch", "1")
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(["-m", str(out), "--alpha-epoch", "5"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "--alpha-epoch 5" in err and "\n" not in err


def cuda_extension_installed():
    try:
        import nnabla_ext.cudnn  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(cuda_extension_installed(), reason="the error is for machines without nnabla-ext-cuda")
def test_cudnn_without_the_extension_says_what_to_install(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        darts_search.main(["--dataset", "digits", "-c", "cudnn", "-m", str(tmp_path / "gpu")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "nnabla-ext-cuda" in err and "\n" not in err


def test_a_batch_larger_than_the_split_is_a_one_line_error(tiny_search, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tiny_search(tmp_path / "big", "--batch-size", "40")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "--batch-size 40 is larger than the 32 images" in err and "\n" not in err


def test_checkpoints_go_to_a_new_model_save_path(tiny_search, tmp_path):
    out = tiny_search(tmp_path / "run", "--epoch", "1", "--model-save-path", str(tmp_path / "new" / "dir"))
    assert (tmp_path / "new" / "dir" / "checkpoint.npz").exists() and not (out / "checkpoint.npz").exists()
