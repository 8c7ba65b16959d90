"""The one adapter from a pydantic ``ValidationError`` to aslhpc's one-line messages.

pydantic reports ``('cells', 'g1-b32-r0', 'attempts', 0, 'job_id')``, ``int_type``, ``Input should be a
valid string``; aslhpc's readers say ``cells.g1-b32-r0.attempts[0].job_id is int 41, expected str``.
:func:`problem_lines` makes the second out of the first, one line per error, so every schema (manifest,
cell files, experiment file) reports in the same words; the caller adds the file and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

# pydantic's type errors -> the word a message uses for the expected type (readers of the manifest use
# Python's type names, readers of cell files JSON's; :func:`problem_lines` takes either table)
PY_TYPES = {"int_type": "int", "string_type": "str", "bool_type": "bool", "list_type": "list",
            "dict_type": "dict", "float_type": "float", "model_type": "dict", "dataclass_type": "dict",
            "scalar_type": "scalar", "int_from_float": "int", "none_required": "null"}
JSON_TYPES = {**PY_TYPES, "list_type": "a list", "dict_type": "an object", "model_type": "an object",
              "dataclass_type": "an object", "float_type": "num"}


def path_text(loc: Sequence[str | int], root: str = "the file") -> str:
    """``('cells', 'a', 'attempts', 0)`` -> ``cells.a.attempts[0]``; () -> ``root``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or root


def python_kind(value: Any) -> str:
    """``int 41``, ``str '41'``, ``list []``: how a manifest message shows a wrong value."""
    return f"{type(value).__name__} {value!r:.40}"


def json_kind(value: Any) -> str:
    """``null``, ``an object``, ``a list``, ``str "four"``: how a cell-file message shows a wrong value."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    try:
        shown = json.dumps(value)[:40]
    except (TypeError, ValueError):
        shown = repr(value)[:40]
    return f"{type(value).__name__} {shown}"


def _bound(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    words = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
             "less_than": ("<", "lt")}
    sign, key = words[err["type"]]
    return f"must be {sign} {ctx.get(key)}"


def problem_line(err: dict[str, Any], types: dict[str, str] = PY_TYPES,
                 kind: Callable[[Any], str] = python_kind, root: str = "the file") -> str:
    """One pydantic error as ``<where> <what is wrong>``."""
    where, kind_of, value = path_text(err["loc"], root), err["type"], err.get("input")
    if kind_of == "missing":
        return f"{where} is missing"
    if kind_of in types:
        return f"{where} is {kind(value)}, expected {types[kind_of]}"
    if kind_of in ("literal_error", "enum"):
        expected = (err.get("ctx") or {}).get("expected", "")
        return f"{where} is {value!r:.40}, expected one of {expected.replace(chr(39), '')}"
    if kind_of in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return f"{where} is {value!r:.40}, {_bound(err)}"
    if kind_of == "string_pattern_mismatch":
        return f"{where} is {value!r:.40}, not a safe name (letters, digits, '.', '_' or '-')"
    if kind_of == "finite_number":
        return f"{where} is {value!r:.40}, must be a finite number"
    if kind_of in ("string_too_long", "too_long"):
        return f"{where} is longer than {(err.get('ctx') or {}).get('max_length')} characters"
    if kind_of in ("string_too_short", "too_short"):
        return f"{where} is empty"
    message = str(err.get("msg", "is not valid")).removeprefix("Value error, ")
    return f"{where} {message}"


def problem_lines(exc: ValidationError, types: dict[str, str] = PY_TYPES,
                  kind: Callable[[Any], str] = python_kind, root: str = "the file") -> list[str]:
    """Every error of ``exc`` as one line (:func:`problem_line`); a union's duplicate lines once."""
    seen: dict[str, None] = {}
    for err in exc.errors(include_url=False):
        seen.setdefault(problem_line(err, types, kind, root))
    return list(seen)
