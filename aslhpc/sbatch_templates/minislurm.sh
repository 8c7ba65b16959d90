# Setup lines for the one-machine test cluster (scripts/minislurm.sh): no modules, the venv
# Python is used by absolute path. Keep torch to the CPUs SLURM granted, since the mini
# cluster's nodes share the machine's few real cores.
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
