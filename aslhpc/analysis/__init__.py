"""Analysis of an experiment's cells: the 2020 study's tables, plots and verdicts, computed.

Pure functions over pandas frames (``matrix`` -> ``tables`` -> ``hypotheses``), plus
``plots``/``report`` for the files, ``console`` for collect's terminal summary, ``extras`` for
per-cell figures read from result.json beside the matrix (GPU utilisation, time breakdown), and
``reference``/``reference_cpu`` for the published 2020 figures.
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
from aslhpc.analysis.reference_cpu import CpuReference, load_cpu_reference
from aslhpc.analysis.report import (
    Analysis,
    CollectOutput,
    analyze,
    collect_experiment,
    collect_reference,
    reference_cells,
)
from aslhpc.analysis.tables import derive, paper_tables, summarize

__all__ = [
    "REFERENCE_LABEL",
    "Analysis",
    "CollectOutput",
    "Conclusions",
    "CpuReference",
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
    "load_cpu_reference",
    "load_reference",
    "paper_tables",
    "reference_cells",
    "reference_matrix",
    "summarize",
]
