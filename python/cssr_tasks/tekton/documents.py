"""Tekton YAML as the executor reads it: strings and mappings that remember their line, and the
list of problems found before a run, each named `file:line`.

Strings and mappings from YAML keep the line they were written on (`Text.line`, `Map.line`),
so that a reference that does not resolve is reported as `file:line`, before anything runs.
Structural problems are collected into one `Problems` list and reported together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError


class Text(str):
    """A YAML string that remembers its line (1-based); a literal block (`|`) knows each of its lines."""

    line: int = 0
    literal: bool = False

    def line_at(self, offset: int) -> int:
        return self.line + (self.count("\n", 0, offset) if self.literal else 0)


class Map(dict[str, Any]):
    """A YAML mapping that remembers its line (1-based)."""

    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _text(loader: _Loader, node: yaml.ScalarNode) -> Text:
    text = Text(loader.construct_scalar(node))
    text.line = node.start_mark.line + 1
    if node.style in ("|", ">"):  # the content starts on the line after the indicator
        text.line += 1
        text.literal = node.style == "|"
    return text


def _map(loader: _Loader, node: yaml.MappingNode) -> Map:
    mapping = Map({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})
    mapping.line = node.start_mark.line + 1
    return mapping


_Loader.add_constructor("tag:yaml.org,2002:str", _text)
_Loader.add_constructor("tag:yaml.org,2002:map", _map)


def line_of(value: Any, default: int = 0) -> int:
    return int(getattr(value, "line", default) or default)


@dataclass
class Problems:
    """Every problem found before the run, as `file:line: message`."""

    items: list[str] = field(default_factory=list)

    def add(self, file: Path | str, line: int, message: str) -> None:
        where = f"{file}:{line}" if line else str(file)
        entry = f"{where}: {message}"
        if entry not in self.items:
            self.items.append(entry)

    def raise_if_any(self, what: str) -> None:
        if self.items:
            listing = "\n".join(f"  - {item}" for item in self.items)
            raise ConfigError(f"could not start {what}: {len(self.items)} problem(s) found before "
                              f"anything ran:\n{listing}")


def load_documents(path: Path) -> list[Map]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"could not read {path}: {e.strerror}; check the path") from e
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as e:
        raise ConfigError(f"could not parse {path}: {e}; fix the YAML") from e
    return [d for d in docs if isinstance(d, Map)]
