"""Reading a params file and ``--set`` overrides: strict YAML, every mistake one sentence.

YAML's last-key-wins would let a second ``train:`` silently replace the first, so duplicate keys
are errors; a folder, non-UTF-8 bytes, an unhashable key or a ``--set`` value that is not YAML
each say what is wrong instead of raising from the parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the file and the fields."""


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=0.001", "model.prior_levels=[s4]"]`` → ``{"train.lr": 0.001, …}``: the one
    parser of ``--set`` for the CLI, the pipeline CLI and the benchmarks (values read as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not section.key=value")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            reason = str(err).splitlines()[0]
            raise ConfigError(
                f"--set {item!r}: the value is not YAML ({reason}); quote a string, close a list"
            ) from None
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's last-key-wins would let a second ``train:`` silently replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (lines {seen[key]} and {line})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any] | None) -> None:
    """Set dotted keys (``train.steps``) in a raw params mapping, in place."""
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(
                    f"--set {dotted}: {where} is a value ({node!r}), not a section with keys"
                )
        node[leaf] = value


def read_mapping(path: Path) -> Any:
    """The YAML document of a params file (None when empty), or one ConfigError."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such params file (run from the repo root or pass --params)")
    if not path.is_file():
        raise ConfigError(f"{path}: a folder, not a params file")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    except TypeError as err:  # an unhashable key: ``? [a, b]``
        raise ConfigError(f"{path}: a key that is not a plain name ({err})") from None
    return raw
