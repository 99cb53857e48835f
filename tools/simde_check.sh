#!/usr/bin/env bash
# The AVX-512 code on any x86-64 CPU: build the extension with -DFNN_SIMDE_AVX512
# (csrc/fnn_simd_avx512.h then takes the intrinsics from SIMDe's portable
# implementation instead of <immintrin.h>, drops the AVX-512 target attributes,
# and cpu.c forces the avx512 level on), into a temporary copy of the package,
# and run the kernel tests there at FASTNN_ISA=avx512, at 1 and 2 threads, then
# tests/test_bf16.py at FASTNN_ISA=avx512_bf16 (the VDPBF16PS kernel on SIMDe).
#
#   tools/simde_check.sh [PYTEST ARGS...]    default: the kernel and engine test files
#
# Needs SIMDe's headers (Debian/Ubuntu: libsimde-dev; installed with apt-get when
# missing and running as root), a C compiler, Cython, setuptools, numpy, pytest.
# Also proves the build emulates: no EVEX instruction anywhere in its binary.
# Exits 0 when the tests pass, 1 on a failure, 2 when it cannot run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ ! -f /usr/include/simde/x86/avx512.h ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq libsimde-dev >/dev/null
    fi
fi
if [ ! -f /usr/include/simde/x86/avx512.h ]; then
    echo "simde_check: SIMDe headers not found (apt-get install libsimde-dev)" >&2
    exit 2
fi
python -c "import Cython, setuptools, numpy, pytest" 2>/dev/null || {
    echo "simde_check: needs Cython, setuptools, numpy and pytest in this python" >&2
    exit 2
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== simde_check: building with -DFNN_SIMDE_AVX512 into $tmp"
CFLAGS="${CFLAGS:-} -DFNN_SIMDE_AVX512" python - "$tmp" <<'PY' > "$tmp/build.log" 2>&1 || {
import os, subprocess, sys
tmp = sys.argv[1]
cmd = [sys.executable, "setup.py", "build_ext", "--force", "-j", "2",
       "--build-lib", os.path.join(tmp, "lib"), "--build-temp", os.path.join(tmp, "build")]
sys.exit(subprocess.call(cmd))
PY
    tail -n 30 "$tmp/build.log" >&2
    echo "simde_check: FAIL: the SIMDe build did not compile" >&2
    exit 1
}
mkdir -p "$tmp/pkg"
cp -r src/fastnn "$tmp/pkg/"
rm -f "$tmp"/pkg/fastnn/_kernels*.so "$tmp"/pkg/fastnn/_kernels*.pyd
cp "$tmp"/lib/fastnn/_kernels*.so "$tmp/pkg/fastnn/"
so=$(ls "$tmp"/pkg/fastnn/_kernels*.so)
echo "== simde_check: no EVEX instruction in the emulated build"
ALLOW_EVEX='^$' bash "$root/tools/check_isa.sh" "$so" | tail -n 1
export PYTHONPATH="$tmp/pkg" FASTNN_ISA=avx512
python - <<'PY'
import fastnn
c = fastnn.config()
assert c["isa"] == "avx512" and c["avx512_emulated"], c
print("simde_check: fastnn from", fastnn.__file__, "isa", c["isa"], "(emulated)", c["kernels"])
PY
bf16=0
if [ $# -eq 0 ]; then
    bf16=1
    set -- tests/test_kernels.py tests/test_gemm_engine.py tests/test_conv_kernels.py \
        tests/test_dropout_kernels.py tests/test_optim_kernels.py tests/test_hard_inputs.py \
        tests/test_isa.py
fi
status=0
for t in 1 2; do
    echo "== simde_check: pytest at FASTNN_ISA=avx512 (SIMDe), OMP_NUM_THREADS=$t"
    OMP_NUM_THREADS=$t python -m pytest -q -p no:cacheprovider "$@" 2>&1 | tail -n 3
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
done
# the AVX512-BF16 level (VDPBF16PS through SIMDe; AMX has no emulation): the bf16 tests
if [ "$bf16" = 1 ]; then
    echo "== simde_check: tests/test_bf16.py at FASTNN_ISA=avx512_bf16 (SIMDe)"
    if ! FASTNN_ISA=avx512_bf16 python - <<'PY'
import fastnn
c = fastnn.config()
assert c["isa"] == "avx512_bf16" and c["kernels"]["gemm_bf16"] == "avx512_bf16", c
PY
    then
        status=1
    fi
    FASTNN_ISA=avx512_bf16 python -m pytest -q -p no:cacheprovider tests/test_bf16.py 2>&1 |
        tail -n 3
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
[ "$status" -eq 0 ] && echo "simde_check: OK" || echo "simde_check: FAIL" >&2
exit "$status"
