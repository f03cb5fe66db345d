import os

import pytest
import yaml

from args import ConfigError, parse_args, search_parser, str2bool, train_parser
from utils.run.config_file import write_config

PARSERS = [search_parser, train_parser]


def write_yaml(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_line(capsys, argv, make_parser=search_parser):
    """Run parse_args expecting argparse's exit 2; return the error line."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args(make_parser(), argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    # The whole message is on the last line, after "error:".
    assert "error:" in last, err
    assert "Traceback" not in err
    return last


# --- booleans -------------------------------------------------------------

@pytest.mark.parametrize("word", ["True", "true", "TRUE", "1", "yes", "Yes"])
def test_str2bool_true_words(word):
    assert str2bool(word) is True


@pytest.mark.parametrize("word", ["False", "false", "FALSE", "0", "no", "NO"])
def test_str2bool_false_words(word):
    assert str2bool(word) is False


@pytest.mark.parametrize("make_parser", PARSERS)
def test_cutout_false_is_false(make_parser):
    # The NNabla example's type=bool made this True.
    assert parse_args(make_parser(), ["--cutout", "False"]).cutout is False


@pytest.mark.parametrize("make_parser", PARSERS)
def test_bool_flag_alone_is_true(make_parser):
    args = parse_args(make_parser(), ["--cutout", "--resume"])
    assert args.cutout is True
    assert args.resume is True


@pytest.mark.parametrize("word,expected", [
    ("yes", True), ("NO", False), ("1", True), ("0", False),
    ("true", True), ("False", False)])
def test_bool_flag_words(word, expected):
    args = parse_args(search_parser(), ["--second-order", word])
    assert args.second_order is expected


def test_bool_flag_alone_before_another_flag():
    args = parse_args(train_parser(), ["--auxiliary", "no", "--summary",
                                       "-b", "8"])
    assert args.auxiliary is False
    assert args.summary is True
    assert args.batch_size == 8


def test_bool_flag_rejects_other_words(capsys):
    line = error_line(capsys, ["--cutout", "maybe"])
    assert "--cutout" in line
    assert "not a boolean: 'maybe'" in line


# --- short forms and defaults ---------------------------------------------

@pytest.mark.parametrize("make_parser", PARSERS)
def test_nnabla_example_short_forms(make_parser):
    args = parse_args(make_parser(), [
        "-c", "cudnn", "-d", "1", "-t", "half", "-e", "3", "-b", "16",
        "-m", "mon", "-o", "saved"])
    assert args.context == "cudnn"
    assert args.device_id == "1"
    assert args.type_config == "half"
    assert args.epoch == 3
    assert args.batch_size == 16
    assert args.monitor_path == "mon"
    assert args.model_save_path == "saved"


def test_train_short_form_for_additional_filters():
    args = parse_args(train_parser(), ["-f", "4"])
    assert args.additional_filters_on_retrain == 4


def test_choices_are_enforced(capsys):
    line = error_line(capsys, ["-c", "gpu"])
    assert "invalid choice: 'gpu'" in line


def test_abbreviated_flags_are_rejected(capsys):
    error_line(capsys, ["--second", "yes"])


def test_search_defaults():
    args = parse_args(search_parser(), [])
    assert args.context == "cpu"
    assert args.device_id == "0"
    assert args.type_config == "float"
    assert args.epoch == 50
    assert args.batch_size == 64
    assert args.num_cells == 8
    assert args.output_filter == 16
    assert args.lr == 0.025
    assert args.lr_min == 0.001
    assert args.momentum == 0.9
    assert args.weight_decay == 3e-4
    assert args.grad_clip == 5.0
    assert args.cutout is False
    assert args.cutout_length == 16
    assert args.dataset == "cifar10"
    assert args.data_dir == os.path.expanduser("~/nnabla_data")
    assert args.seed == 0
    assert args.resume is False
    assert args.monitor_path == "search.monitor"
    assert args.model_arch_name is None  # the search writes DARTS_arch.json in its monitor path
    assert args.model_save_path is None
    assert args.second_order is False
    assert args.train_portion == 0.5
    assert args.arch_lr == 3e-4
    assert args.arch_beta1 == 0.5
    assert args.arch_beta2 == 0.999
    assert args.arch_weight_decay == 1e-3
    assert args.draw_every_epoch is False
    assert args.config is None
    assert not hasattr(args, "auxiliary")


def test_train_defaults():
    args = parse_args(train_parser(), [])
    assert args.epoch == 600
    assert args.batch_size == 96
    assert args.num_cells == 20
    assert args.output_filter == 16
    assert args.additional_filters_on_retrain == 20
    assert args.lr == 0.025
    assert args.lr_min == 0.0
    assert args.cutout is True
    assert args.cutout_length == 16
    assert args.auxiliary is True
    assert args.auxiliary_weight == 0.4
    assert args.drop_path_prob == 0.2
    assert args.save_interval == 10
    assert args.summary is False
    assert args.evaluate is None
    assert args.monitor_path == "result.monitor"
    assert args.model_arch_name == "DARTS_arch.json"
    assert args.model_save_path is None
    assert not hasattr(args, "second_order")


def test_train_model_arch_name_takes_a_named_cell():
    args = parse_args(train_parser(), ["--model-arch-name", "DARTS_V2"])
    assert args.model_arch_name == "DARTS_V2"


# --- --config ---------------------------------------------------------------

def test_config_overrides_defaults(tmp_path):
    path = write_yaml(tmp_path, "batch_size: 32\ncutout: true\nlr: 0.1\n"
                                "dataset: mnist\n")
    args = parse_args(search_parser(), ["--config", path])
    assert args.batch_size == 32
    assert args.cutout is True
    assert args.lr == 0.1
    assert args.dataset == "mnist"
    assert args.epoch == 50  # not in the file: default


def test_command_line_overrides_config(tmp_path):
    path = write_yaml(tmp_path, "batch_size: 32\nepoch: 7\n")
    args = parse_args(search_parser(), ["--config", path, "-b", "16"])
    assert args.batch_size == 16
    assert args.epoch == 7


def test_command_line_equal_to_default_still_wins(tmp_path):
    path = write_yaml(tmp_path, "batch_size: 32\ncutout: true\n")
    # 64 and False are the search defaults.
    args = parse_args(search_parser(),
                      ["-b", "64", "--cutout", "false", "--config", path])
    assert args.batch_size == 64
    assert args.cutout is False


@pytest.mark.parametrize("key", ["batch_size", "batch-size"])
def test_config_keys_with_underscore_or_dash(tmp_path, key):
    path = write_yaml(tmp_path, f"{key}: 12\narch-weight-decay: 0.01\n")
    args = parse_args(search_parser(), ["--config", path])
    assert args.batch_size == 12
    assert args.arch_weight_decay == 0.01


def test_config_both_spellings_of_one_key_is_an_error(tmp_path, capsys):
    path = write_yaml(tmp_path, "batch_size: 12\nbatch-size: 13\n")
    line = error_line(capsys, ["--config", path])
    assert "given twice" in line


def test_config_values_go_through_the_flag_types(tmp_path):
    # YAML reads 3e-4 as a string and 0 as an int; the flags' types fix both.
    path = write_yaml(tmp_path, "arch_lr: 3e-4\ndevice_id: 0\n"
                                "data_dir: ~/elsewhere\n")
    args = parse_args(search_parser(), ["--config", path])
    assert args.arch_lr == 3e-4
    assert args.device_id == "0"
    assert args.data_dir == os.path.expanduser("~/elsewhere")


@pytest.mark.parametrize("text", ["cutout: yes\n", "cutout: 'True'\n",
                                  "cutout: 1\n", "cutout: true\n"])
def test_config_bool_spellings(tmp_path, text):
    path = write_yaml(tmp_path, text)
    assert parse_args(search_parser(), ["--config", path]).cutout is True


def test_config_unknown_key_names_the_key(tmp_path, capsys):
    path = write_yaml(tmp_path, "batch_size: 32\nlearning_rate: 0.1\n")
    line = error_line(capsys, ["--config", path])
    assert "unknown key 'learning_rate'" in line
    assert path in line


def test_config_key_of_the_other_script_is_unknown(tmp_path, capsys):
    path = write_yaml(tmp_path, "auxiliary: true\n")
    line = error_line(capsys, ["--config", path], make_parser=search_parser)
    assert "unknown key 'auxiliary'" in line


@pytest.mark.parametrize("text,words", [
    ("batch_size: many\n", ["'batch_size'", "invalid int value", "'many'"]),
    ("epoch: 2.5\n", ["'epoch'", "invalid int value"]),
    ("lr: fast\n", ["'lr'", "invalid float value"]),
    ("cutout: maybe\n", ["'cutout'", "not a boolean"]),
    ("context: gpu\n", ["'context'", "invalid choice: 'gpu'"]),
    ("monitor_path: true\n", ["'monitor_path'", "expected a str"]),
    ("batch_size: [1, 2]\n", ["'batch_size'", "single value"]),
    ("epoch: null\n", ["'epoch'", "null"]),
])
def test_config_bad_values(tmp_path, capsys, text, words):
    path = write_yaml(tmp_path, text)
    line = error_line(capsys, ["--config", path])
    for word in words:
        assert word in line


def test_config_broken_yaml(tmp_path, capsys):
    path = write_yaml(tmp_path, "batch_size: [32\nlr: 0.1\n")
    line = error_line(capsys, ["--config", path])
    assert "broken YAML" in line
    assert path in line


def test_config_missing_file(tmp_path, capsys):
    path = str(tmp_path / "absent.yaml")
    line = error_line(capsys, ["--config", path])
    assert f"config file not found: {path}" in line


def test_config_not_a_mapping(tmp_path, capsys):
    path = write_yaml(tmp_path, "- batch_size\n- 32\n")
    line = error_line(capsys, ["--config", path])
    assert "must be a mapping" in line
    assert path in line


def test_config_cannot_name_another_config(tmp_path, capsys):
    path = write_yaml(tmp_path, "config: other.yaml\n")
    line = error_line(capsys, ["--config", path])
    assert "'config'" in line


def test_config_error_from_parse_args_has_no_traceback(tmp_path, capsys):
    # ConfigError is what the loader raises; parse_args must not let it out.
    path = write_yaml(tmp_path, "epoch: soon\n")
    with pytest.raises(SystemExit):
        try:
            parse_args(search_parser(), ["--config", path])
        except ConfigError:  # pragma: no cover - this is the failure
            pytest.fail("ConfigError escaped parse_args")
    assert "'epoch'" in capsys.readouterr().err


# --- write_config ---------------------------------------------------------

@pytest.mark.parametrize("make_parser", PARSERS)
def test_write_config_round_trip(tmp_path, make_parser):
    args = parse_args(make_parser(), [
        "-b", "8", "--cutout", "no", "--lr", "0.1", "--weight-decay", "1e-5",
        "-d", "1", "-c", "cudnn", "--dataset", "fashion-mnist"])
    monitor = tmp_path / "runs" / "one"  # does not exist yet
    path = write_config(vars(args), str(monitor))
    assert path == str(monitor / "config.yaml")

    loaded = parse_args(make_parser(), ["--config", path])
    expected = vars(args)
    got = vars(loaded)
    assert got.pop("config") == path
    assert expected.pop("config") is None
    assert got == expected
    # Types survive too (1 == 1.0 and "1" != 1 would hide or fake errors).
    assert {k: type(v) for k, v in got.items()} == \
        {k: type(v) for k, v in expected.items()}


def test_saved_config_leaves_out_config_key(tmp_path):
    first = write_config(vars(parse_args(search_parser(), [])), str(tmp_path / "a"))
    args = parse_args(search_parser(), ["--config", first, "-e", "2"])
    second = write_config(vars(args), str(tmp_path / "b"))
    with open(second) as f:
        saved = yaml.safe_load(f)
    assert "config" not in saved
    assert saved["epoch"] == 2
    assert saved["model_save_path"] is None


@pytest.mark.parametrize("make_parser, argv, message", [
    (search_parser, ["--epoch", "0"], "--epoch must be at least 1"),
    (search_parser, ["--train-portion", "1.5"], "--train-portion must be between 0 and 1"),
    (search_parser, ["--batch-size", "0"], "--batch-size must be at least 1"),
    (train_parser, ["--drop-path-prob", "1"], "--drop-path-prob must be in [0, 1)"),
    (train_parser, ["--save-interval", "0"], "--save-interval must be at least 1"),
])
def test_values_out_of_range_are_one_line_errors(capsys, make_parser, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(make_parser(), argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, message", [
    (["--evaluate", "p.h5", "--epoch", "3"], "--epoch does not apply to --evaluate"),
    (["--summary", "--lr", "0.1"], "--lr does not apply to --summary"),
    (["--export", "p.h5", "--drop-path-prob", "0.1"], "--drop-path-prob does not apply to --export"),
    (["--format", "onnx"], "--format is read only with --export"),
])
def test_a_training_flag_in_a_mode_is_a_one_line_error(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(train_parser(), argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_training_config_file_serves_a_mode(tmp_path):
    """Keys of --config describe the network a mode reads; only the command line's flags are checked."""
    path = write_config(vars(parse_args(train_parser(), ["--epoch", "3", "--lr", "0.1"])), str(tmp_path))
    args = parse_args(train_parser(), ["--config", path, "--evaluate", "p.h5"])
    assert args.evaluate == "p.h5" and args.epoch == 3


# --- a data set's recipe ----------------------------------------------------

# quark0's cnn/train_imagenet.py (run with --auxiliary): its argparse defaults, and C = 48 as 48 + 0 here.
IMAGENET_RECIPE = dict(batch_size=128, lr=0.1, momentum=0.9, weight_decay=3e-5, epoch=250, lr_schedule="exponential",
                       lr_decay=0.97, label_smoothing=0.1, auxiliary=True, auxiliary_weight=0.4, num_cells=14,
                       output_filter=48, additional_filters_on_retrain=0, grad_clip=5.0, drop_path_prob=0.0,
                       cutout=False)
CIFAR_TRAINING = dict(batch_size=96, lr=0.025, lr_min=0.0, momentum=0.9, weight_decay=3e-4, epoch=600,
                      lr_schedule="cosine", label_smoothing=0.0, auxiliary=True, auxiliary_weight=0.4, num_cells=20,
                      output_filter=16, additional_filters_on_retrain=20, grad_clip=5.0, drop_path_prob=0.2,
                      cutout=True)


def settings(args, names):
    return {name: getattr(args, name) for name in names}


def test_imagenet_alone_takes_the_imagenet_recipe_and_config_yaml_records_it(tmp_path):
    args = parse_args(train_parser(), ["--dataset", "imagenet"])
    assert settings(args, IMAGENET_RECIPE) == IMAGENET_RECIPE
    saved = yaml.safe_load(open(write_config(vars(args), str(tmp_path))))
    assert {name: saved[name] for name in IMAGENET_RECIPE} == IMAGENET_RECIPE


def test_a_flag_or_a_yaml_key_wins_over_the_imagenet_recipe(tmp_path):
    # Values equal to the CIFAR defaults too: given, they are not the recipe's to replace.
    args = parse_args(train_parser(), ["--dataset", "imagenet", "--lr", "0.05", "--epoch", "600",
                                       "--drop-path-prob", "0.2"])
    assert (args.lr, args.epoch, args.drop_path_prob) == (0.05, 600, 0.2)
    assert settings(args, IMAGENET_RECIPE) == dict(IMAGENET_RECIPE, lr=0.05, epoch=600, drop_path_prob=0.2)
    path = write_yaml(tmp_path, "dataset: imagenet\nweight_decay: 3e-4\nlr_schedule: cosine\n")
    args = parse_args(train_parser(), ["--config", path, "--batch-size", "32"])
    assert settings(args, IMAGENET_RECIPE) == dict(IMAGENET_RECIPE, weight_decay=3e-4, lr_schedule="cosine",
                                                   batch_size=32)
    # A run's config.yaml read back gives the same settings.
    saved = write_config(vars(args), str(tmp_path / "run"))
    assert vars(parse_args(train_parser(), ["--config", saved])) == dict(vars(args), config=saved)


def test_cifar10_keeps_its_training_defaults(tmp_path):
    for argv in (["--dataset", "cifar10"], [],
                 ["--config", write_yaml(tmp_path, "dataset: imagenet\n"), "--dataset", "cifar10"]):
        assert settings(parse_args(train_parser(), argv), CIFAR_TRAINING) == CIFAR_TRAINING
