"""Builds the one C extension (tmtvis.data._rle_scan); everything else is in pyproject.toml."""
from setuptools import Extension, setup

# optional: without a compiler tmtvis still installs and checks RLE with numpy (slower, same results)
setup(ext_modules=[Extension("tmtvis.data._rle_scan", ["tmtvis/data/_rle_scan.c"], optional=True,
                             extra_compile_args=["-O3"])])
