"""The code's shape, measured (issue 24): the largest functions, the public functions with the most parameters,
and the imports inside function bodies. `python benchmarks/code_shape.py [--top N]`; compare two checkouts by
running it in each. Import cycles, and a reason comment (`# lazy: ...`) on each in-function import of a project
module, are checked by tests/test_imports.py."""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tmtvis", "workflows", "tuning", "experiments")
REASON_MARKERS = ("# lazy:", "# cycle:")


def functions(root: Path = ROOT) -> list[tuple[str, ast.FunctionDef, list[str]]]:
    """(module path:qualified name, node, the module's lines) of every function and method."""
    out = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            text = path.read_text()
            tree = ast.parse(text)
            rel = path.relative_to(root)
            lines = text.splitlines()

            def walk(node, prefix=""):
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        out.append((f"{rel}:{prefix}{child.name}", child, lines))
                        walk(child, f"{prefix}{child.name}.")
                    elif isinstance(child, ast.ClassDef):
                        walk(child, f"{prefix}{child.name}.")
            walk(tree)
    return out


def n_params(fn: ast.FunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    return len([n for n in names if n not in ("self", "cls")]) + bool(a.vararg) + bool(a.kwarg)


def _own_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in PACKAGES
    return isinstance(node, ast.Import) and any(a.name.split(".")[0] in PACKAGES for a in node.names)


# An import of a project module inside a function body states its reason: one of these on the import's own line(s),
# on an import line above it in the same block of imports, or on the line just above that block, e.g.
#     # lazy: torch and Ray load when the command runs, not when the CLI builds its parser (`tmtvis --help`)
# (`# cycle:` is for an import that would close a cycle at module level; tests/test_imports.py allows none today.)
def _has_reason(node: ast.AST, fn: ast.AST, lines: list[str]) -> bool:
    """A REASON_MARKERS comment on the import's lines, an import line above it in its block, or the line above."""
    imports = {i for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))
               for i in range(n.lineno, n.end_lineno + 1)}
    first = node.lineno
    while first - 1 in imports:
        first -= 1
    return any(m in lines[i - 1] for i in range(max(first - 1, 1), node.end_lineno + 1) for m in REASON_MARKERS)


def imports_without_reason(path: Path, root: Path = ROOT) -> list[str]:
    """`path:line: import` of each in-function import of a project module that no REASON_MARKERS comment explains
    (tests/test_imports.py requires none)."""
    lines = path.read_text().splitlines()
    out, seen = [], set()
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if _own_import(node) and node.lineno not in seen:
                seen.add(node.lineno)
                if not _has_reason(node, fn, lines):
                    out.append(f"{path.relative_to(root)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--top", type=int, default=5)
    args = ap.parse_args()
    fns = functions()
    size = sorted(((fn.end_lineno - fn.lineno + 1, name) for name, fn, _ in fns), reverse=True)
    public = [(n_params(fn), name) for name, fn, _ in fns if not fn.name.startswith("_")]
    print(f"{len(fns)} functions; the largest (lines):")
    for lines, name in size[:args.top]:
        print(f"  {lines:4d}  {name}")
    print(f"public functions: {len(public)}, parameters mean {sum(p for p, _ in public) / len(public):.2f}; "
          f"the most:")
    for p, name in sorted(public, reverse=True)[:args.top]:
        print(f"  {p:4d}  {name}")
    own = {}  # (module, line) -> (function, has a reason): a nested function's import counted once
    for name, fn, lines in fns:
        for node in ast.walk(fn):
            if _own_import(node):
                own.setdefault((name.split(":")[0], node.lineno), (name, _has_reason(node, fn, lines)))
    explained = sum(reason for _, reason in own.values())
    print(f"imports of the project's own modules inside function bodies: {len(own)} (in "
          f"{len({f for f, _ in own.values()})} functions); with a reason comment (# lazy: / # cycle:): {explained}")
    for (module, line), (name, reason) in sorted(own.items()):
        if not reason:
            print(f"  no reason: {module}:{line} ({name.split(':')[1]})")


if __name__ == "__main__":
    main()
