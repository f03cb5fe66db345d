"""Pictures of the two cells of an architecture, drawn by Graphviz.

Nodes carry the architecture JSON's ids (utils.pictures.node_names): the inputs 0 (c_{k-2}) and 1 (c_{k-1}),
the intermediate nodes 2..N, and the output c_{k}, which concatenates the cell's concat nodes.
Without Graphviz's `dot` program the .dot source is written instead, so a run never fails for it.
"""
import os
import sys

import graphviz

from models.genotype import FIRST_NODE, all_nodes
from ops.atomic_file import atomic_write
from ops.operations import OP_NAMES
from ops.recurrent_ops import RECURRENT_OP_NAMES
from utils.pictures.node_names import html_node_label

FORMATS = ("png", "pdf", "svg")
CELL_TYPES = ("normal", "reduction")
_FONT = "Helvetica"
# HTML-like labels, so that k-2 is set as a subscript as in the paper.
_OUTPUT_LABEL = "<c<sub>k</sub>>"
# The colours of matplotlib's default cycle, by op id, so an edge has the colour of its op in alphas.png.
OP_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
             "#bcbd22", "#17becf")
_notice_printed = False


def _node_id(node):
    return f"n{node}"


def cell_graph(cell, title, concat=None):
    """A left-to-right Digraph of one cell {node: ((op_id, input_node), ...)} whose output joins
    `concat` (None: every intermediate node)."""
    concat = all_nodes(cell) if concat is None else concat
    graph = graphviz.Digraph(name=title, graph_attr={
        "rankdir": "LR", "label": title, "labelloc": "t", "fontsize": "22", "fontname": _FONT,
        "nodesep": "0.35", "ranksep": "0.9", "pad": "0.2"})
    graph.attr("node", shape="box", style="rounded,filled", fontname=_FONT, fontsize="18",
               penwidth="1.5", height="0.55", width="0.8")
    graph.attr("edge", fontname=_FONT, fontsize="15", penwidth="1.5", arrowsize="0.8")
    for node in range(FIRST_NODE):
        graph.node(_node_id(node), f"<{html_node_label(node)}>", fillcolor="#a6cee3")
    for node in sorted(cell):
        graph.node(_node_id(node), html_node_label(node), fillcolor="#fdf5c0")
    graph.node("out", _OUTPUT_LABEL, fillcolor="#b2df8a")
    for node in sorted(cell):
        for op_id, input_node in cell[node]:
            # Coloured by op: where edges cross, the colour tells which label belongs to which edge.
            graph.edge(_node_id(input_node), _node_id(node), label=OP_NAMES[op_id],
                       color=OP_COLORS[op_id], fontcolor=OP_COLORS[op_id])
    for node in concat:
        graph.edge(_node_id(node), "out", color="gray55")
    return graph


def _print_dot_notice(out_dir, fmt):
    global _notice_printed
    if not _notice_printed:
        _notice_printed = True
        print(f"notice: graphviz's dot is not installed; wrote .dot source to {out_dir} instead of "
              f"{fmt.upper()}; install graphviz (e.g. apt-get install graphviz) to get {fmt.upper()}",
              file=sys.stderr)


def draw_architecture(arch, out_dir, fmt="png", prefix=""):
    """Write <prefix>normal.<fmt> and <prefix>reduction.<fmt> into out_dir; returns their paths.

    Without `dot`, <prefix>normal.dot and <prefix>reduction.dot are written and returned instead.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown picture format {fmt!r}; choose one of {', '.join(FORMATS)}")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for cell_type in CELL_TYPES:
        cell, concat = arch.cell(reduction=cell_type == "reduction")
        written.append(_render(cell_graph(cell, f"{cell_type} cell", concat), out_dir, f"{prefix}{cell_type}", fmt))
    return written


def _render(graph, out_dir, name, fmt):
    """Write out_dir/<name>.<fmt>, or <name>.dot without Graphviz's dot; returns its path."""
    if fmt == "png":  # sharper text than the default 96 dpi; vector formats keep their own size
        graph.graph_attr["dpi"] = "110"
    try:
        data, ext = graph.pipe(format=fmt), fmt
    except graphviz.ExecutableNotFound:
        _print_dot_notice(out_dir, fmt)
        data, ext = graph.source.encode("utf-8"), "dot"
    path = os.path.join(out_dir, f"{name}.{ext}")
    with atomic_write(path, "wb") as f:  # a run redraws these every epoch: a viewer never reads half a file
        f.write(data)
    return path


def recurrent_cell_graph(genotype, title="recurrent cell"):
    """The seed's rnn/visualize.py: x_t and h_{t-1} feed node 0, an edge j -> i per node labelled with
    its op, and every concat node feeds h_t."""
    graph = graphviz.Digraph(name=title, graph_attr={
        "rankdir": "LR", "label": title, "labelloc": "t", "fontsize": "22", "fontname": _FONT,
        "nodesep": "0.35", "ranksep": "0.7", "pad": "0.2"})
    graph.attr("node", shape="box", style="rounded,filled", fontname=_FONT, fontsize="18",
               penwidth="1.5", height="0.55", width="0.8")
    graph.attr("edge", fontname=_FONT, fontsize="15", penwidth="1.5", arrowsize="0.8")
    graph.node("x", "<x<sub>t</sub>>", fillcolor="#a6cee3")
    graph.node("h", "<h<sub>t-1</sub>>", fillcolor="#a6cee3")
    graph.node("out", "<h<sub>t</sub>>", fillcolor="#b2df8a")
    for node in range(genotype.steps + 1):
        graph.node(_node_id(node), str(node), fillcolor="#fdf5c0")
    graph.edge("x", _node_id(0), color="gray55")
    graph.edge("h", _node_id(0), color="gray55")
    for node, (op_id, input_node) in enumerate(genotype.recurrent, start=1):
        graph.edge(_node_id(input_node), _node_id(node), label=RECURRENT_OP_NAMES[op_id],
                   color=OP_COLORS[op_id], fontcolor=OP_COLORS[op_id])
    for node in genotype.concat:
        graph.edge(_node_id(node), "out", color="gray55")
    return graph


def draw_recurrent_cell(genotype, out_dir, fmt="png", prefix=""):
    """Write <prefix>recurrent.<fmt> (or .dot without Graphviz's dot) into out_dir; returns [its path]."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown picture format {fmt!r}; choose one of {', '.join(FORMATS)}")
    os.makedirs(out_dir, exist_ok=True)
    return [_render(recurrent_cell_graph(genotype), out_dir, f"{prefix}recurrent", fmt)]
