# Setup lines for Northeastern's Discovery cluster (the 2020 study's), run by every cell's
# sbatch script before the cell starts (submitit's slurm_setup). One shell line per line;
# blank lines and lines starting with '#' are skipped. Adjust module names to your site.
module purge 2>/dev/null || true
module load cuda/11.8 2>/dev/null || true
# the job runs the Python that ran `python -m aslhpc.submit` (the venv's, by absolute path);
# activating it as well puts its console scripts on PATH
[ -f "${ASLHPC_VENV:-$HOME/aslhpc/.venv}/bin/activate" ] && source "${ASLHPC_VENV:-$HOME/aslhpc/.venv}/bin/activate"
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
