#!/usr/bin/env bash
# The floating-point contraction policy (docs/architecture.md, "Floating-point
# contraction") holds against a hostile build: build the extension with
# CFLAGS="-mfma -ffp-contract=fast" (x86-64; "-ffp-contract=fast" elsewhere), the
# flags under which GCC fuses every a * b + c it can, into a temporary copy of the
# package; then
#   1. x86-64: no FMA instruction (vfmadd/vfmsub/vfnmadd/vfnmsub) in any function
#      outside the AVX2/AVX-512 levels' fnn_<what>_avx2|avx512_<dtype> and the bf16
#      levels' fnn_<what>_avx512bf16|amx_bf16 (where the micro-kernels call FMA on
#      purpose, as intrinsics: the bf16 kernels' alpha/beta epilogue): nothing was
#      contracted;
#   2. the optimizer and kernel tests pass at every ISA level the machine has
#      (test_optim_kernels.py's twins round twice: one contraction fails them).
# setup.py passes -ffp-contract=off after $CFLAGS, so both hold; drop that flag and
# both fail (29 contracted functions; 4 rmsprop cases at each level on x86-64; on
# arm64, where GCC contracts by default, 18 optimizer cases failed in issue 21).
#
#   tools/fp_contract_check.sh [PYTEST ARGS...]
# Needs a C compiler, Cython, setuptools, numpy, pytest (and objdump on x86-64).
# About 3 min on 2 cores.  Exits 0 on success, 1 on a failure, 2 when it cannot run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python -c "import Cython, setuptools, numpy, pytest" 2>/dev/null || {
    echo "fp_contract_check: needs Cython, setuptools, numpy and pytest in this python" >&2
    exit 2
}
arch=$(uname -m)
hostile="-ffp-contract=fast"
[ "$arch" = x86_64 ] && hostile="-mfma $hostile"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== fp_contract_check: building with CFLAGS=\"$hostile\" into $tmp"
CFLAGS="${CFLAGS:-} $hostile" python setup.py build_ext --force -j 2 \
    --build-lib "$tmp/lib" --build-temp "$tmp/build" > "$tmp/build.log" 2>&1 || {
    tail -n 30 "$tmp/build.log" >&2
    echo "fp_contract_check: FAIL: the build did not compile" >&2
    exit 1
}
mkdir -p "$tmp/pkg"
cp -r src/fastnn "$tmp/pkg/"
rm -f "$tmp"/pkg/fastnn/_kernels*.so "$tmp"/pkg/fastnn/_kernels*.pyd
cp "$tmp"/lib/fastnn/_kernels*.so "$tmp/pkg/fastnn/"
so=$(ls "$tmp"/pkg/fastnn/_kernels*.so)
status=0
if [ "$arch" = x86_64 ] && command -v objdump >/dev/null; then
    echo "== fp_contract_check: FMA instructions outside the AVX2/AVX-512 levels"
    objdump -d --no-show-raw-insn "$so" > "$tmp/dis.txt"
    awk -v allow='^fnn_[a-z0-9_]+_(avx(2|512)_(f32|f64)|(avx512bf16|amx)_bf16)([.].*)?$' '
        /^[0-9a-f]+ <.*>:$/ { fn = $2; gsub(/[<>:]/, "", fn); next }
        $0 ~ /\tv?fn?m(add|sub)[0-9a-z]*(ps|pd|ss|sd) / {
            if (fn ~ allow) ok[fn]++; else { bad[fn]++; nbad++ }
        }
        END {
            n = 0; for (f in ok) n++
            printf "  FMA in %d dispatched functions (allowed)\n", n
            for (f in bad) printf "  CONTRACTED: %s (%d FMA)\n", f, bad[f]
            exit nbad > 0
        }' "$tmp/dis.txt" || { echo "fp_contract_check: FAIL: contracted code" >&2; status=1; }
fi
if [ $# -eq 0 ]; then
    set -- tests/test_optim_kernels.py tests/test_kernels.py
fi
levels=$(PYTHONPATH="$tmp/pkg" python -c '
import fastnn
print(" ".join(k for k, ok in fastnn.config()["isa_supported"].items() if ok))')
for level in $levels; do
    echo "== fp_contract_check: pytest at FASTNN_ISA=$level"
    { FASTNN_ISA=$level PYTHONPATH="$tmp/pkg" OMP_NUM_THREADS=2 \
        python -m pytest "$@" -q -p no:cacheprovider 2>&1 || echo "$level" >> "$tmp/failed"; } |
        grep -E "^FAILED|passed|failed" || true
    [ ! -f "$tmp/failed" ] || status=1
done
[ "$status" = 0 ] && echo "fp_contract_check: PASS" || echo "fp_contract_check: FAIL" >&2
exit "$status"
