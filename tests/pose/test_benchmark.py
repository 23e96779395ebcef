"""The pose benchmark's record of the BLAS kernels its figures depend on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info

from napari_behaviorvlm.pose.benchmark import blas_kernel, format_table


def _numpy_openblas() -> bool:
    """numpy (loaded with the benchmark module) runs on OpenBLAS."""
    return any(i.get("internal_api") == "openblas" and "numpy" in i.get("filepath", "")
               for i in threadpool_info())


def test_the_table_names_the_blas_kernels_of_the_run():
    result = {"config": {"cameras": 6, "frames": 10, "mice": 1, "seed": 0,
                         "difficulty": "default", "backend": "local", "seed_frames": [1, 5, 8],
                         "blas": blas_kernel()},
              "variants": {}}
    header = format_table(result).splitlines()[0]
    assert header.endswith(f"BLAS {result['config']['blas']}")


@pytest.mark.skipif(not _numpy_openblas(), reason="numpy does not run on OpenBLAS here")
def test_the_kernel_chosen_by_openblas_coretype_is_the_one_recorded():
    code = "from napari_behaviorvlm.pose.benchmark import blas_kernel; print(blas_kernel())"
    env = os.environ | {"OPENBLAS_CORETYPE": "Haswell"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    numpy_part = next(p for p in out.strip().split("; ") if p.startswith("numpy "))
    assert numpy_part.startswith("numpy openblas ") and numpy_part.endswith(" Haswell")
