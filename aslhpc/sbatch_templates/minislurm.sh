# Setup lines for the one-machine test cluster (scripts/minislurm.sh): no modules to load; the
# Python (and venv) submit ran from is recorded in the script by submit. Keep torch to the CPUs
# SLURM granted, since the mini cluster's nodes share the machine's few real cores.
echo "aslhpc preamble minislurm: no modules; OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}"
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
