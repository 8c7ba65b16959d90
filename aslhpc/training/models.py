"""The model registry: one place that turns ``TrainConfig.model`` into an ``nn.Module``.

A spec is one of

* ``ladnet``: the 2020 study's CNN (:class:`aslhpc.training.model.LadNet`), unchanged;
* ``torchvision:NAME``: any ``torchvision.models`` builder, built with ``num_classes`` from the data
  and ``weights=None`` (nothing is ever downloaded);
* ``MODULE:CALLABLE`` or ``path/to/file.py:CALLABLE``: the user's factory, called as
  ``CALLABLE(num_classes=K, image_size=S)`` and returning an ``nn.Module``. A factory's module may
  set ``min_image_size`` on the module it returns (or on the callable) to declare its floor.

Submit checks a spec once on the login node (:func:`check_model_spec`: built on the meta device, one
forward at the cell's image size, no memory and no GPU needed), so a typo is one ``error:`` line before
any job is queued. :func:`model_info` is what result.json and the report say about the network.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aslhpc.errors import ConfigError
from aslhpc.training.config import MIN_INPUT_SIZE

LADNET = "ladnet"
SPEC_ATTR = "aslhpc_model_spec"  # set on each module build_model returns
TORCHVISION = "torchvision:"
SPEC_FORMS = ("ladnet, torchvision:NAME (e.g. torchvision:resnet18), MODULE:CALLABLE or "
              "path/to/file.py:CALLABLE")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec: ``kind`` ladnet / torchvision / module / file; ``target`` the name, module or path."""

    spec: str
    kind: str
    target: str = ""
    attr: str = ""


def parse_spec(spec: str) -> ModelSpec:
    """The spec's parts, or a one-line ConfigError saying which forms exist (nothing is imported)."""
    text = spec.strip() if isinstance(spec, str) else ""
    if text.lower() == LADNET:
        return ModelSpec(LADNET, "ladnet")
    if text.startswith(TORCHVISION) and text[len(TORCHVISION):]:
        return ModelSpec(text, "torchvision", text[len(TORCHVISION):])
    target, sep, attr = text.rpartition(":")
    if sep and target and attr.isidentifier():
        kind = "file" if target.endswith(".py") or os.sep in target else "module"
        return ModelSpec(text, kind, target, attr)
    raise ConfigError(f"model={spec!r} is not a model spec; use {SPEC_FORMS}")


def min_image_size(spec: str, module: nn.Module | None = None) -> int:
    """The smallest input side the model takes: LadNet's 30 px, else what the factory declares (else 1)."""
    parsed = parse_spec(spec)
    if parsed.kind == "ladnet":
        return MIN_INPUT_SIZE
    declared = getattr(module, "min_image_size", None) if module is not None else None
    return int(declared) if isinstance(declared, int) and declared > 0 else 1


def _torchvision_builder(name: str) -> Any:
    try:
        import torchvision.models as tvm
    except ImportError as exc:
        raise ConfigError(f"model torchvision:{name} needs torchvision, which does not import here "
                          f"({exc}); pip install torchvision") from exc
    if name not in tvm.list_models():
        close = difflib.get_close_matches(name.lower(), tvm.list_models(), n=4)
        hint = f" (close: {', '.join(close)})" if close else " (python -c 'import torchvision; " \
            "print(torchvision.models.list_models())' lists them)"
        raise ConfigError(f"torchvision has no model {name!r}{hint}; use torchvision:NAME with one of its "
                          "builders")
    return tvm.get_model_builder(name)


def _file_factory(path_text: str, attr: str) -> Any:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ConfigError(f"model factory file {path} does not exist; pass path/to/file.py:CALLABLE "
                          "(relative to where the command runs, or absolute)")
    name = f"aslhpc_user_model_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ConfigError(f"model factory file {path} cannot be imported as Python; pass a .py file")
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's file failing is the user's one-line error
            raise ConfigError(f"importing model factory file {path} failed: {type(exc).__name__}: "
                              f"{_first_line(exc)}; fix that file") from exc
        sys.modules[name] = module
    if not hasattr(module, attr):
        raise ConfigError(f"model factory file {path} defines no {attr!r}; name a function in it "
                          f"({path_text}:CALLABLE)")
    return getattr(module, attr)


def _module_factory(module_name: str, attr: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"model module {module_name!r} was not found ({exc}); put it on PYTHONPATH, "
                          "or use path/to/file.py:CALLABLE") from exc
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"importing model module {module_name!r} failed: {type(exc).__name__}: "
                          f"{_first_line(exc)}; fix that module") from exc
    if not hasattr(module, attr):
        raise ConfigError(f"model module {module_name!r} has no {attr!r}; name a callable in it")
    return getattr(module, attr)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def build_model(spec: str, num_classes: int, image_size: int, *, dropout: float = 0.2) -> nn.Module:
    """The network ``spec`` names, for ``num_classes`` outputs at ``image_size`` px inputs.

    Built on the current default device (``with torch.device("meta")`` builds without memory). LadNet
    takes the cell's dropout; other models are built as their builder or factory defines them.
    """
    parsed = parse_spec(spec)
    model = _build(parsed, num_classes, image_size, dropout)
    # The spec travels with the module, so best_model.pt names the network whoever saves it
    # (a factory file by its absolute path: predict runs from elsewhere).
    resolved = parsed.spec
    if parsed.kind == "file":
        resolved = f"{Path(parsed.target).expanduser().resolve()}:{parsed.attr}"
    model.__dict__[SPEC_ATTR] = resolved
    return model


def spec_of(model: nn.Module) -> str:
    """The spec :func:`build_model` built ``model`` from; ``ladnet`` for a module built directly."""
    return str(model.__dict__.get(SPEC_ATTR, LADNET))


def _build(parsed: ModelSpec, num_classes: int, image_size: int, dropout: float) -> nn.Module:
    if num_classes < 2:
        raise ConfigError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
    if parsed.kind == "ladnet":
        from aslhpc.training.model import LadNet

        if image_size < MIN_INPUT_SIZE:
            raise ConfigError(f"image_size={image_size} is too small for model ladnet; use at least "
                              f"{MIN_INPUT_SIZE}")
        return LadNet(num_classes, dropout, image_size)
    if parsed.kind == "torchvision":
        builder = _torchvision_builder(parsed.target)
        return _checked(parsed, lambda: builder(weights=None, num_classes=num_classes))
    factory = (_file_factory if parsed.kind == "file" else _module_factory)(parsed.target, parsed.attr)
    if not callable(factory):
        raise ConfigError(f"model {parsed.spec}: {parsed.attr!r} is not callable; name a function or class")
    return _checked(parsed, lambda: factory(num_classes=num_classes, image_size=image_size))


def _checked(parsed: ModelSpec, make: Any) -> nn.Module:
    """Call a builder; its failure or a non-Module result is one line naming the spec."""
    try:
        model = make()
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of foreign code is the same user error
        raise ConfigError(f"building model {parsed.spec} failed: {type(exc).__name__}: {_first_line(exc)}; "
                          "check its arguments (num_classes=K, image_size=S)") from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {parsed.spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _probe(model: nn.Module, num_classes: int, image_size: int) -> int:
    """FLOPs of one image's forward pass, on the meta device; checks the output shape."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    x = torch.empty(1, 3, image_size, image_size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(x)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"its output for one {image_size} px image is {shape}, expected (1, {num_classes})")
    return int(counter.get_total_flops())


def model_info(spec: str, num_classes: int, image_size: int, *, dropout: float = 0.2) -> dict[str, Any]:
    """``{spec, params, flops_per_image, min_image_size}``: measured on a meta-device copy (no memory).

    ``flops_per_image`` counts one forward pass (torch's FlopCounterMode: 2 per multiply-add of the
    convolutions and matrix products); training costs about three times that.
    """
    with torch.device("meta"):
        model = build_model(spec, num_classes, image_size, dropout=dropout)
    floor = min_image_size(spec, model)
    if image_size < floor:
        raise ConfigError(f"image_size={image_size} is below model {spec}'s floor of {floor} px")
    try:
        flops = _probe(model, num_classes, image_size)
    except ConfigError as exc:
        raise ConfigError(f"model {spec} at {image_size} px: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a forward that fails at this size is the user's error
        raise ConfigError(f"model {spec} fails on a {image_size} px image: {type(exc).__name__}: "
                          f"{_first_line(exc)}; use a larger image_size or another model") from exc
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"spec": parse_spec(spec).spec, "params": int(params), "flops_per_image": flops,
            "min_image_size": floor}


def check_model_spec(spec: str, image_size: int, num_classes: int = 29) -> str | None:
    """What is wrong with ``spec`` at ``image_size`` (one line), or None: submit's check on the login node.

    Imports the factory, builds the model on the meta device and runs one forward pass there.
    """
    try:
        model_info(spec, num_classes, image_size)
    except ConfigError as exc:
        return str(exc)
    return None


def describe(info: dict[str, Any]) -> str:
    """``torchvision:resnet18: 11,178,051 parameters, 0.074 GFLOPs per image``: what submit prints."""
    gflops = info["flops_per_image"] / 1e9
    return f"{info['spec']}: {info['params']:,} parameters, {gflops:.3g} GFLOPs per image"


def trusted_source(spec: str) -> str | None:
    """Why rebuilding ``spec`` from a model file would run code another user could have planted, or None.

    ladnet and torchvision builders run no user code. A factory file (or a module found outside the
    installed packages) must be owned by this user or root and not writable by others: a best_model.pt
    in a shared results directory names the code that rebuilds it, and importing is running.
    """
    parsed = parse_spec(spec)
    if parsed.kind in ("ladnet", "torchvision"):
        return None
    if parsed.kind == "file":
        path = Path(parsed.target).expanduser()
    else:
        try:
            found = importlib.util.find_spec(parsed.target)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.origin or not os.path.isfile(found.origin):
            return f"model module {parsed.target!r} is not importable here"
        path = Path(found.origin)
    try:
        st = path.stat()
    except OSError:
        return f"model factory file {path} does not exist"
    if st.st_uid not in (os.getuid(), 0) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"model factory {path} is owned by another user or writable by others; importing it would "
                "run their code")
    return None
