"""Free text read from files other users can write, made safe to print: one line, no control characters.

A result's ``host``, a cell id, an error line: anything read from a shared results directory can hold
terminal escapes (``ESC[2J`` clears the screen) or be 100 MB long. Readers clean every such field once,
at read time (:func:`clean_text`), and printers may call it again on anything else they show.
"""

from __future__ import annotations

import re
from typing import Any

#: the longest free-text field a reader keeps (an error line, a host, an id)
TEXT_LIMIT = 200
#: the longest of any other string kept from a cell file (paths, versions, digests)
LONG_LIMIT = 4096
# ANSI escape sequences (CSI ... final byte, OSC ... BEL/ST), then any other C0/C1 control character,
# and the Unicode bidi overrides that reorder what a terminal shows
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")


def clean_text(value: object, limit: int = TEXT_LIMIT) -> str:
    """``value`` as one printable line: escapes removed, other control characters (newlines too) a space,
    runs of spaces one, at most ``limit`` characters (an ellipsis marks a cut)."""
    text = value if isinstance(value, str) else str(value)
    text = text[: limit * 8]  # bounded work on a 100 MB field
    text = _CONTROL.sub(" ", _ESCAPES.sub("", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean_line(value: str, limit: int = LONG_LIMIT) -> str:
    """One line of a log as it may be printed: escapes removed, tabs and other control characters a space,
    its indentation kept (a traceback stays readable), at most ``limit`` characters."""
    text = _CONTROL.sub(" ", _ESCAPES.sub("", value[: limit * 8])).rstrip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean_tree(value: Any, limit: int = LONG_LIMIT) -> Any:
    """A parsed JSON value with every string (keys too) cleaned by :func:`clean_text` at ``limit``."""
    if isinstance(value, str):
        return value if value.isprintable() and len(value) <= limit else clean_text(value, limit)
    if isinstance(value, dict):
        return {clean_tree(k, limit): clean_tree(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_tree(v, limit) for v in value]
    return value
