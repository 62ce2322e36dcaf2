"""The project's modules import each other without cycles (issue 24): every `import` is read, at any depth, so a
cycle cannot hide in a function body. Imports of the project's own modules sit at the top of a module unless a
comment says why not; the pure library never imports Ray."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tmtvis", "workflows", "experiments", "tuning")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _imports(path: Path, name: str, mods: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in mods:  # `import a.b.c` of a name inside a module: the module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycles():
    mods = _modules()
    # A package's __init__ re-exporting its modules is not a dependency of those modules on the package.
    graph = {m: {t for t in _imports(p, m, mods) if not m.startswith(t + ".")} for m, p in mods.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# An import of a project module inside a function body states its reason: one of these on the import's own line(s),
# on an import line above it in the same block of imports, or on the line just above that block, e.g.
#     # lazy: torch and Ray load when the command runs, not when the CLI builds its parser (`tmtvis --help`)
# (`# cycle:` is for an import that would close a cycle at module level; test_no_import_cycles allows none today.)
REASON_MARKERS = ("# lazy:", "# cycle:")


def _own_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in PACKAGES
    return isinstance(node, ast.Import) and any(a.name.split(".")[0] in PACKAGES for a in node.names)


def in_function_imports_without_reason(path: Path, root: Path = ROOT) -> list[str]:
    """`path:line: import` of each in-function import of a project module that no REASON_MARKERS comment explains."""
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    import_lines = {i for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                    for i in range(n.lineno, n.end_lineno + 1)}  # 1-based
    out, seen = [], set()
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if not _own_import(node) or node.lineno in seen:
                continue
            seen.add(node.lineno)
            first = node.lineno
            while first - 1 in import_lines:  # up to the first line of this block of imports
                first -= 1
            if not any(m in lines[i - 1] for i in range(max(first - 1, 1), node.end_lineno + 1) for m in REASON_MARKERS):
                out.append(f"{path.relative_to(root)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return out


def test_in_function_imports_of_project_modules_say_why():
    missing = [m for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))
               for m in in_function_imports_without_reason(path)]
    assert missing == [], "move these to the module's top, or say why not (# lazy: ...):\n" + "\n".join(missing)


def test_the_reason_check_reads_blocks(tmp_path):
    path = tmp_path / "example.py"
    text = ("def a():\n    from tmtvis import env\n\n\ndef b():\n    # lazy: heavy\n    import json\n"
            "    from tmtvis import env\n    from tmtvis import (\n        errors)\n\n\n"
            "def c():\n    from tmtvis import env  # cycle: example\n    x = 1\n    from tmtvis import errors\n")
    path.write_text(text)
    assert [m.split(":")[1] for m in in_function_imports_without_reason(path, tmp_path)] == ["2", "16"]


def test_the_library_never_imports_ray():
    """models, losses, eval, data (every module), checkpoint and taxonomy: no Ray, not even through another module."""
    code = ("import importlib, pkgutil, sys\n"
            "for pkg in ('tmtvis.models', 'tmtvis.losses', 'tmtvis.eval', 'tmtvis.data'):\n"
            "    p = importlib.import_module(pkg)\n"
            "    for m in pkgutil.walk_packages(p.__path__, pkg + '.'):\n"
            "        importlib.import_module(m.name)\n"
            "import tmtvis.checkpoint, tmtvis.taxonomy\n"
            "print('ray' in sys.modules, len([m for m in sys.modules if m.startswith('tmtvis.')]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    ray_loaded, n_modules = out.stdout.split()
    assert ray_loaded == "False" and int(n_modules) > 30
