"""The project's modules import each other without cycles (issue 24): every `import` is read, at any depth, so a
cycle cannot hide in a function body. Imports of the project's own modules sit at the top of a module unless a
comment says why not; the pure library never imports Ray."""
import ast
import importlib.util
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


def _code_shape():
    """benchmarks/code_shape.py: it owns the reason rule (REASON_MARKERS) and counts what it finds."""
    spec = importlib.util.spec_from_file_location("code_shape", ROOT / "benchmarks" / "code_shape.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_in_function_imports_of_project_modules_say_why():
    missing = [m for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))
               for m in _code_shape().imports_without_reason(path)]
    assert missing == [], "move these to the module's top, or say why not (# lazy: ...):\n" + "\n".join(missing)


def test_the_reason_check_reads_blocks(tmp_path):
    path = tmp_path / "example.py"
    text = ("def a():\n    from tmtvis import env\n\n\ndef b():\n    # lazy: heavy\n    import json\n"
            "    from tmtvis import env\n    from tmtvis import (\n        errors)\n\n\n"
            "def c():\n    from tmtvis import env  # cycle: example\n    x = 1\n    from tmtvis import errors\n")
    path.write_text(text)
    assert [m.split(":")[1] for m in _code_shape().imports_without_reason(path, tmp_path)] == ["2", "16"]


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
