"""Cells extracted from a complexity-controlled search at a chosen λ̃ (var_nas I6).

Two modes, both keeping every edge of the DAG so that the cell is complete in our JSON ('none' is op
ZERO_OP and adds nothing to its node):
- 'simple': every edge keeps its argmax op, 'none' included;
- 'DARTS': the two edges per node that models.genotype.derive_cell keeps, with their ops; the other
  edges are 'none'.
"""
import os

import numpy as np

from models.complexity import architecture_parameters
from models.genotype import EDGES, NODES, Architecture, ArchitectureError, derive_cell, save_architecture
from ops.operations import SEARCH_OPS, ZERO_OP

EXTRACTION_MODES = ("simple", "DARTS")


def simple_cell(alpha):
    """Every edge with its argmax op (ties to the lower op id), 'none' included."""
    alpha = np.asarray(alpha)
    cell = {node: [] for node in NODES}
    for row, (input_node, node) in enumerate(EDGES):
        cell[node].append((SEARCH_OPS[int(np.argmax(alpha[row]))], input_node))
    return cell


def darts_cell(alpha):
    """derive_cell's two edges per node with their ops, every other edge 'none', in input-node order."""
    kept = {node: dict((input_node, op_id) for op_id, input_node in edges)
            for node, edges in derive_cell(alpha).items()}
    return {node: [(kept[node].get(input_node, ZERO_OP), input_node) for input_node in range(node)]
            for node in NODES}


def extract_architecture(alphas, mode):
    """The Architecture of {alpha name: (14, 8) array} (e.g. Hypernetwork.alphas_at(λ̃)) in `mode`."""
    if mode not in EXTRACTION_MODES:
        raise ArchitectureError(f"unknown extraction mode {mode!r}; choose from {', '.join(EXTRACTION_MODES)}")
    cell = simple_cell if mode == "simple" else darts_cell
    return Architecture(normal=cell(alphas["alpha_normal"]), reduction=cell(alphas["alpha_reduction"]))


def extracted_file_name(lam_tilde, mode):
    """arch_lambda_<λ̃>_<mode>.json; the pareto picture groups runs by the λ̃ in this name."""
    return f"arch_lambda_{lam_tilde:g}_{mode}.json"


def extract_to_file(hypernetwork, lam_tilde, mode, directory, channels, num_cells):
    """Writes the cell at λ̃ into `directory`; returns (path, weight count of its ops at channels, num_cells)."""
    arch = extract_architecture(hypernetwork.alphas_at(lam_tilde), mode)
    path = os.path.join(directory, extracted_file_name(lam_tilde, mode))
    save_architecture(arch, path)
    return path, architecture_parameters(arch, channels, num_cells)
