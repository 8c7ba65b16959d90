"""SLURM side of aslhpc, one job per module. It knows jobs, not experiments: the orchestration layer
hands it a :class:`~aslhpc.slurm.request.JobRequest` and never the experiment spec.

* :mod:`.cluster`    what the cluster offers (sinfo/scontrol) and whether a request fits it;
* :mod:`.accounting` job states from one batched sacct call (squeue when accounting is off);
* :mod:`.request`    ``JobRequest`` / ``SiteOptions``: what one job asks for, site values checked;
* :mod:`.executor`   one submitit executor per cell, and the sbatch script it renders;
* :mod:`.cell_job`   the submitit Checkpointable a cell's job runs (requeue-safe);
* :mod:`.local`      the same cells through submitit's LocalExecutor when there is no SLURM.
"""
