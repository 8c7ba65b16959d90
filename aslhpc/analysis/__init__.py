"""Analysis of an experiment's cells: the 2020 study's tables, plots and verdicts, computed.

Pure functions over pandas frames (``matrix`` -> ``tables`` -> ``hypotheses``), plus
``plots``/``report`` for the files and ``reference`` for the published 2020 figures.
``collect_experiment`` is the one call the CLI (``python -m aslhpc.collect``) and demos use.
"""

from aslhpc.analysis.hypotheses import Conclusions, Verdict, conclusions, evaluate
from aslhpc.analysis.matrix import find_experiments, holes, load_matrix
from aslhpc.analysis.reference import (
    REFERENCE_LABEL,
    default_reference_path,
    load_reference,
    reference_matrix,
)
from aslhpc.analysis.report import Analysis, CollectOutput, analyze, collect_experiment, collect_reference
from aslhpc.analysis.tables import derive, paper_tables, summarize

__all__ = [
    "REFERENCE_LABEL",
    "Analysis",
    "CollectOutput",
    "Conclusions",
    "Verdict",
    "analyze",
    "collect_experiment",
    "collect_reference",
    "conclusions",
    "default_reference_path",
    "derive",
    "evaluate",
    "find_experiments",
    "holes",
    "load_matrix",
    "load_reference",
    "paper_tables",
    "reference_matrix",
    "summarize",
]
