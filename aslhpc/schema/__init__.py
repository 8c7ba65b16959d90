"""One schema per file kind, and the safe reading every one of them goes through.

* :mod:`.text`     :func:`clean_text`: control characters out, length capped (every free-text field read
  from a cell file or the manifest, and whatever a printer shows);
* :mod:`.files`    :func:`read_text_file` / :func:`parse_json`: regular files only, size-capped, nesting
  depth-limited; a bad file is a :class:`FileProblem` with a one-line reason, never a hang or a traceback;
* :mod:`.adapter`  :func:`problem_lines`: a pydantic ``ValidationError`` as today's one-line messages;
* :mod:`.results`  the cell's files (result.json, epochs.jsonl, progress.json, error.json, config.json);
* :mod:`.docs`     ``python -m aslhpc.schema.docs`` writes docs/experiment-file.md and docs/result-files.md
  from the schemas (tests/test_schema_docs.py keeps them in step).

The experiment file's schema is :class:`aslhpc.training.config.TrainConfig` (``[train]``),
:class:`aslhpc.slurm.request.SiteOptions` + :class:`aslhpc.orchestration.experiment.ClusterRequest`
(``[cluster]``) and :mod:`aslhpc.orchestration.experiment` (``[experiment]``, ``[matrix]``); the
manifest's is the dataclasses of :mod:`aslhpc.orchestration.manifest`, validated by pydantic.
"""

from aslhpc.schema.files import (
    EPOCHS_CAP,
    JSON_CAP,
    MAX_DEPTH,
    FileProblem,
    parse_json,
    read_text_file,
    tail_text_file,
)
from aslhpc.schema.text import TEXT_LIMIT, clean_line, clean_text, clean_tree

__all__ = ["EPOCHS_CAP", "JSON_CAP", "MAX_DEPTH", "TEXT_LIMIT", "FileProblem", "clean_line", "clean_text",
           "clean_tree", "parse_json", "read_text_file", "tail_text_file"]
