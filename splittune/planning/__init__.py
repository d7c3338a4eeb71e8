"""Resource management: bandwidth shares, cut layer + compression, server compute (CARD), server order,
min-cut model splitting, and the accuracy model A(rho, E).

The torch-free solvers are re-exported here; `modelgraph` (model -> DAG), `report` (the `plan` and
`split` commands) and `from_network` (problems from a network World) import torch and are imported
from their modules.
"""

from splittune.planning.accuracy import AccuracyModel
from splittune.planning.bandwidth import ALLOCATORS, ExactAllocator, RandomAllocator, SqpAllocator, make_allocator
from splittune.planning.card import CardDecision, CardProblem, solve_card
from splittune.planning.cut import CutDecision, CutProblem, compression_ratio, solve_cut
from splittune.planning.mincut import Split, SplitGraph, Tensor, min_cut
from splittune.planning.ordering import RULES, OrderProblem, makespan, schedule

__all__ = [
    "ALLOCATORS",
    "RULES",
    "AccuracyModel",
    "CardDecision",
    "CardProblem",
    "CutDecision",
    "CutProblem",
    "ExactAllocator",
    "OrderProblem",
    "RandomAllocator",
    "Split",
    "SplitGraph",
    "SqpAllocator",
    "Tensor",
    "compression_ratio",
    "make_allocator",
    "makespan",
    "min_cut",
    "schedule",
    "solve_card",
    "solve_cut",
]
