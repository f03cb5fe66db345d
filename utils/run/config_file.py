"""A run's config.yaml: its settings, written when the run opens and compared with when it resumes."""
import os

import yaml

from utils.run.checkpoint import CheckpointError
from utils.run_files import CONFIG

# Settings a resumed run may change without changing what it computes.
RESUMABLE_CHANGES = ("config", "resume", "force_resume", "epoch", "progress_every", "keep_last", "device_id",
                     "data_dir", "draw_every_epoch")


def write_config(settings, directory):
    """Writes settings ({name: value}, a script's vars(args)) as YAML to <directory>/config.yaml; returns its path.

    Every key is loaded back through --config, so settings must hold the parser's own names only.
    The --config entry is left out: the file stands in for it.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, CONFIG)
    with open(path, "w") as f:
        yaml.safe_dump({k: v for k, v in settings.items() if k != "config"}, f, sort_keys=False,
                       default_flow_style=False)
    return path


def refuse_changed_settings(settings, saved_config_path):
    """CheckpointError naming every setting outside RESUMABLE_CHANGES that differs from the saved file's;
    nothing when the file is missing (a run of before the file was written)."""
    try:
        with open(saved_config_path) as f:
            saved = yaml.safe_load(f) or {}
    except FileNotFoundError:
        return
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(f"cannot read {saved_config_path} to compare settings: "
                              f"{' '.join(str(err).split())}") from None
    changed = [f"{name} ({saved.get(name)!r} -> {value!r})" for name, value in settings.items()
               if name not in RESUMABLE_CHANGES and name in saved and saved[name] != value]
    if changed:
        raise CheckpointError(f"--resume with settings that differ from {saved_config_path}: "
                              f"{', '.join(changed)}; use the saved settings or add --force-resume")
