# Setup lines for Northeastern's Discovery cluster (the 2020 study's), run by every cell's
# sbatch script before the cell starts (submitit's slurm_setup). One shell line per line;
# blank lines and lines starting with '#' are skipped. Adjust module names to your site.
# Each line says what it loads and stops the job with one line when it cannot (no silent fallback).
# The job's Python (and its virtual environment) is the one submit ran from: submit records it in
# the script after these lines, so nothing here guesses a venv.
# No CUDA module: PyPI's torch wheels bundle their own CUDA runtime (cu126 for the V100s' torch 2.7.x),
# so a cell needs only the node's NVIDIA driver, which `python -m aslhpc.doctor` checks. A site whose
# torch is a module build adds its `module load` line here, with the same loud failure as below.
echo "aslhpc preamble discovery: module purge (the job's Python and CUDA come from submit's venv)"
module purge || { echo "error: aslhpc preamble: 'module purge' failed on $(hostname); fix the module setup in sbatch_templates/discovery.sh" >&2; exit 1; }
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
