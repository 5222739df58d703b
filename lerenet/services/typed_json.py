"""Typed values as JSON, rebuilt only as the project's own types: results that cross a process
or a bucket as data, never as code.

Prefect persists every task and flow result (to S3 on the stack) and reads it back on a cache
hit, a retry's check or a deployment's result. Pickled, a result runs whatever its bytes say
when it is read, so anyone who can write the results bucket would run code in the next flow
run. Here a value is plain JSON, with a tag for each kind JSON lacks: a dataclass or pydantic
model (named by module and class, and imported only from the allowed packages), a tuple, set
or frozenset, a path, a numeric numpy array, an exception (rebuilt as its own class when that
is a builtin or an allowed one, else as a RuntimeError that names it). Any other type is
refused when written, so a result type that cannot travel fails in tests, not in a
production flow's read.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
import importlib
import json
import math
import re
from pathlib import Path, PurePath
from typing import Any

import numpy as np

TAGS = ("__tuple__", "__set__", "__frozenset__", "__path__", "__array__", "__pairs__", "__float__")
CLASS_TAGS = ("__dataclass__", "__model__", "__exception__")
_ALL_TAGS = frozenset((*TAGS, *CLASS_TAGS))
_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_ARRAY_KINDS = "biuf"  # bool, int, uint, float: never object arrays


class UntrustedValue(ValueError):
    """A stored value names a type outside the allowed packages, or is malformed."""


def dumps(value: Any) -> bytes:
    """``value`` as UTF-8 JSON (TypeError, naming where, for a type that cannot travel)."""
    return json.dumps(_encode(value, "$"), separators=(",", ":")).encode()


def loads(blob: bytes | str, packages: tuple[str, ...] = ("lerenet",)) -> Any:
    """The value ``dumps`` wrote; classes are imported only from ``packages`` (and their
    submodules), so a forged record can name no other code."""
    try:
        return _decode(json.loads(blob), packages)
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise UntrustedValue(f"a stored value of the wrong shape: {err!r}") from None


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode(value: Any, where: str) -> Any:
    if value is None or type(value) in (bool, int, str):  # an enum or other subclass: below
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return _encode(value.item(), where)
    if isinstance(value, BaseException):
        return {"__exception__": _class_path(type(value)), "message": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _encode(getattr(value, f.name), f"{where}.{f.name}")
            for f in dataclasses.fields(value)
        }
        return {"__dataclass__": _class_path(type(value)), "fields": fields}
    if hasattr(value, "model_dump") and hasattr(type(value), "model_validate"):
        return {"__model__": _class_path(type(value)), "data": value.model_dump(mode="json")}
    if isinstance(value, PurePath):
        return {"__path__": str(value)}
    if isinstance(value, np.ndarray):
        return _encode_array(value, where)
    if type(value) is list:
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if type(value) in (tuple, set, frozenset):  # a named tuple would lose its names: refused
        items = value if type(value) is tuple else sorted(value, key=repr)
        tag = {tuple: "__tuple__", set: "__set__", frozenset: "__frozenset__"}[type(value)]
        return {tag: [_encode(v, f"{where}[{i}]") for i, v in enumerate(items)]}
    if isinstance(value, dict):
        return _encode_dict(value, where)
    raise TypeError(
        f"{where}: a {type(value).__module__}.{type(value).__qualname__} cannot be stored as "
        "a typed JSON result; return a dataclass of plain fields instead"
    )


def _encode_dict(value: dict, where: str) -> Any:
    plain = all(isinstance(k, str) and k not in _ALL_TAGS for k in value)
    if plain:
        return {k: _encode(v, f"{where}.{k}") for k, v in value.items()}
    return {
        "__pairs__": [[_encode(k, where), _encode(v, f"{where}[{k!r}]")] for k, v in value.items()]
    }


def _encode_array(value: np.ndarray, where: str) -> dict:
    if value.dtype.kind not in _ARRAY_KINDS:
        raise TypeError(f"{where}: a numpy array of dtype {value.dtype} cannot be stored")
    data = np.ascontiguousarray(value)
    return {
        "__array__": {
            "dtype": data.dtype.str,
            "shape": list(data.shape),
            "data": base64.b64encode(data.tobytes()).decode(),
        }
    }


def _decode(value: Any, packages: tuple[str, ...]) -> Any:
    if isinstance(value, list):
        return [_decode(v, packages) for v in value]
    if not isinstance(value, dict):
        return value
    tag = next(iter(value)) if value else None
    if tag in CLASS_TAGS:
        return _decode_class(tag, value, packages)
    if len(value) != 1 or tag not in TAGS:
        return {k: _decode(v, packages) for k, v in value.items()}
    body = value[tag]
    if tag == "__float__":
        return float(body)
    if tag == "__path__":
        return Path(body)
    if tag == "__array__":
        return _decode_array(body)
    if tag == "__pairs__":
        return {_hashable(_decode(k, packages)): _decode(v, packages) for k, v in body}
    items = [_hashable(_decode(v, packages)) for v in body]
    return {"__tuple__": tuple, "__set__": set, "__frozenset__": frozenset}[tag](items)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _decode_array(body: dict) -> np.ndarray:
    dtype = np.dtype(body["dtype"])
    if dtype.kind not in _ARRAY_KINDS:
        raise UntrustedValue(f"a stored array of dtype {dtype} is refused")
    data = base64.b64decode(body["data"])
    shape = tuple(int(n) for n in body["shape"])
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise UntrustedValue(f"a stored array's {len(data)} bytes do not make shape {shape}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _decode_class(tag: str, value: dict, packages: tuple[str, ...]) -> Any:
    path = value[tag]
    if tag == "__exception__":
        return _decode_exception(path, str(value.get("message", "")), packages)
    cls = resolve_class(path, packages)
    if tag == "__model__":
        if not hasattr(cls, "model_validate"):
            raise UntrustedValue(f"{path} is not a pydantic model")
        return cls.model_validate(value["data"])
    if not dataclasses.is_dataclass(cls):
        raise UntrustedValue(f"{path} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    stored = {k: _decode(v, packages) for k, v in value["fields"].items()}
    unknown = sorted(set(stored) - set(fields))
    if unknown:
        raise UntrustedValue(f"{path} has no field(s) {unknown}")
    obj = cls(**{k: v for k, v in stored.items() if fields[k].init})
    for k, v in stored.items():
        if not fields[k].init:
            object.__setattr__(obj, k, v)
    return obj


def _decode_exception(path: str, message: str, packages: tuple[str, ...]) -> BaseException:
    """Builtin and allowed exception classes come back as themselves (a retry condition tells
    them apart); any other (a botocore error, say) as a RuntimeError naming it."""
    module, _, name = path.partition(":")
    try:
        if module == "builtins":
            cls = getattr(builtins, name, None)
        else:
            cls = resolve_class(path, packages)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            return cls(message)
    except (UntrustedValue, TypeError):
        pass
    return RuntimeError(f"{module}.{name}: {message}")


def resolve_class(path: str, packages: tuple[str, ...]) -> type:
    """The class ``module:qualname`` names, imported only when the module lies in one of
    ``packages`` and the class was defined there (not merely imported into it)."""
    module, _, qualname = path.partition(":")
    if not (_NAME.match(module) and _NAME.match(qualname)):
        raise UntrustedValue(f"{path!r} is not a class path")
    if not _allowed(module, packages):
        raise UntrustedValue(f"{path}: only classes of {', '.join(packages)} are rebuilt")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type) or not _allowed(obj.__module__, packages):
        raise UntrustedValue(f"{path}: not a class defined in {', '.join(packages)}")
    return obj


def _allowed(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)
