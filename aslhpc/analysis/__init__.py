"""Analysis of an experiment's cells: the 2020 study's tables, plots and verdicts, computed.

Pure functions over what :mod:`aslhpc.snapshot` read (``matrix`` -> ``tables`` -> ``verdicts``), plus
``plots``/``report`` for the files, ``console`` for collect's terminal summary, ``extras`` for per-cell
figures from result.json beside the matrix (GPU utilisation, time breakdown), and
``reference``/``reference_cpu`` for the published 2020 figures. Nothing here imports ``orchestration``
or ``slurm``; the driver that reads, analyses and writes is :mod:`aslhpc.collecting`.
"""

from aslhpc.analysis.analyze import (
    Analysis,
    CollectOutput,
    analyze,
    reference_cells,
)
from aslhpc.analysis.hypotheses import Conclusions, conclusions
from aslhpc.analysis.matrix import holes
from aslhpc.analysis.reference import (
    REFERENCE_LABEL,
    default_reference_path,
    load_reference,
    reference_matrix,
)
from aslhpc.analysis.reference_cpu import CpuReference, load_cpu_reference
from aslhpc.analysis.tables import derive, paper_tables, summarize
from aslhpc.analysis.verdicts import Verdict, evaluate

__all__ = [
    "REFERENCE_LABEL",
    "Analysis",
    "CollectOutput",
    "Conclusions",
    "CpuReference",
    "Verdict",
    "analyze",
    "conclusions",
    "default_reference_path",
    "derive",
    "evaluate",
    "holes",
    "load_cpu_reference",
    "load_reference",
    "paper_tables",
    "reference_cells",
    "reference_matrix",
    "summarize",
]
