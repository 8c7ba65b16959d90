"""From an experiment definition to cells on a cluster, and what state each cell is in.

* :mod:`.experiment` ``jobs/*.toml`` -> ``ExperimentSpec`` -> cells;
* :mod:`.manifest`   the per-experiment manifest on disk;
* :mod:`.submission` submit cells (SLURM or local), idempotently;
* :mod:`.cellstate`  one cell's state from its files, the manifest and SLURM;
* :mod:`.detach`     ``submit --detach``: the same submit re-run in its own session.
"""
