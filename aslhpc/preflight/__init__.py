"""Preflight checks of a node before a cell runs there (``python -m aslhpc.doctor``).

One module per group (versions, cuda, nvml, storage, data, throughput); every check returns a
:class:`~aslhpc.preflight.result.Check`. :func:`~aslhpc.preflight.runner.run_checks` runs them
all, the doctor CLI prints them and decides the exit code.
"""

from aslhpc.preflight.result import FAIL, PASS, SKIP, WARN, Check
from aslhpc.preflight.runner import DoctorOptions, Report, run_checks

__all__ = ["FAIL", "PASS", "SKIP", "WARN", "Check", "DoctorOptions", "Report", "run_checks"]
