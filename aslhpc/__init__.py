"""aslhpc: reproduce the 2020 ASL-alphabet data-parallel study as measured SLURM jobs.

Data flows one way: experiment definition -> submit (manifest) -> one job per cell
(trainer + NVML sampler write the cell's files) -> status / collect read those files.
"""

__version__ = "0.1.0"
