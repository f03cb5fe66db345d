"""Command line and YAML configuration for darts_search.py and darts_train.py.

Flag names and short forms follow the NNabla DARTS example so its command
lines keep working. A run can also be described by a YAML file (--config);
values given on the command line override the file, and the resolved
settings are written next to the run's outputs by save_config so the run
can be repeated with `--config <monitor dir>/config.yaml`.
"""

import argparse
import copy
import os

import yaml

CONFIG_FILE_NAME = "config.yaml"
SPACES = ("cnn", "recurrent")
IMAGE_DATASETS = ("cifar10", "cifar100", "fashion-mnist", "mnist", "digits")
TEXT_DATASETS = ("ptb", "wikitext-2", "pydoc")

_TRUE_WORDS = ("true", "1", "yes")
_FALSE_WORDS = ("false", "0", "no")


class ConfigError(Exception):
    """A --config file that cannot be used; the message is one line."""


def str2bool(s):
    """True/False from true/false, yes/no, 1/0 in any case (or a bool)."""
    if isinstance(s, bool):
        return s
    word = str(s).strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    # ArgumentTypeError so argparse prints this message as is.
    raise argparse.ArgumentTypeError(
        f"not a boolean: {s!r} (use true/false, yes/no or 1/0)")


def expanded_path(path):
    return os.path.expanduser(path)


def _add_bool(parser, flag, default, help):
    # nargs='?' with const=True: "--flag" alone means True, "--flag no" False.
    # (type=bool, as in the NNabla example, makes "--flag False" True.)
    parser.add_argument(flag, type=str2bool, nargs="?", const=True,
                        default=default, metavar="BOOL", help=help)


def _common_parser(description):
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        # Prefix matching would let "--second" mean --second-order today
        # and become an error (or something else) when a flag is added.
        allow_abbrev=False)
    add = parser.add_argument

    add("--config", type=str, default=None, metavar="FILE.yaml",
        help="YAML file of settings (keys are the long flag names); "
             "flags given on the command line override it")
    add("--context", "-c", choices=["cpu", "cudnn"], default="cpu",
        help="NNabla extension to run on")
    add("--device-id", "-d", type=str, default="0",
        help="GPU to use; only used with -c cudnn")
    add("--type-config", "-t", choices=["float", "half"], default="float",
        help="computation type")
    add("--seed", type=int, default=0)

    add("--space", choices=SPACES, default="cnn",
        help="what is searched or trained: CNN cells on images, or a recurrent cell on text "
             "(which changes the defaults of the shared flags to the paper's recurrent recipe)")
    add("--dataset", choices=IMAGE_DATASETS + TEXT_DATASETS, default="cifar10",
        help="image data sets for --space cnn, text corpora for --space recurrent")
    add("--data-dir", type=expanded_path, default="~/nnabla_data",
        help="where data sets are downloaded and cached")
    add("--cutout-length", type=int, default=16,
        help="side of the square cutout mask")

    add("--epoch", "-e", type=int)
    add("--batch-size", "-b", type=int)
    add("--num-cells", type=int, help="number of cells in the network")
    add("--output-filter", type=int, default=16,
        help="initial channel count C")

    add("--lr", type=float, default=0.025,
        help="initial learning rate of the network weights")
    add("--lr-min", type=float, help="learning rate at the end of the "
                                      "cosine schedule")
    add("--momentum", type=float, default=0.9)
    add("--weight-decay", type=float, default=3e-4)
    add("--grad-clip", type=float, default=5.0,
        help="max global norm of the weight gradients")

    add("--monitor-path", "-m", type=str,
        help="directory for logs, checkpoints and config.yaml")
    add("--model-save-path", "-o", type=str, default=None,
        help="where parameters and checkpoints are saved (default: the monitor path)")
    _add_bool(parser, "--resume", False,
              "continue from the last checkpoint in the monitor path")
    _add_recurrent_flags(parser)
    return parser


def _add_recurrent_flags(parser):
    group = parser.add_argument_group("recurrent cells (--space recurrent)")
    add = group.add_argument
    add("--nhid", type=int, help="embedding and hidden size (emsize = nhid = nhidlast)")
    add("--bptt", type=int, default=35, help="base sequence length of a batch")
    add("--eval-batch-size", type=int, default=10, help="batch size of validation")
    add("--dropout", type=float, default=0.75, help="locked dropout on the cell's output")
    add("--dropouth", type=float, default=0.25, help="dropout on the states entering every node (m_h)")
    add("--dropoutx", type=float, default=0.75, help="dropout on the cell's input (m_x)")
    add("--dropouti", type=float, default=0.2, help="locked dropout on the embedding's output")
    add("--dropoute", type=float, help="dropout of whole embedding rows")
    add("--tar-beta", type=float, default=1e-3, help="temporal activation regularisation weight")


def set_space_defaults(parser, space, **defaults):
    """Defaults of the shared flags for one --space; a value from the command line or --config wins."""
    if not hasattr(parser, "space_defaults"):
        parser.space_defaults = {}
    parser.space_defaults.setdefault(space, {}).update(defaults)


def search_parser():
    """Parser for darts_search.py (architecture search)."""
    parser = _common_parser("DARTS architecture search.")
    add = parser.add_argument
    add("--model-arch-name", type=str, default="DARTS_arch.json",
        help="file the found architecture is written to")
    _add_bool(parser, "--cutout", False, "apply cutout to training images")
    _add_bool(parser, "--second-order", False,
              "use the second order approximation for the architecture "
              "gradient")
    add("--train-portion", type=float, default=0.5,
        help="share of the training set used for the weights; the rest "
             "trains the architecture")
    add("--arch-lr", type=float, default=3e-4)
    add("--arch-beta1", type=float, default=0.5)
    add("--arch-beta2", type=float, default=0.999)
    add("--arch-weight-decay", type=float, default=1e-3)
    _add_bool(parser, "--draw-every-epoch", False,
              "draw the cells found after every epoch")
    add("--alpha-epoch", type=int, default=None, metavar="N",
        help="do not search: derive the architecture of epoch N from "
             "<monitor-path>/alpha_history.npz and write it to "
             "--model-arch-name (0 = the initial alphas)")
    parser.set_defaults(epoch=50, batch_size=64, num_cells=8, lr_min=0.001,
                        monitor_path="search.monitor", nhid=300, dropoute=0.0)
    # quark0's rnn/train_search.py.
    set_space_defaults(parser, "recurrent", dataset="ptb", epoch=50, batch_size=256, lr=20.0,
                       weight_decay=5e-7, grad_clip=0.25, arch_lr=3e-3, arch_beta1=0.9,
                       model_arch_name="DARTS_rnn_arch.json")
    return parser


def train_parser():
    """Parser for darts_train.py (training a found architecture)."""
    parser = _common_parser("Train a DARTS architecture from scratch.")
    add = parser.add_argument
    add("--model-arch-name", type=str, default="DARTS_arch.json",
        help="architecture JSON file, a genotype string, or DARTS_V1 / "
             "DARTS_V2")
    add("--additional-filters-on-retrain", "-f", type=int, default=20,
        help="channels added to --output-filter: C = output-filter + this")
    _add_bool(parser, "--cutout", True, "apply cutout to training images")
    _add_bool(parser, "--auxiliary", True, "train with the auxiliary head")
    add("--auxiliary-weight", type=float, default=0.4)
    add("--drop-path-prob", type=float, default=0.2)
    add("--save-interval", type=int, default=10,
        help="save parameters every N epochs")
    _add_bool(parser, "--summary", False, "print a summary of the network")
    add("--evaluate", type=str, default=None, metavar="PARAMS.h5",
        help="only evaluate these parameters on the test set")
    add("--nonmono", type=int, default=5,
        help="recurrent: switch to averaged SGD when the validation loss is worse than the best of "
             "all but the last NONMONO epochs")
    parser.set_defaults(epoch=600, batch_size=96, num_cells=20, lr_min=0.0,
                        monitor_path="result.monitor", nhid=850, dropoute=0.1)
    # quark0's rnn/train.py; its epochs (8000) are an upper limit.
    set_space_defaults(parser, "recurrent", dataset="ptb", epoch=8000, batch_size=64, lr=20.0,
                       weight_decay=8e-7, grad_clip=0.25, model_arch_name="DARTS_rnn_arch.json")
    return parser


def _config_actions(parser):
    """Map each flag's dest to its action; these are the allowed YAML keys."""
    actions = {}
    for action in parser._actions:
        if action.dest in ("help", "config"):
            continue
        actions[action.dest] = action
    return actions


def _convert(action, key, value, path):
    """Check one YAML value the way argparse checks a command line value."""
    where = f"config {path}: '{key}'"
    if value is None:
        # Only settings whose default is None (e.g. model_save_path) may be
        # null, so a saved config with those keys loads again.
        if action.default is None:
            return None
        raise ConfigError(f"{where}: must not be null")
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{where}: expected a single value, got {value!r}")
    if action.type is str2bool:
        try:
            return str2bool(value)
        except argparse.ArgumentTypeError as err:
            raise ConfigError(f"{where}: {err}") from None
    if isinstance(value, bool):
        # str(True) would pass as a path or a choice; that is a mistake.
        expected = action.type.__name__ if action.type else "str"
        raise ConfigError(f"{where}: expected a {expected}, got {value!r}")
    # Through str so that YAML floats do not silently become ints (int(3.7)),
    # and so that "3e-4", which YAML reads as a string, becomes a float.
    converted = str(value)
    if action.type is not None:
        try:
            converted = action.type(converted)
        except (ValueError, TypeError):
            raise ConfigError(f"{where}: invalid {action.type.__name__} "
                              f"value: {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where}: invalid choice: {value!r} "
                          f"(choose from {choices})")
    return converted


def _load_config(parser, path):
    """Read a YAML config into {dest: value}, validated against parser."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: "
                          f"{err.strerror}") from None
    except yaml.YAMLError as err:
        one_line = " ".join(str(err).split())
        raise ConfigError(f"broken YAML in config file {path}: "
                          f"{one_line}") from None
    if data is None:  # empty file, or comments only
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of flag "
                          f"names to values, got {type(data).__name__}")

    actions = _config_actions(parser)
    values = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest == "config":
            raise ConfigError(f"config {path}: '{key}' cannot be set inside "
                              f"a config file")
        if dest not in actions:
            raise ConfigError(f"config {path}: unknown key '{key}'")
        if dest in values:
            raise ConfigError(f"config {path}: '{key}' is given twice "
                              f"(as '_' and '-' spellings)")
        values[dest] = _convert(actions[dest], key, value, path)
    return values


def _range_problems(args):
    """Values of the right type that still make no sense; each is one message."""
    checks = [
        (args.epoch >= 1, "--epoch must be at least 1"),
        (args.batch_size >= 1, "--batch-size must be at least 1"),
        (args.num_cells >= 1, "--num-cells must be at least 1"),
        (args.output_filter >= 1, "--output-filter must be at least 1"),
        (args.cutout_length >= 0, "--cutout-length must not be negative"),
    ]
    if args.space == "recurrent":
        checks += [
            (args.dataset in TEXT_DATASETS, f"--space recurrent needs a text data set "
                                            f"({', '.join(TEXT_DATASETS)}), not {args.dataset}"),
            (args.nhid >= 1, "--nhid must be at least 1"),
            (args.bptt >= 2, "--bptt must be at least 2"),
            (args.eval_batch_size >= 1, "--eval-batch-size must be at least 1"),
        ]
        checks += [(0.0 <= getattr(args, name) < 1.0, f"--{name} must be in [0, 1)")
                   for name in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute")]
    else:
        checks.append((args.dataset in IMAGE_DATASETS,
                       f"--dataset {args.dataset} is a text corpus: add --space recurrent"))
    if hasattr(args, "train_portion"):
        checks.append((0.0 < args.train_portion < 1.0, "--train-portion must be between 0 and 1"))
    if hasattr(args, "drop_path_prob"):
        checks += [
            (args.output_filter + args.additional_filters_on_retrain >= 1,
             "--output-filter + --additional-filters-on-retrain must be at least 1"),
            (0.0 <= args.drop_path_prob < 1.0, "--drop-path-prob must be in [0, 1)"),
            (args.save_interval >= 1, "--save-interval must be at least 1"),
        ]
    return [message for ok, message in checks if not ok]


def parse_args(parser, argv=None):
    """Parse argv (default sys.argv[1:]), applying --config under it.

    Precedence: command line, then the config file, then the defaults.
    A value out of range exits 2 with one line, like any other bad flag.
    """
    args = parser.parse_args(argv)
    if args.config is not None:
        try:
            values = _load_config(parser, args.config)
        except ConfigError as err:
            parser.error(str(err))  # exits 2 with usage, no traceback
        # argparse only fills in a default when the namespace lacks the
        # attribute, and always sets the flags that were given. Starting from
        # the file's values therefore lets every given flag win, even one whose
        # value equals the default.
        args = parser.parse_args(argv, namespace=argparse.Namespace(**values))
    space_defaults = getattr(parser, "space_defaults", {}).get(args.space, {})
    if space_defaults:
        given = _given_on_command_line(parser, argv)
        if args.config is not None:
            given |= set(values)
        for dest, value in space_defaults.items():
            if dest not in given:
                setattr(args, dest, value)
    problems = _range_problems(args)
    if problems:
        parser.error(problems[0])
    return args


def _given_on_command_line(parser, argv):
    """The dests of the flags argv sets: a parse in which no flag has a default sets only those."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    probe._defaults = {}
    return set(vars(probe.parse_args(argv)))


def save_config(args, monitor_path):
    """Write args as YAML to <monitor_path>/config.yaml; return the path.

    args must be a Namespace from parse_args: every key is loaded back
    through --config, so an attribute the parser does not know would make
    the file unusable.
    """
    os.makedirs(monitor_path, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "config"}
    path = os.path.join(monitor_path, CONFIG_FILE_NAME)
    with open(path, "w") as f:
        yaml.safe_dump(settings, f, sort_keys=False, default_flow_style=False)
    return path
