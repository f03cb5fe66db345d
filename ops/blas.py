"""The tuned matrix product under the cpu kernels: single-precision GEMM of OpenBLAS, as the scipy-openblas32
wheel ships it (the OpenBLAS build that NumPy's and SciPy's own wheels are made from).

The kernels (ops/cpu_kernels.c) call it through a function pointer, one image per call on each of their
OpenMP threads, so this copy of OpenBLAS runs one thread per call: its own thread pool would compete with
theirs for the same cores. It is a private copy, loaded apart from numpy's, so neither setting reaches numpy.

OpenBLAS picks its kernels from the cpu it recognises, and falls back to its AVX2 ones (Haswell) on an AVX-512
cpu it does not know yet (0.3.34 on this project's AMD family 1Ah EPYC, for one). There its AVX-512 kernels
(SkylakeX) were 1.2-1.8x faster on the 1x1 convolutions of a DARTS network (README: The cpu kernels), so they
are chosen whenever the cpu has AVX-512; OPENBLAS_CORETYPE in the environment overrides the choice.
"""
import ctypes
import importlib.util
import os

AVX512_FLAGS = {"avx512f", "avx512bw", "avx512dq", "avx512vl"}  # what OpenBLAS's SkylakeX kernels use
AVX512_CORE = "SkylakeX"

_library = None


MISSING = "the OpenBLAS wheel scipy-openblas32, which the cpu kernels call, is not installed: run `make env`"


def installed():
    return importlib.util.find_spec("scipy_openblas32") is not None


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The instruction-set flags of the first cpu in /proc/cpuinfo; empty where there is no such file."""
    try:
        with open(cpuinfo) as lines:
            for line in lines:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def core_type(flags, environment):
    """The OPENBLAS_CORETYPE to load the library with: the user's, or SkylakeX on an AVX-512 cpu, else None
    (OpenBLAS's own choice)."""
    if "OPENBLAS_CORETYPE" in environment:
        return environment["OPENBLAS_CORETYPE"]
    return AVX512_CORE if AVX512_FLAGS <= flags else None


def library():
    """OpenBLAS, loaded once per process with its kernels chosen and one thread per call."""
    global _library  # one copy per process, like any shared library
    if _library is None:
        import scipy_openblas32  # here, not at the top: ops/cpu_kernels.available() tells first whether it is installed
        path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True))
        chosen = core_type(cpu_flags(), os.environ)
        told = os.environ.get("OPENBLAS_CORETYPE")
        if chosen is not None:
            os.environ["OPENBLAS_CORETYPE"] = chosen  # read once, while the library loads
        try:
            lib = ctypes.CDLL(path)
        finally:
            if told is None:
                os.environ.pop("OPENBLAS_CORETYPE", None)  # not for numpy's copy, nor for child processes
        lib.scipy_openblas_set_num_threads(1)
        lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
        _library = lib
    return _library


def core_name():
    """The kernels OpenBLAS runs, e.g. 'SkylakeX' or 'Haswell'."""
    return library().scipy_openblas_get_corename().decode()


def sgemm_address():
    """The address of cblas_sgemm (32-bit integers), for the C kernels."""
    return ctypes.cast(library().scipy_cblas_sgemm, ctypes.c_void_p).value
