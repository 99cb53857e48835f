#!/usr/bin/env bash
# A proxy for the NEON GEMM kernels' speed on a machine without arm64 hardware:
# the number of aarch64 instructions one GEMM executes under QEMU user-mode
# emulation, at FASTNN_ISA=neon and at FASTNN_ISA=generic.  NOT a speed: it ignores
# latencies, throughput per instruction, caches and memory; it only says how much
# work each level's code asks the CPU to do.
#
#   tools/arm64_icount.sh [N]     N: the square size (default 192)
#
# Cross-compiles csrc/ with a small C driver into a static aarch64 binary
# (aarch64-linux-gnu-gcc, setup.py's optimisation flags, no OpenMP), runs it under
# qemu-aarch64-static with -d in_asm,exec,nochain (one log line per executed
# translation block, each block's instructions from its first translation) and
# counts the instructions between the driver's two marker calls, for float and
# double.  Needs qemu-user-static and gcc-aarch64-linux-gnu; no root.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-192}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/driver.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include "fastnn.h"
/* the markers: the counter starts after the first call and stops at the second */
volatile int fnn_icount_mark;
__attribute__((noinline)) void fnn_icount_start(void) { fnn_icount_mark = 1; }
__attribute__((noinline)) void fnn_icount_stop(void) { fnn_icount_mark = 2; }
int main(int argc, char **argv)
{
    const long n = atol(argv[1]);
    const int dbl = argv[2][0] == 'd';
    void *a = calloc((size_t)(n * n), 8), *b = calloc((size_t)(n * n), 8),
         *c = calloc((size_t)(n * n), 8);
    for (long i = 0; i < n * n; i++) {
        if (dbl) ((double *)a)[i] = (double)(i % 7) - 3, ((double *)b)[i] = (double)(i % 5) - 2;
        else ((float *)a)[i] = (float)(i % 7) - 3, ((float *)b)[i] = (float)(i % 5) - 2;
    }
    fnn_init();
    fnn_icount_start();
    if (dbl) fnn_gemm_f64(c, a, b, n, n, n, n, n, n, 0, 0, 1.0, 0.0, NULL, 1);
    else fnn_gemm_f32(c, a, b, n, n, n, n, n, n, 0, 0, 1.0f, 0.0f, NULL, 1);
    fnn_icount_stop();
    printf("%s %s %g\n", fnn_isa_name(fnn_isa()), dbl ? "f64" : "f32",
           dbl ? ((double *)c)[n * n - 1] : (double)((float *)c)[n * n - 1]);
    return 0;
}
C
aarch64-linux-gnu-gcc -O3 -fno-math-errno -fno-trapping-math -ffp-contract=off -static \
    -I"$root/csrc" "$tmp/driver.c" "$root"/csrc/*.c -lm -o "$tmp/drv"
count() { # $1 isa, $2 f|d: instructions executed between the markers
    FASTNN_ISA=$1 qemu-aarch64-static -cpu neoverse-n1 -d in_asm,exec,nochain -D "$tmp/log" \
        "$tmp/drv" "$n" "$2" > "$tmp/out"
    awk '
        /^IN:/ { intb = 1; pc = ""; cnt = 0; next }
        intb && /^0x[0-9a-f]+:/ { if (pc == "") pc = $1; cnt++; next }
        intb && !/^0x/ {
            if (pc != "") { sub(":", "", pc); sub(/^0x0*/, "", pc); size[pc] = cnt }
            intb = 0
        }
        /^Trace / {
            # Trace 0: 0x7f... [00000000/0000000000400abc/...] fnn_icount_start
            split($4, f, "/"); pc = f[2]; sub(/^0*/, "", pc)
            sym = $NF
            if (sym == "fnn_icount_start") on = 1
            else if (sym == "fnn_icount_stop") on = 0
            else if (on) total += size[pc]
        }
        END { printf "%d\n", total }' "$tmp/log"
}
printf '%-6s %-8s %-8s %14s\n' dtype isa size instructions
for dt in f d; do
    ng=$(count generic $dt); nn=$(count neon $dt)
    name=$([ $dt = f ] && echo float32 || echo float64)
    printf '%-6s %-8s %-8s %14d\n' "$name" generic "${n}^3" "$ng"
    printf '%-6s %-8s %-8s %14d   neon/generic = %.3f\n' "$name" neon "${n}^3" "$nn" \
        "$(echo "$nn / $ng" | bc -l)"
done
