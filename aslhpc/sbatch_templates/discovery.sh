# Setup lines for Northeastern's Discovery cluster (the 2020 study's), run by every cell's
# sbatch script before the cell starts (submitit's slurm_setup). One shell line per line;
# blank lines and lines starting with '#' are skipped. Adjust module names to your site.
# Each line says what it loads and stops the job with one line when it cannot (no silent fallback).
# The job's Python (and its virtual environment) is the one submit ran from: submit records it in
# the script after these lines, so nothing here guesses a venv.
echo "aslhpc preamble discovery: module load cuda/11.8"
module purge || { echo "error: aslhpc preamble: 'module purge' failed on $(hostname); fix the module setup in sbatch_templates/discovery.sh" >&2; exit 1; }
module load cuda/11.8 || { echo "error: aslhpc preamble: 'module load cuda/11.8' failed on $(hostname); name a module your site has (module avail cuda) in sbatch_templates/discovery.sh" >&2; exit 1; }
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
