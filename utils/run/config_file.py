"""A run's config.yaml: its settings, written when the run starts and compared with when it resumes.

A resume compares what the run computes, not where its files are: a run directory moved or copied to
another place or machine resumes with its paths changed (WHERE_SETTINGS, and any path that names the
same place inside the run directory as before).
"""
import os

import yaml

from ops.atomic_file import atomic_write
from ops.unreadable_file import reading
from utils.run.checkpoint import CheckpointError
from utils.run_files import CONFIG

# Settings a resumed run may change without changing what it computes. A --seeds run may gain seeds: each
# seed's run is its own, compared in its own directory.
RESUMABLE_CHANGES = ("resume", "force_resume", "restart", "epoch", "progress_every", "keep_last", "device_id",
                     "draw_every_epoch", "seeds")
# Settings that say where the run's files, its data and its settings file are, not what it computes.
WHERE_SETTINGS = ("monitor_path", "model_save_path", "data_dir", "config")
# Settings left out of config.yaml (write_config).
NOT_SAVED = ("config", "restart")


def write_config(settings, directory):
    """Writes settings ({name: value}, a script's vars(args)) as YAML to <directory>/config.yaml; returns its path.

    Every key is loaded back through --config, so settings must hold the parser's own names only.
    The --config entry is left out: the file stands in for it; so is --restart, which says how this run began:
    kept, the file given back to --config would move its own run aside, and conflict with --resume.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, CONFIG)
    with atomic_write(path) as f:
        yaml.safe_dump({k: v for k, v in settings.items() if k not in NOT_SAVED}, f, sort_keys=False,
                       default_flow_style=False)
    return path


def _inside(path, directory):
    """`path` relative to `directory` when it lies inside it, else None."""
    if not isinstance(path, str) or not isinstance(directory, str):
        return None
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(directory))
    return None if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def _moved_with_the_run(name, saved, settings):
    """Whether setting `name` names the same place inside the run directory as the saved one did inside the
    saved run's (monitor_path, then model_save_path): the directory was moved or copied, with the file."""
    for directory in ("monitor_path", "model_save_path"):
        before = _inside(saved.get(name), saved.get(directory))
        if before is not None and before == _inside(settings.get(name), settings.get(directory)):
            return True
    return False


def changed_settings(settings, saved_config_path, outputs=()):
    """["name (saved -> now)", ...]: the settings that differ from the saved file's and change what the run
    computes, so not those of RESUMABLE_CHANGES, WHERE_SETTINGS or `outputs` (settings that name files the
    run writes, e.g. the search's --model-arch-name), nor a path that moved with the run directory; [] when
    the file is missing (a run of before the file was written). An unreadable file is a CheckpointError."""
    if not os.path.exists(saved_config_path):
        return []
    with reading(saved_config_path, "the saved settings", CheckpointError, errors=(yaml.YAMLError,),
                 hint="restore it from a copy, or remove it to resume without comparing settings"), \
            open(saved_config_path, encoding="utf-8") as f:
        saved = yaml.safe_load(f)
    if not isinstance(saved, dict):  # empty (None), or not a mapping
        raise CheckpointError(f"cannot read the saved settings {saved_config_path}: it holds no settings; "
                              f"restore it from a copy, or remove it to resume without comparing settings")
    free = set(RESUMABLE_CHANGES) | set(WHERE_SETTINGS) | set(outputs)
    return [f"{name} ({saved.get(name)!r} -> {value!r})" for name, value in settings.items()
            if name not in free and name in saved and saved[name] != value
            and not _moved_with_the_run(name, saved, settings)]


def refuse_changed_settings(settings, saved_config_path, outputs=(), force=False):
    """CheckpointError naming every setting that changed_settings finds changed. With `force`
    (--force-resume) they are accepted, and named in the run's log: that flag accepts changed settings and
    nothing else (the run directory's other checks still apply)."""
    changed = changed_settings(settings, saved_config_path, outputs)
    if changed and force:
        print(f"--force-resume: resuming with settings that differ from {saved_config_path}: {', '.join(changed)}",
              flush=True)
    elif changed:
        raise CheckpointError(f"--resume with settings that differ from {saved_config_path}: "
                              f"{', '.join(changed)}; use the saved settings or add --force-resume")
