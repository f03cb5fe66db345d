"""ops/blas.py: which OpenBLAS kernels are loaded, with how many threads, and that numpy's copy is left alone."""
import json
import os
import subprocess
import sys

import pytest

from ops import blas

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVX512 = {"fpu", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}


def test_the_cpu_flags_are_read_from_proc_cpuinfo_s_format(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512f\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    assert blas.cpu_flags(str(cpuinfo)) == {"fpu", "sse", "avx2", "avx512f"}
    assert blas.cpu_flags(str(tmp_path / "absent")) == set()


@pytest.mark.parametrize("flags,environment,expected", [
    (AVX512, {}, "SkylakeX"),
    (AVX512 - {"avx512bw"}, {}, None),  # an early AVX-512 (Knights Landing) lacks what SkylakeX's kernels use
    ({"fpu", "avx", "avx2", "fma"}, {}, None),
    (AVX512, {"OPENBLAS_CORETYPE": "Haswell"}, "Haswell"),
    (set(), {"OPENBLAS_CORETYPE": "Zen"}, "Zen"),
])
def test_the_avx512_kernels_are_chosen_on_an_avx512_cpu_unless_the_user_chooses(flags, environment, expected):
    assert blas.core_type(flags, environment) == expected


def loaded_in_a_fresh_process(environment):
    """What a new process reports after loading ops/blas.py's OpenBLAS: OpenBLAS reads OPENBLAS_CORETYPE once,
    when it loads."""
    code = ("import json, os, numpy, threadpoolctl; from ops import blas\n"
            "def numpy_s(): return [(i['architecture'], i['num_threads']) for i in threadpoolctl.threadpool_info() "
            "if i['filepath'].startswith(os.path.dirname(numpy.__file__))]\n"
            "numpy_before = numpy_s(); blas.library()\n"
            "print(json.dumps({'core': blas.core_name(), 'threads': blas.library().scipy_openblas_get_num_threads(),"
            " 'environment': os.environ.get('OPENBLAS_CORETYPE'), 'numpy_before': numpy_before,"
            " 'numpy_after': numpy_s()}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_library_runs_one_thread_a_call_on_the_kernels_chosen_and_leaves_numpy_and_the_environment():
    environment = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    loaded = loaded_in_a_fresh_process(environment)
    assert loaded["threads"] == 1
    assert loaded["environment"] is None
    assert loaded["numpy_after"] == loaded["numpy_before"] != []
    if blas.core_type(blas.cpu_flags(), {}) == "SkylakeX":
        assert loaded["core"] == "SkylakeX"


def test_the_user_s_core_type_is_kept():
    loaded = loaded_in_a_fresh_process(dict(os.environ, OPENBLAS_CORETYPE="Haswell"))
    assert loaded["core"] == "Haswell" and loaded["environment"] == "Haswell"


def test_the_sgemm_address_is_a_callable_matrix_product():
    import ctypes

    import numpy as np
    integer, real, pointer = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    sgemm = ctypes.CFUNCTYPE(None, *[integer] * 6, real, pointer, integer, pointer, integer, real, pointer,
                             integer)(blas.sgemm_address())
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 5), dtype=np.float32), rng.standard_normal((5, 4), dtype=np.float32)
    c = np.ones((3, 4), np.float32)
    sgemm(101, 111, 111, 3, 4, 5, 2.0, a.ctypes.data, 5, b.ctypes.data, 4, 1.0, c.ctypes.data, 4)
    np.testing.assert_allclose(c, 2 * a @ b + 1, rtol=1e-5)
