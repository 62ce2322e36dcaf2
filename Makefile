# tmtvis: `make demo` runs the main job, `make test` runs the suite. Both install first.
SHELL := /bin/bash
PYTHON ?= python3
# The venv (6.6 GB) is cached outside the repo, keyed by a hash of the pinned dependencies,
# so fresh clones reuse it; on a fresh machine it is built from nothing.
CACHE_DIR ?= $(HOME)/.cache/tmtvis
PIN_HASH := $(shell $(PYTHON) -c "import tomllib,hashlib;d=tomllib.load(open('pyproject.toml','rb'))['project']['dependencies'];print(hashlib.sha256('\n'.join(d).encode()).hexdigest()[:16])")
CACHED_VENV := $(CACHE_DIR)/venv-$(PIN_HASH)
VENV := .venv
# Environment defaults (offline, local Ray) are applied by the entry points themselves: tmtvis/env.py.

.PHONY: install test test-soak test-fast demo clean

install:
	@if [ ! -f "$(CACHED_VENV)/.complete" ]; then \
	  echo "building venv $(CACHED_VENV) (first time on this machine, ~2 min)"; \
	  rm -rf "$(CACHED_VENV)" && mkdir -p "$(CACHE_DIR)" && \
	  $(PYTHON) -m venv "$(CACHED_VENV)" && \
	  "$(CACHED_VENV)/bin/pip" install -q --upgrade pip && \
	  "$(CACHED_VENV)/bin/python" -c "import tomllib;print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > "$(CACHE_DIR)/req-$(PIN_HASH).txt" && \
	  "$(CACHED_VENV)/bin/pip" install -q -r "$(CACHE_DIR)/req-$(PIN_HASH).txt" && \
	  touch "$(CACHED_VENV)/.complete"; \
	fi
	@[ "$$(readlink $(VENV))" = "$(CACHED_VENV)" ] || { rm -rf $(VENV) && ln -s "$(CACHED_VENV)" $(VENV); }
	@# The project itself is installed editable (no deps) from this checkout, unless it already is with this
	@# checkout's console script (an older install's `tmtvis` may point elsewhere).
	@$(VENV)/bin/python -P -c "import os,sys,tmtvis,importlib.metadata as m; sys.exit(os.path.dirname(os.path.dirname(tmtvis.__file__)) != os.getcwd() or m.entry_points(group='console_scripts')['tmtvis'].value != 'workflows.cli:main')" 2>/dev/null || \
	  $(VENV)/bin/pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1

# Everything but the soak tests (about 15 minutes here); CI (.ci/run) runs `test` and then `test-soak`.
test: install
	$(VENV)/bin/python -m pytest -q -m "not soak"

test-soak: install
	$(VENV)/bin/python -m pytest -q -m soak

# The inner loop: everything that needs no Ray instance and is not marked slow (about a minute).
test-fast: install
	$(VENV)/bin/python -m pytest -q -m "not integration and not slow"

demo: install
	$(VENV)/bin/tmtvis demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
