#!/usr/bin/env bash
# fastnn's suite on arm64 (aarch64), emulated on an x86-64 Linux machine:
#
#   1. host tools (Debian/Ubuntu, installed with apt-get when missing and root):
#      qemu-user-static, debootstrap, gcc-aarch64-linux-gnu;
#   2. qemu-aarch64 registered with binfmt_misc (name fastnn-aarch64, flag F, so the
#      root needs no copy of qemu) unless an enabled aarch64 registration exists;
#   3. a Debian bookworm arm64 minbase root (python3, python3-venv, python3-dev,
#      libgomp1) with a venv of numpy>=2, pytest and hypothesis from PyPI (the host's
#      CA bundle copied in), cached as a tarball keyed by this recipe, so later runs
#      only unpack it;
#   4. the extension cross-compiled on the host (setup.py build_ext with
#      aarch64-linux-gnu-gcc and the root's Python headers: the same flags as a native
#      build, about 1 min instead of ~4 min with the emulated gcc);
#   5. the suite in the root at 1 thread with QEMU_CPU=neoverse-n1 (with QEMU's
#      default `max` CPU, NumPy's OpenBLAS picks SVE kernels that QEMU runs very
#      slowly), at the default ISA level (neon); then the GEMM and kernel test files at
#      FASTNN_ISA=generic.  Each test process runs at 1 OpenMP thread; pytest-xdist
#      runs one such process per host core (ARM64_JOBS).  It ends with pytest's
#      summary.
# Mounts (proc, dev, the checkout) and the binfmt registration are undone on exit.
#
#   tools/arm64_check.sh [PYTEST ARGS...]   default: tests (the whole suite)
# Env: FASTNN_ARM64_CACHE  where the root's tarball and the work root live
#                          (default ${XDG_CACHE_HOME:-$HOME/.cache}/fastnn-arm64)
#      ARM64_GENERIC_TESTS the files run again at FASTNN_ISA=generic ("" skips it)
#      ARM64_JOBS          pytest-xdist workers (default: the host's cores; 0: none)
#      PYTHON              the host Python that runs Cython + setup.py (default python3;
#                          needs Cython>=3 and setuptools)
# Needs root (debootstrap, chroot, mounts, binfmt_misc).  Each step's wall-clock and
# CPU time is printed.  From nothing, on 2 cores loaded by other work: root 8-21 min,
# cross build 0.5-1 min, suite 11 min (2 workers); idle, roughly 12-13 min in all.
# Exits 0 when every test passes, 1 on a failure, 2 when it cannot run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
cache=${FASTNN_ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fastnn-arm64}
# at generic, the files whose kernels differ between the two arm64 levels (GEMM and
# dense: the micro-kernels and packing; the loops are the same code at both levels);
# the full suite's test_isa.py and test_gemm_engine.py also run a battery of every
# family at each level in child processes
generic_tests=${ARM64_GENERIC_TESTS-tests/test_kernels.py tests/test_gemm_engine.py}
suite=${ARM64_SUITE:-tests}
jobs=${ARM64_JOBS:-$(nproc)}
xdist=""
[ "$jobs" -gt 0 ] && xdist="-n $jobs"
[ $# -gt 0 ] && suite="$*"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
t0=$SECONDS
# each step's wall-clock time since the start, and the CPU time (user + sys) that the
# finished child processes used so far (on a loaded machine the wall clock stretches,
# the CPU time much less)
times_file=$(mktemp)
step() {
    times > "$times_file" # in this shell: a command substitution would time a subshell
    printf '\n== arm64_check [%4ds wall, %4ds cpu] %s\n' "$((SECONDS - t0))" "$(awk 'NR == 2 {
        split($1, u, "m"); split($2, s, "m"); printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' \
        "$times_file")" "$*"
}
die() { echo "arm64_check: $*" >&2; exit 2; }

[ "$(uname -m)" = x86_64 ] || die "runs on an x86-64 Linux host (uname -m: $(uname -m))"
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts, binfmt_misc)"

# ------------------------------------------------------------------ host tools
step "host tools"
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
"$py" -c "import Cython, setuptools" 2>/dev/null || die "$py needs Cython and setuptools"
qemu=$(command -v qemu-aarch64-static)

# ------------------------------------------------- mounts + binfmt, undone on exit
work=$cache/root
mounted=()
binfmt_mounted=0
binfmt_name=
cleanup() {
    local rc=$? i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -l "${mounted[i]}" 2>/dev/null || true
    done
    if [ -n "$binfmt_name" ] && [ -e "/proc/sys/fs/binfmt_misc/$binfmt_name" ]; then
        echo -1 > "/proc/sys/fs/binfmt_misc/$binfmt_name" || true
    fi
    if [ "$binfmt_mounted" = 1 ]; then umount /proc/sys/fs/binfmt_misc 2>/dev/null || true; fi
    rm -f "$times_file"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mnt() { mount "$@"; mounted+=("${!#}"); }

step "binfmt_misc: qemu-aarch64"
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
    binfmt_mounted=1
fi
have=0
for f in /proc/sys/fs/binfmt_misc/*; do
    [ -f "$f" ] || continue
    if grep -q '^enabled' "$f" 2>/dev/null && grep -q '^magic 7f454c460201010000000000000000000200b700' "$f" 2>/dev/null &&
        grep -q '^flags:.*F' "$f" 2>/dev/null; then
        have=1; echo "using the registration ${f##*/}"
    fi
done
if [ "$have" = 0 ]; then
    binfmt_name=fastnn-aarch64
    [ -e "/proc/sys/fs/binfmt_misc/$binfmt_name" ] && echo -1 > "/proc/sys/fs/binfmt_misc/$binfmt_name"
    printf '%s' ":$binfmt_name:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:$qemu:F" \
        > /proc/sys/fs/binfmt_misc/register
    echo "registered $binfmt_name -> $qemu"
fi

# ------------------------------------------------------------------ the root
# The recipe's key: change any of these and the cached tarball is rebuilt.
pkgs=python3,python3-venv,python3-dev,libgomp1,ca-certificates
pip_pkgs=("numpy>=2" "pytest>=7" "hypothesis>=6" "pytest-xdist>=3")
key=$(printf '%s\n' bookworm "$pkgs" "${pip_pkgs[@]}" v1 | sha256sum | cut -c1-12)
tarball=$cache/root-bookworm-arm64-$key.tar.gz
mkdir -p "$cache"
if [ -d "$work" ] && [ -f "$work/.fastnn-key" ] && [ "$(cat "$work/.fastnn-key")" = "$key" ]; then
    step "root: reusing $work"
elif [ -f "$tarball" ]; then
    step "root: unpacking $tarball"
    rm -rf "$work" && mkdir -p "$work"
    tar -xzf "$tarball" -C "$work"
else
    step "root: debootstrap --arch=arm64 --variant=minbase bookworm (first stage)"
    rm -rf "$work" "$work.new" && mkdir -p "$work.new"
    debootstrap --arch=arm64 --foreign --variant=minbase --include="$pkgs" \
        bookworm "$work.new" "$mirror" > "$cache/debootstrap.log" 2>&1 ||
        { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap first stage failed"; }
    step "root: second stage (emulated)"
    chroot "$work.new" /debootstrap/debootstrap --second-stage >> "$cache/debootstrap.log" 2>&1 ||
        { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap second stage failed"; }
    step "root: venv with ${pip_pkgs[*]} (PyPI, host CA bundle)"
    cp -L /etc/ssl/certs/ca-certificates.crt "$work.new/etc/ssl/certs/ca-certificates.crt"
    cp -L /etc/resolv.conf "$work.new/etc/resolv.conf"
    mount -t proc proc "$work.new/proc"; mounted+=("$work.new/proc")
    chroot "$work.new" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root \
        SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt QEMU_CPU=neoverse-n1 sh -ec "
        python3 -m venv /venv
        /venv/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir ${pip_pkgs[*]@Q}
        /venv/bin/python -m pip list --format=freeze" > "$cache/venv.log" 2>&1 ||
        { tail -n 20 "$cache/venv.log" >&2; die "venv failed"; }
    umount "$work.new/proc"; unset 'mounted[-1]'
    grep -iE '^(numpy|pytest|hypothesis)=' "$cache/venv.log" | paste -sd' ' -
    echo "$key" > "$work.new/.fastnn-key"
    step "root: caching $tarball"
    rm -f "$cache"/root-bookworm-arm64-*.tar.gz
    tar -czf "$tarball.tmp" -C "$work.new" . && mv "$tarball.tmp" "$tarball"
    mv "$work.new" "$work"
    du -sh "$tarball" | cut -f1
fi

# ------------------------------------------------------- cross-compiled extension
step "cross-compiling fastnn._kernels with aarch64-linux-gnu-gcc"
build=$cache/build
rm -rf "$build" && mkdir -p "$build"
pyinc=$work/usr/include/python3.11
[ -f "$pyinc/Python.h" ] || die "no Python headers in the root ($pyinc)"
# The root's headers come first (Debian's pyconfig.h dispatches on the target
# architecture to <aarch64-linux-gnu/python3.11/pyconfig.h>, found through
# -idirafter, after the cross compiler's own libc headers); setup.py's flags follow
# as in any build, so the contraction policy is the one a native build gets.
(
    cd "$root"
    CC=aarch64-linux-gnu-gcc LDSHARED="aarch64-linux-gnu-gcc -shared" \
    CFLAGS="-I$pyinc -idirafter $work/usr/include ${ARM64_CFLAGS:-}" LDFLAGS="" \
    "$py" setup.py build_ext --force -j 2 --build-lib "$build/lib" --build-temp "$build/tmp"
) > "$build/build.log" 2>&1 || { tail -n 30 "$build/build.log" >&2; echo "arm64_check: FAIL: cross build" >&2; exit 1; }
grep -m1 "OpenMP flags" "$build/build.log" || true
so=$(ls "$build"/lib/fastnn/_kernels*.so)
file -b "$so" 2>/dev/null | cut -c1-60 || true

# ------------------------------------------------------------------ the suite
step "copying the checkout into the root"
dest=$work/fastnn
rm -rf "$dest" && mkdir -p "$dest"
(cd "$root" && tar -cf - --exclude='*.so' --exclude='__pycache__' --exclude=build \
    --exclude='src/fastnn/*.c' --exclude=.git src tests tools examples README.md pyproject.toml \
    docs benchmarks) | tar -xf - -C "$dest"
cp "$so" "$dest/src/fastnn/_kernels.cpython-311-aarch64-linux-gnu.so"
mnt -t proc proc "$work/proc"
mnt --bind /dev "$work/dev"
run_in_root() {
    chroot "$work" /usr/bin/env -i PATH=/venv/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
        QEMU_CPU=neoverse-n1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
        FASTNN_SKIP_SCRATCH_INSTALL=1 PYTHONPATH=/fastnn/src PYTHONDONTWRITEBYTECODE=1 \
        "$@"
}
run_in_root sh -c 'cd /fastnn && python -m fastnn info' || { echo "arm64_check: FAIL: import" >&2; exit 1; }
status=0
step "pytest $suite (QEMU_CPU=neoverse-n1, 1 thread, default ISA)"
# shellcheck disable=SC2086
{ run_in_root sh -c "cd /fastnn && python -m pytest $suite $xdist -q -p no:cacheprovider" 2>&1 ||
    echo $? > "$build/rc"; } | tail -n "${ARM64_TAIL:-15}"
[ ! -f "$build/rc" ] || status=1
if [ -n "$generic_tests" ]; then
    step "pytest at FASTNN_ISA=generic: $generic_tests"
    # shellcheck disable=SC2086
    { run_in_root sh -c "cd /fastnn && FASTNN_ISA=generic python -m pytest $generic_tests $xdist -q -p no:cacheprovider" 2>&1 ||
        echo $? > "$build/rc"; } | tail -n "${ARM64_TAIL:-15}"
    [ ! -f "$build/rc" ] || status=1
fi
step "done: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit "$status"
