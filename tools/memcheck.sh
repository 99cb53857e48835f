#!/usr/bin/env bash
# Memory-safety check: build fastnn's extension with AddressSanitizer and
# UndefinedBehaviorSanitizer into a temporary directory and run the kernel and
# layer tests under it.  Any ASan/UBSan report fails the run (exit status != 0).
#
#   tools/memcheck.sh                 # default test selection (below)
#   tools/memcheck.sh tests/test_kernels.py -k gemm    # any pytest arguments
#
# Needs gcc (or clang: CC=clang) with the sanitizer runtimes; no root, nothing
# installed.  CPython itself is not instrumented; libasan is preloaded so its
# allocator sees every malloc (PYTHONMALLOC=malloc routes Python's too), and
# leak detection is off because CPython keeps objects alive at exit by design.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cc=${CC:-gcc}
work=$(mktemp -d "${TMPDIR:-/tmp}/fastnn-memcheck.XXXXXX")
trap 'rm -rf "$work"' EXIT

python -c "import Cython, setuptools, numpy, pytest, hypothesis" 2>/dev/null || {
    echo "memcheck: needs Cython, setuptools, numpy, pytest and hypothesis in this python" >&2
    echo "          (pip install cython setuptools \".[test]\")" >&2; exit 2; }
asan_rt=$("$cc" -print-file-name=libasan.so)
if [ ! -e "$asan_rt" ]; then
    echo "memcheck: $cc has no libasan.so ($asan_rt); install the sanitizer runtime" >&2
    exit 2
fi

echo "== memcheck: building with -fsanitize=address,undefined in $work"
cp -r setup.py pyproject.toml README.md csrc src "$work/"
rm -f "$work"/src/fastnn/*.so "$work"/src/fastnn/_kernels.c
# The flags ride on CC so that they reach every compile and link, including
# setup.py's OpenMP probe (a probe built without them would fail to link and
# silently give a single-threaded build, leaving the OpenMP paths unchecked).
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
(cd "$work" && CC="$cc $san" CFLAGS="-O1" \
    python setup.py build_ext --inplace --build-temp "$work/build" >"$work/build.log" 2>&1) \
    || { tail -50 "$work/build.log"; exit 1; }
grep "fastnn: OpenMP flags" "$work/build.log"
if [ -z "${FASTNN_NO_OPENMP:-}" ] && grep -q "OpenMP flags none" "$work/build.log"; then
    echo "memcheck: OpenMP was not detected in the sanitizer build" >&2; exit 1
fi
ldd "$work"/src/fastnn/_kernels*.so | grep libasan > /dev/null \
    || { echo "memcheck: the extension is not linked against libasan" >&2; exit 1; }

cp -r tests "$work/tests"
if [ "$#" -eq 0 ]; then
    set -- tests/test_kernels.py tests/test_conv_kernels.py tests/test_dropout_kernels.py \
        tests/test_optim_kernels.py tests/test_properties.py tests/test_hard_inputs.py \
        tests/test_fuzz_loader.py tests/test_errors.py tests/test_gradcheck.py \
        tests/test_cnn.py tests/test_model.py tests/test_isa.py tests/test_api_fuzz.py
fi
log="$work/sanitizer"
echo "== memcheck: pytest $*"
status=0
(cd "$work" && \
    LD_PRELOAD="$asan_rt" PYTHONMALLOC=malloc PYTHONPATH="$work/src" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=$log:allocator_may_return_null=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$log" \
    python -m pytest -q -p no:cacheprovider -x "$@") || status=$?

# ASan's "failed to allocate" warnings are the tests' deliberate giant allocations
# (allocator_may_return_null=1 turns them into MemoryError); anything else is a report.
expected="WARNING: AddressSanitizer failed to allocate"
n_expected=$(cat "$log".* 2>/dev/null | grep -c "$expected" || true)
echo "== memcheck: $n_expected deliberate oversized allocations refused (expected)"
reports=$(cat "$log".* 2>/dev/null | grep -v "$expected" || true)
if [ -n "$reports" ]; then
    echo "== memcheck: sanitizer reports:"
    echo "$reports"
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "== memcheck: tests failed (status $status) under the sanitizers" >&2
    exit "$status"
fi
echo "== memcheck: clean (0 AddressSanitizer / UndefinedBehaviorSanitizer reports)"
