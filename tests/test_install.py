"""`make install`: every checkout runs its own code, on the one cached environment keyed by requirements.lock."""
from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


def installed_cache() -> Path:
    base = ROOT / ".venv" / ".base"
    if not base.is_file():
        pytest.skip("this checkout was not installed by `make install`")
    return Path(base.read_text().strip())


def clone(tmp_path: Path, name: str) -> Path:
    """A clone of this repository with the working tree's install files (so uncommitted changes are tested)."""
    dest = tmp_path / name
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    for f in ("Makefile", "requirements.lock", "pyproject.toml"):
        shutil.copy(ROOT / f, dest / f)
    return dest


def run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout.strip()


def test_a_second_clone_does_not_repoint_the_first(tmp_path):
    cached = installed_cache()
    a, b = clone(tmp_path, "a"), clone(tmp_path, "b")
    for c in (a, b):  # b's install comes after a's, as a second checkout's would
        run(["make", "install", f"CACHE_DIR={cached.parent}"], c)
    assert not (cached / "bin" / "tmtvis").exists()  # the shared environment holds no checkout's code
    for c in (a, b):
        assert run([str(c / ".venv/bin/python"), "-c", "import tmtvis; print(tmtvis.__file__)"], tmp_path) == \
            str(c / "tmtvis" / "__init__.py")
        script = (c / ".venv/bin/tmtvis").read_text().splitlines()[0]
        assert script == f"#!{c}/.venv/bin/python", script
        assert (c / ".venv/.base").read_text().strip() == str(cached)
        # the cached environment's own tools run from the checkout's venv, with the checkout's code beside them
        assert run([str(c / ".venv/bin/ray"), "--version"], tmp_path).startswith("ray")


def test_the_lock_holds_every_pin_and_keys_the_cache():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
            for line in (ROOT / "requirements.lock").read_text().splitlines() if line and not line.startswith("#")}
    for pin in pins:
        name, version = pin.split("==")
        name = name.split("[")[0].lower().replace("_", "-")
        assert lock.get(name) == version, f"{pin}: the lock says {lock.get(name)} (run `make lock`)"
    cached = installed_cache()
    digest = subprocess.run(["sha256sum", str(ROOT / "requirements.lock")], capture_output=True, text=True,
                            check=True).stdout[:16]
    assert cached.name == f"venv-{digest}"
