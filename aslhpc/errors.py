"""User-facing errors: one line that names the problem and the fix.

CLIs (:func:`aslhpc.cli.run_cli`) catch :class:`AslhpcError` and print ``error: <message>`` without a
traceback, so every raise site must phrase its message as "what is wrong; how to fix it".
"""


class AslhpcError(Exception):
    """A problem the user can fix; its message is shown alone, on one line."""


class DataError(AslhpcError):
    """The dataset directory is missing, empty or not in the Kaggle layout."""


class ConfigError(AslhpcError):
    """An experiment definition or a flag has a bad value."""


class ClusterError(AslhpcError):
    """SLURM refused (or would refuse) a request."""


#: Crash injection for the reliability tests only: names the step at which submit (or, for
#: ``cell-before-first-checkpoint``, a cell's trainer) dies as a SIGKILL would (tests/test_submit_crash.py,
#: tests/e2e/test_crash_safety.py). Never set outside tests.
CRASH_ENV = "ASLHPC_TEST_CRASH_AT"
#: Preemption tests only: the cell ids (comma-separated) whose trainer, right after epoch 1's checkpoint,
#: waits up to :data:`HOLD_S` for the test's preemption signals, so they land mid-training however loaded
#: the machine is, never after the last epoch (tests/e2e/test_requeue.py). Never set outside tests.
HOLD_ENV = "ASLHPC_TEST_HOLD_AFTER_FIRST_CHECKPOINT"
HOLD_S = 300.0
