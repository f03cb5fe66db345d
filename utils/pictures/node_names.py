"""How every picture names the nodes of a cell: by the node ids of the architecture JSON (models.genotype:
0 and 1 the cell's inputs, 2, 3, ... its intermediate nodes), which is the file users read and edit; the
two inputs also carry the DARTS paper's names, c_{k-2} and c_{k-1}, the outputs of the two cells before.
"""
from models.genotype import FIRST_NODE

# The subscripts of the paper's names of the input nodes 0 and 1.
INPUT_SUBSCRIPTS = ("k-2", "k-1")


def input_subscript(node):
    """'k-2' or 'k-1' for the input nodes, None for an intermediate node."""
    return INPUT_SUBSCRIPTS[node] if node < FIRST_NODE else None


def html_node_label(node):
    """The node as a Graphviz HTML-like label: '0: c<sub>k-2</sub>' for an input, '2' for node 2."""
    subscript = input_subscript(node)
    return str(node) if subscript is None else f"{node}: c<sub>{subscript}</sub>"


def math_node_label(node):
    """The node in matplotlib's mathtext: '0: $c_{k-2}$' for an input, '2' for node 2."""
    subscript = input_subscript(node)
    return str(node) if subscript is None else f"{node}: $c_{{{subscript}}}$"
