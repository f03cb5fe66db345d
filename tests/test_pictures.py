"""Pictures of runs: learning curves, alpha histories, cell diagrams, draw_run and darts_plot.py."""
import json
import os
import re

import numpy as np
import pytest

import darts_plot
from models.genotype import (EDGES, NAMED_ARCHITECTURES, OP_NAMES, load_architecture, save_architecture,
                             to_genotype_string)
from ops.operations import SEARCH_OPS
from utils.pictures import cell_diagram
from utils.pictures.alpha_plot import AlphaHistoryError, load_alpha_history, op_weights, plot_alpha_history
from utils.pictures.curves import SeriesError, find_series, plot_curves, read_series
from utils.pictures.run_pictures import draw_run, latest_architecture_file

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, width=None, height=None):
    import matplotlib.image
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, f"{path} is not a PNG"
    assert os.path.getsize(path) > 5000, f"{path} is suspiciously small"
    image = matplotlib.image.imread(path)
    if width is not None:
        assert image.shape[1] == width
    if height is not None:
        assert image.shape[0] == height
    return image


def write_series(directory, name, indices, values):
    """As nnabla.monitor.MonitorSeries writes them: '-' for spaces, "{} {:g}" lines."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name.replace(" ", "-") + ".series.txt"), "w") as f:
        for index, value in zip(indices, values):
            print("{} {:g}".format(index, value), file=f)


def fake_search_dir(directory, epochs=20, seed=0):
    rng = np.random.RandomState(seed)
    e = np.arange(1, epochs + 1)  # epochs as the log counts them
    write_series(directory, "Training loss", e, 2.3 * np.exp(-e / 6) + 0.3 + 0.03 * rng.rand(epochs))
    write_series(directory, "Validation loss", e, 2.3 * np.exp(-e / 7) + 0.45 + 0.05 * rng.rand(epochs))
    write_series(directory, "Training error", e, 0.85 * np.exp(-e / 5) + 0.08)
    write_series(directory, "Validation error", e, 0.85 * np.exp(-e / 6) + 0.14)
    write_series(directory, "Epoch time", e, 12 + rng.rand(epochs))
    return directory


def fake_alpha_history(epochs=20, seed=0):
    """Alphas drifting toward sep_conv_3x3 in the normal cell and max_pool_3x3 in the reduction cell."""
    rng = np.random.RandomState(seed)
    history = {}
    for cell_type, favourite in (("normal", 2), ("reduction", 4)):
        drift = 0.05 * rng.randn(len(EDGES), len(SEARCH_OPS))
        drift[:, favourite] += 0.08
        start = 1e-3 * rng.randn(len(EDGES), len(SEARCH_OPS))
        history[cell_type] = np.stack([start + t * drift for t in range(epochs + 1)])
    return history


def run_cli(argv, capsys):
    """darts_plot.main in this process; (exit code, stdout, stderr)."""
    try:
        darts_plot.main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


# --- series files -----------------------------------------------------------------------------

def test_nnabla_example_series_are_found_and_read_with_iteration_indices(tmp_path):
    write_series(tmp_path, "Training loss", [0, 100, 200], [2.3, 1.25, 0.5])
    (tmp_path / "Training-time.timer.txt").write_text("0 1.5 1.5 0\n")  # MonitorTimeElapsed: ignored
    series = find_series(str(tmp_path))
    assert series == {"Training loss": str(tmp_path / "Training-loss.series.txt")}
    index, value = read_series(series["Training loss"])
    np.testing.assert_array_equal(index, [0, 100, 200])
    np.testing.assert_allclose(value, [2.3, 1.25, 0.5])


@pytest.mark.parametrize("content, problem", [
    ("", "empty"),
    ("\n\n", "empty"),
    ("0 2.3\n1 1.9\n2", "truncated"),
    ("0 2.3\n1 abc\n", "malformed"),
    ("0 2.3 7\n", "malformed"),
])
def test_bad_series_file_is_a_series_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "Training-loss.series.txt"
    path.write_text(content)
    with pytest.raises(SeriesError) as error:
        read_series(str(path))
    message = str(error.value)
    assert str(path) in message and problem in message
    assert "\n" not in message


def test_cli_reports_a_bad_series_file_in_one_line(tmp_path, capsys):
    write_series(tmp_path, "Training error", [0, 1], [0.9, 0.5])
    (tmp_path / "Training-loss.series.txt").write_text("0 2.3\n1\n")
    code, _, err = run_cli(["curves", str(tmp_path), "-o", str(tmp_path / "c.png")], capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "Training-loss.series.txt" in err and "truncated" in err
    assert not (tmp_path / "c.png").exists()


def test_directory_without_series_gives_a_clear_message(tmp_path, capsys):
    (tmp_path / "Training-time.timer.txt").write_text("0 1.5 1.5 0\n")
    with pytest.raises(SeriesError, match=r"no \*\.series\.txt files in "):
        plot_curves([str(tmp_path)], str(tmp_path / "c.png"))
    code, _, err = run_cli(["curves", str(tmp_path)], capsys)
    assert code == 1
    assert err == f"error: no *.series.txt files in {tmp_path}\n"


# --- learning curves --------------------------------------------------------------------------

def test_curves_are_a_png_with_loss_error_and_time_panels(tmp_path):
    run = fake_search_dir(str(tmp_path / "search"))
    out = tmp_path / "curves.png"
    figure = plot_curves([run], str(out))
    assert_png(out, width=1650, height=500)  # three 5.5 x 5 inch panels at 100 dpi
    assert [ax.get_title() for ax in figure.axes] == ["Loss", "Error", "Epoch time"]
    loss_axes = figure.axes[0]
    assert loss_axes.get_xlabel() == "Epoch" and loss_axes.get_ylabel() == "loss"
    assert figure.axes[2].get_ylabel() == "Epoch time (s)"  # the unit of the time axis
    training = next(line for line in loss_axes.get_lines() if line.get_label() == "search: Training loss")
    _, expected = read_series(os.path.join(run, "Training-loss.series.txt"))
    np.testing.assert_allclose(training.get_ydata(), expected)


def test_two_directories_are_overlaid_with_both_labels(tmp_path):
    first = fake_search_dir(str(tmp_path / "a"), seed=0)
    second = fake_search_dir(str(tmp_path / "b"), epochs=12, seed=1)
    figure = plot_curves([first, second], str(tmp_path / "both.png"), labels=["first order", "second order"])
    loss_axes = figure.axes[0]
    assert len(loss_axes.get_lines()) == 4
    legend = [text.get_text() for text in loss_axes.get_legend().get_texts()]
    assert sorted(legend) == ["first order: Training loss", "first order: Validation loss",
                              "second order: Training loss", "second order: Validation loss"]
    # Each run has its own colour; within a run the validation curve is the dashed one.
    lines = {line.get_label(): line for line in loss_axes.get_lines()}
    assert lines["first order: Training loss"].get_color() == lines["first order: Validation loss"].get_color()
    assert lines["first order: Training loss"].get_color() != lines["second order: Training loss"].get_color()
    assert lines["second order: Validation loss"].get_linestyle() == "--"
    # The legend sits below the plotting area, where it cannot hide a curve.
    figure.canvas.draw()
    assert loss_axes.get_legend().get_window_extent().y1 < loss_axes.get_window_extent().y0


def search_series_dir(directory, seed):
    """The series of a search: several of them share the loss and the error panels."""
    rng = np.random.RandomState(seed)
    e = np.arange(1, 6)
    for name in ("Training loss", "Alpha-step loss", "Validation loss", "Training error", "Alpha-step error",
                 "Validation error", "Discretized validation error", "Epoch time"):
        write_series(directory, name, e, rng.rand(len(e)))
    return str(directory)


def line_style(line):
    return line.get_linestyle(), line.get_marker()


@pytest.mark.parametrize("runs", [1, 2])
def test_each_run_has_one_colour_and_each_series_one_line_style_in_every_panel(tmp_path, runs):
    dirs = [search_series_dir(tmp_path / f"run{number}", seed=number) for number in range(runs)]
    figure = plot_curves(dirs, str(tmp_path / "curves.png"))
    lines = [line for ax in figure.axes for line in ax.get_lines()]
    by_label = {line.get_label(): line for line in lines}
    for number in range(runs):
        run_lines = [line for line in lines if line.get_label().startswith(f"run{number}: ")]
        assert len({line.get_color() for line in run_lines}) == 1, "a run is one colour, in every panel"
    if runs == 2:
        assert by_label["run0: Training loss"].get_color() != by_label["run1: Training loss"].get_color()
    for ax in figure.axes:
        for number in range(runs):
            styles = [line_style(line) for line in ax.get_lines() if line.get_label().startswith(f"run{number}: ")]
            assert len(set(styles)) == len(styles), f"{ax.get_title()}: two series of a run look alike"
            assert len({linestyle for linestyle, _ in styles}) == len(styles)
    # A style means one kind of series wherever it is drawn, and the same in every run.
    for kind in ("Training", "Alpha step", "Validation"):
        assert line_style(by_label[f"run0: {kind} loss"]) == line_style(by_label[f"run0: {kind} error"])
    for label, line in by_label.items():
        assert line_style(line) == line_style(by_label["run0: " + label.split(": ", 1)[1]])


def test_cli_draws_an_nnabla_example_dir_against_iterations(tmp_path, capsys):
    example = tmp_path / "tmp.monitor"
    iterations = np.arange(0, 5000, 100)
    write_series(example, "Training loss", iterations, 2.3 * np.exp(-iterations / 1500) + 0.2)
    write_series(example, "Training error", iterations, 0.9 * np.exp(-iterations / 1200) + 0.05)
    write_series(example, "Test error", iterations, 0.9 * np.exp(-iterations / 1400) + 0.1)
    out = tmp_path / "example.png"
    code, stdout, err = run_cli(["curves", str(example), "--x", "iteration", "-o", str(out)], capsys)
    assert (code, err) == (0, "")
    assert stdout.split() == [str(out)]
    assert_png(out, width=1100, height=500)  # loss and error panels only


# --- alpha history ----------------------------------------------------------------------------

def test_alpha_plot_shows_the_softmax_weight_of_every_op_on_every_edge(tmp_path):
    history = fake_alpha_history(epochs=20)
    path = tmp_path / "alpha_history.npz"
    np.savez(path, **history)
    out = tmp_path / "alphas.png"
    figure = plot_alpha_history(str(path), str(out))
    assert_png(out)
    edge_axes = [ax for ax in figure.axes if ax.get_lines()]
    assert len(edge_axes) == 2 * len(EDGES)
    assert all(len(ax.get_lines()) == len(SEARCH_OPS) for ax in edge_axes)
    # The first normal-cell panel is edge 0 (c_{k-2}) -> node 2; its sep_conv_3x3 line is that op's weight.
    first = edge_axes[0]
    assert first.get_title() == "0: $c_{k-2}$ → 2"
    expected = op_weights(history["normal"])[:, 0, OP_NAMES.index("sep_conv_3x3")]
    np.testing.assert_allclose(first.get_lines()[OP_NAMES.index("sep_conv_3x3")].get_ydata(), expected)
    legend_texts = [text.get_text() for ax in figure.axes if ax.get_legend() for text in ax.get_legend().get_texts()]
    assert legend_texts == [OP_NAMES[op] for op in SEARCH_OPS] * 2


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("0 1.5\n"), "not an .npz archive"),
    (lambda p: np.savez(p, normal=np.zeros((3, 14, 8))), "has no 'reduction' array"),
    (lambda p: np.savez(p, normal=np.zeros((3, 14, 8)), reduction=np.zeros((3, 14, 7))), "has shape"),
    (lambda p: np.savez(p, normal=np.full((3, 14, 8), np.nan), reduction=np.zeros((3, 14, 8))), "non-finite"),
])
def test_bad_alpha_history_is_a_one_line_error(tmp_path, make, message):
    path = tmp_path / "history.npz"
    make(path)
    with pytest.raises(AlphaHistoryError, match=message) as error:
        load_alpha_history(str(path))
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_cli_alphas_of_a_missing_file_exits_1(tmp_path, capsys):
    code, _, err = run_cli(["alphas", str(tmp_path / "nothing.npz")], capsys)
    assert code == 1 and err.count("\n") == 1 and "does not exist" in err


# --- cell diagrams ----------------------------------------------------------------------------

def test_cell_graph_has_the_cells_edges_and_every_node_feeds_the_output():
    cell = NAMED_ARCHITECTURES["DARTS_V2"].normal
    source = cell_diagram.cell_graph(cell, "normal cell").source
    assert "rankdir=LR" in source
    for node, edges in cell.items():
        for op_id, input_node in edges:
            assert f"n{input_node} -> n{node} [label={OP_NAMES[op_id]}" in source
        assert f"n{node} -> out" in source
    assert "c<sub>k-2</sub>" in source and "c<sub>k</sub>" in source


def json_node_ids(path, cell_key):
    """The node ids a cell of an architecture JSON uses: its nodes and the inputs its edges read."""
    with open(path) as f:
        cell = json.load(f)[cell_key]
    return {int(node) for node in cell} | {input_node for edges in cell.values() for _, input_node in edges}


def test_cell_diagrams_label_nodes_with_the_json_node_ids(tmp_path):
    path = str(tmp_path / "DARTS_arch.json")
    save_architecture(NAMED_ARCHITECTURES["DARTS_V2"], path)
    for cell_key, reduction in (("arch_normal", False), ("arch_reduction", True)):
        cell, concat = load_architecture(path).cell(reduction)
        source = cell_diagram.cell_graph(cell, "cell", concat).source
        labels = dict(re.findall(r"^\s*n(\d+) \[label=<?(\d+)", source, re.M))
        assert all(node == label for node, label in labels.items())
        assert {int(node) for node in labels} == json_node_ids(path, cell_key)
    assert "0: c<sub>k-2</sub>" in source and "1: c<sub>k-1</sub>" in source  # the paper's names as well


def test_alpha_panels_name_each_edge_by_the_json_node_ids(tmp_path):
    figure = plot_alpha_history(fake_alpha_history(epochs=2), str(tmp_path / "alphas.png"))
    titles = [ax.get_title() for ax in figure.axes if ax.get_lines()]
    edges = [tuple(int(node) for node in re.fullmatch(r"(\d+)(?::.*)? → (\d+)", title).groups()) for title in titles]
    assert edges == list(EDGES) * 2  # the rows of the alphas, (input node, node) as the JSON numbers them
    # Epochs as the log counts them: row e of the history holds the alphas after epoch e, row 0 the initial ones.
    assert all(line.get_xdata().tolist() == [0, 1, 2] for ax in figure.axes for line in ax.get_lines())
    assert {ax.get_xlabel() for ax in figure.axes} == {"", "epoch (0: initial)"}
    path = str(tmp_path / "DARTS_arch.json")
    save_architecture(NAMED_ARCHITECTURES["DARTS_V2"], path)
    assert json_node_ids(path, "arch_normal") == {node for edge in EDGES for node in edge}


@pytest.mark.parametrize("spec_kind", ["json", "genotype", "named"])
def test_cells_from_json_genotype_string_and_named_cell(tmp_path, capsys, spec_kind):
    arch = NAMED_ARCHITECTURES["DARTS_V2"]
    if spec_kind == "json":
        spec = str(tmp_path / "DARTS_arch.json")
        save_architecture(arch, spec)
    elif spec_kind == "genotype":
        spec = to_genotype_string(arch)
    else:
        spec = "DARTS_V2"
    out_dir = tmp_path / "cells"
    code, stdout, err = run_cli(["cells", spec, "-o", str(out_dir)], capsys)
    assert (code, err) == (0, "")
    assert stdout.split() == [str(out_dir / "normal.png"), str(out_dir / "reduction.png")]
    for name in ("normal.png", "reduction.png"):
        assert_png(out_dir / name)


def test_cells_as_svg_name_the_ops(tmp_path):
    paths = cell_diagram.draw_architecture(load_architecture("DARTS_V1"), str(tmp_path), fmt="svg",
                                           prefix="epoch_003_")
    assert paths == [str(tmp_path / "epoch_003_normal.svg"), str(tmp_path / "epoch_003_reduction.svg")]
    normal, reduction = (open(path).read() for path in paths)
    assert "<svg" in normal and "sep_conv_3x3" in normal and "max_pool_3x3" not in normal
    assert "max_pool_3x3" in reduction and "avg_pool_3x3" in reduction


def test_without_dot_the_source_is_written_and_a_notice_printed_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    monkeypatch.setattr(cell_diagram, "_notice_printed", False)
    arch = load_architecture("DARTS_V2")
    first = cell_diagram.draw_architecture(arch, str(tmp_path / "a"))
    second = cell_diagram.draw_architecture(arch, str(tmp_path / "b"))
    assert first == [str(tmp_path / "a" / "normal.dot"), str(tmp_path / "a" / "reduction.dot")]
    assert len(second) == 2
    assert open(first[0]).read().startswith("digraph")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("notice: graphviz's dot is not installed; wrote .dot source")


def test_cli_unknown_architecture_exits_1_with_one_line(capsys):
    code, _, err = run_cli(["cells", "DARTS_V9"], capsys)
    assert code == 1 and err.count("\n") == 1 and "unknown named cell 'DARTS_V9'" in err


# --- a whole run ------------------------------------------------------------------------------

def test_draw_run_draws_curves_alphas_and_the_latest_cells(tmp_path):
    run = fake_search_dir(str(tmp_path / "search.monitor"), epochs=3)
    np.savez(os.path.join(run, "alpha_history.npz"), **fake_alpha_history(epochs=3))
    save_architecture(load_architecture("DARTS_V1"), os.path.join(run, "arch", "epoch_001.json"))
    save_architecture(load_architecture("DARTS_V2"), os.path.join(run, "arch", "epoch_002.json"))
    warnings = []
    written = draw_run(run, fmt="svg", warn=warnings.append)
    assert warnings == []
    assert written == [os.path.join(run, "curves.png"), os.path.join(run, "alphas.png"),
                       os.path.join(run, "cells", "normal.svg"), os.path.join(run, "cells", "reduction.svg")]
    assert_png(written[0])
    assert_png(written[1])
    # DARTS_V2's normal cell has a dil_conv_3x3, DARTS_V1's has none: the epoch 2 cell was drawn.
    assert "dil_conv_3x3" in open(written[2]).read()


def test_a_broken_picture_is_a_warning_and_the_rest_is_drawn(tmp_path, capsys):
    run = tmp_path / "run"
    write_series(run, "Training loss", [0, 1], [2.0, 1.0])
    (run / "Training-error.series.txt").write_text("0 0.9\n1 oops\n")
    (run / "alpha_history.npz").write_bytes(b"not a zip")
    save_architecture(load_architecture("DARTS_V2"), str(run / "arch" / "epoch_001.json"))
    written = draw_run(str(run))
    assert written == [str(run / "cells" / "normal.png"), str(run / "cells" / "reduction.png")]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("warning: could not draw ") for line in err)
    assert "Training-error.series.txt" in err[0] and "not an .npz archive" in err[1]
    # The command draws what it can too, but says so and fails.
    code, _, cli_err = run_cli(["run", str(run)], capsys)
    assert code == 1 and len(cli_err.splitlines()) == 2


def test_run_on_a_directory_with_nothing_to_draw_fails_clearly(tmp_path, capsys):
    assert draw_run(str(tmp_path)) == []
    code, _, err = run_cli(["run", str(tmp_path)], capsys)
    assert code == 1 and err.startswith(f"error: nothing to draw in {tmp_path}") and err.count("\n") == 1


def test_latest_architecture_is_the_newer_of_darts_arch_and_the_last_epoch(tmp_path):
    assert latest_architecture_file(str(tmp_path)) is None
    epoch = tmp_path / "arch" / "epoch_010.json"
    final = tmp_path / "DARTS_arch.json"
    save_architecture(load_architecture("DARTS_V1"), str(tmp_path / "arch" / "epoch_009.json"))
    save_architecture(load_architecture("DARTS_V1"), str(epoch))
    save_architecture(load_architecture("DARTS_V2"), str(final))
    os.utime(epoch, (1000, 1000))
    os.utime(final, (2000, 2000))
    assert latest_architecture_file(str(tmp_path)) == str(final)
    # A DARTS_arch.json left from an earlier search loses to the epochs of the running one.
    os.utime(final, (500, 500))
    assert latest_architecture_file(str(tmp_path)) == str(epoch)
