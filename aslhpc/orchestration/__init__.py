"""From an experiment definition to cells on a cluster, and what state each cell is in.

* :mod:`.experiment` ``jobs/*.toml`` -> ``ExperimentSpec`` -> cells;
* :mod:`.manifest`   the per-experiment manifest on disk;
* :mod:`.submission` submit cells (SLURM or local), idempotently;
* :mod:`.cellrecord` one cell's files, read and checked once (a damaged file is named, not raised);
* :mod:`.cellstate`  one cell's state from its record, the manifest and SLURM;
* :mod:`.detach`     ``submit --detach``: the same submit re-run in its own session.
"""
