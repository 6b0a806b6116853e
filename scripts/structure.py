"""Size limits for `make lint`: no module over 400 lines and no function over 80 lines under the given tree.

pylint has a module-length check (too-many-lines) but none for a function's length, and ruff counts
statements, not lines; this is the dozen lines that check both the same way.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def main(root: Path) -> int:
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if (n := source.count("\n")) > MAX_MODULE_LINES:
            found.append(f"{path}: {n} lines (a module has at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(
                        f"{path}:{node.lineno}: {node.name} is {length} lines (at most {MAX_FUNCTION_LINES})"
                    )
    print(
        "\n".join(found) or f"{root}: modules <= {MAX_MODULE_LINES} lines, functions <= {MAX_FUNCTION_LINES}"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "src")))
