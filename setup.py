"""Build fastnn's compiled module: csrc/*.c kernels under one Cython module.

OpenMP is probed at build time (-fopenmp with GCC/Clang, /openmp with MSVC,
Apple Clang with libomp); without it the kernels build and run single-threaded.
No -march flags: the AVX2 and AVX-512 kernels carry target attributes and are
chosen at run time (csrc/cpu.c's ISA registry), so one binary runs on every
x86-64 CPU (tools/check_isa.sh checks that with objdump).

Environment:
  FASTNN_NO_OPENMP=1       build without OpenMP.
  FASTNN_REQUIRE_OPENMP=1  fail instead of falling back to a single-threaded
                           build when no OpenMP flag works (release wheels).
  FASTNN_DEBUG=1           keep debug information (default: -g0, small wheels).
  CFLAGS=-DFNN_SIMDE_AVX512  the test build that runs the AVX-512 code on SIMDe
                           (tools/simde_check.sh), on CPUs without AVX-512.
  CFLAGS / LDFLAGS         as usual; LDFLAGS also reaches the OpenMP probe, so
                           e.g. -L$(brew --prefix libomp)/lib finds libomp.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
C_SOURCES = sorted(str(p.relative_to(HERE)).replace(os.sep, "/")
                   for p in (HERE / "csrc").glob("*.c"))

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def openmp_flags(compiler) -> tuple[list[str], list[str]]:
    """Compile and link flags that enable OpenMP with this compiler, or ([], [])."""
    if os.environ.get("FASTNN_NO_OPENMP"):
        return [], []
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    tmp = tempfile.mkdtemp(prefix="fastnn-omp-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        # distutils links executables without $LDFLAGS (it adds them only to
        # shared-object links), so pass them here or the probe misses -L paths.
        env_ldflags = ([] if compiler.compiler_type == "msvc"
                       else shlex.split(os.environ.get("LDFLAGS", "")))
        for cflags, lflags in candidates:
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(objs, "probe", output_dir=tmp,
                                         extra_postargs=lflags + env_ldflags)
                return cflags, lflags
            except Exception:  # noqa: BLE001 -- any failure means "no OpenMP this way"
                continue
        if os.environ.get("FASTNN_REQUIRE_OPENMP"):
            raise RuntimeError("fastnn: FASTNN_REQUIRE_OPENMP is set but no OpenMP flag "
                               f"works with this compiler (tried {candidates})")
        return [], []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    """build_ext that adds optimisation and OpenMP flags suited to the compiler."""

    def build_extensions(self) -> None:
        """Add compiler-specific flags, then build as usual."""
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            base = ["/O2", "/fp:precise"]
        else:
            # -fno-trapping-math: no code relies on FP exceptions; it lets the compiler
            # turn compare-selects (relu's mask...) into vector blends instead of branches
            # -ffp-contract=off: no a * b + c contracted into one FMA behind our back (GCC
            # does it by default wherever the target has FMA, and AVX-512F alone has it),
            # so the elementwise loops round alike at every ISA level; kernels that want
            # FMA write it as an intrinsic.  Every compiler and architecture (aarch64's
            # GCC contracts by default too: FMA is baseline there) and every source; these
            # flags come after $CFLAGS on the command line, so a user's -mfma
            # -ffp-contract=fast cannot undo it (docs/architecture.md, "Floating-point
            # contraction"; tools/fp_contract_check.sh)
            base = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
                    "-fvisibility=hidden",
                    "-Wno-unused-function", "-Wno-unreachable-code"]
            if not os.environ.get("FASTNN_DEBUG"):
                base.append("-g0")  # Python's own CFLAGS often carry -g: 2 MB -> 0.4 MB
        omp_c, omp_l = openmp_flags(self.compiler)
        print(f"fastnn: OpenMP flags {omp_c or 'none (single-threaded build)'}")
        for ext in self.extensions:
            ext.extra_compile_args = base + omp_c + ext.extra_compile_args
            ext.extra_link_args = omp_l + ext.extra_link_args
        super().build_extensions()


extensions = [
    Extension(
        "fastnn._kernels",
        sources=["src/fastnn/_kernels.pyx", *C_SOURCES],
        include_dirs=["csrc"],
        depends=[str(p.relative_to(HERE)) for p in (HERE / "csrc").glob("*.h")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
