"""YAML files that remember where each key is, so a config error names ``file:line: field``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from llmdock.errors import ConfigError


class YamlDocument:
    """A parsed YAML file that remembers the line of every key, so errors can name it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror}", where=str(path)) from None
        try:
            self.node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else 0
            raise ConfigError(f"invalid YAML: {exc.problem}", where=f"{path}:{line}") from None
        if self.data is None:
            self.data = {}
        if not isinstance(self.data, dict):
            raise ConfigError("the top level must be a mapping of settings", where=f"{path}:1")

    def line_of(self, loc: tuple[str | int, ...]) -> int | None:
        """Line (1-based) of the deepest key of ``loc`` present in the file."""
        node: yaml.Node | None = self.node
        line = None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == str(part):
                        line = key.start_mark.line + 1
                        node = value
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1 if node is not None else line
            else:
                return line
        return line


def where_in(loc: tuple[str | int, ...], doc: YamlDocument | None, env: dict[str, str]) -> str:
    field = ".".join(str(p) for p in loc)
    env_name = "LLMDOCK_" + "__".join(str(p) for p in loc).upper()
    if env_name in env or (loc and f"LLMDOCK_{str(loc[0]).upper()}" in env):
        return f"env {env_name if env_name in env else 'LLMDOCK_' + str(loc[0]).upper()}: {field}"
    if doc is not None:
        line = doc.line_of(loc)
        if line is not None:
            return f"{doc.path}:{line}: {field}"
    return field


def config_error_from_pydantic(
    exc: PydanticValidationError, doc: YamlDocument | None, prefix: tuple[str | int, ...] = ()
) -> ConfigError:
    first = exc.errors()[0]
    loc = prefix + tuple(first["loc"])
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ConfigError(first["msg"] + more, where=where_in(loc, doc, dict(os.environ)))


def load_yaml_file(path: Path) -> tuple[dict[str, Any], Callable[[tuple[str | int, ...]], str]]:
    """Another YAML file (a guard policy file): its data, and where a field is (``file:line: field``)."""
    doc = YamlDocument(path)
    return doc.data, lambda loc: where_in(loc, doc, {})
