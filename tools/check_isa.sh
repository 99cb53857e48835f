#!/usr/bin/env bash
# Check that a compiled fastnn runs on any x86-64 CPU: disassemble the extension
# and fail if an AVX-or-later instruction lies outside the functions that are
# only called after the CPU was checked for them (csrc/cpu.c's dispatch).
#
#   tools/check_isa.sh PATH        PATH: a .whl, or the _kernels*.so itself
#
# The rule is a naming convention: a function compiled for an ISA above the
# baseline is named fnn_<what>_<isa>_<dtype> (fnn_ukr_avx2_f32, fnn_ukr_avx2_f64,
# later e.g. fnn_ukr_avx512_f32 or fnn_act_avx2_f64), optionally with a
# compiler clone suffix (.part.0, .cold).  ALLOW, an extended regex, matches
# those names; every other function must be plain x86-64 (SSE2): the CPU check
# itself (fnn_cpu_has_avx2) included.
# Flagged: VEX/EVEX-encoded instructions (v-prefixed mnemonics such as vfmadd,
# vbroadcast, vmovups, vzeroupper), any %ymm/%zmm/%k register, and the
# BMI/LZCNT/POPCNT/MOVBE instructions that -march=x86-64 never emits.
# Exits 0 on success (prints the functions that do use AVX), 1 on a violation,
# 2 on bad usage or when there is nothing to check (no symbols, not x86-64).
set -euo pipefail

if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 WHEEL_OR_SO" >&2
    exit 2
fi
allow=${ALLOW:-'^fnn_[a-z0-9_]+_avx(2|512)_(f32|f64)([.].*)?$'}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "$1" in
    *.whl)
        python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [n for n in z.namelist() if n.startswith("fastnn/_kernels") and n.endswith(".so")]
assert len(names) == 1, names
open(sys.argv[2], "wb").write(z.read(names[0]))' "$1" "$tmp/ext.so"
        so="$tmp/ext.so" ;;
    *) so="$1" ;;
esac

if ! objdump -f "$so" | grep -q "x86-64"; then
    echo "check_isa: $1 is not an x86-64 object; nothing to check" >&2
    exit 2
fi

objdump -d --no-show-raw-insn "$so" > "$tmp/dis.txt"

# One line per offending instruction: "function<TAB>instruction".
awk -F'\t' '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; sub(/^[0-9a-f]+ </, "", fn); sub(/>:$/, "", fn); next }
    /^ *[0-9a-f]+:\t/ {
        insn = $2
        n = split(insn, w, /[ \t]+/)
        i = 1   # skip prefixes to reach the mnemonic
        while (i < n && w[i] ~ /^(rep|repz|repe|repnz|repne|lock|notrack|bnd|data16|addr32|cs|ds|es|ss|fs|gs|rex(\.[a-z]+)?)$/) i++
        m = w[i]
        if ((m ~ /^v/ && m !~ /^(verr|verw|vmcall|vmlaunch|vmresume|vmxoff|vmread|vmwrite|vmptrld|vmclear)$/) ||
            insn ~ /%[yz]mm[0-9]/ || insn ~ /%k[0-7]/ ||
            m ~ /^(andn|bextr|blsi|blsmsk|blsr|bzhi|mulx|pdep|pext|rorx|sarx|shlx|shrx|lzcnt|tzcnt|popcnt|movbe)[bwlq]?$/)
            print fn "\t" insn
    }' "$tmp/dis.txt" > "$tmp/avx.txt"

allowed_fns=$(sed -nE 's/^[0-9a-f]+ <(.*)>:$/\1/p' "$tmp/dis.txt" | grep -E "$allow" | sort -u || true)
if [ -z "$allowed_fns" ]; then
    echo "check_isa: FAIL: no function matching /$allow/ in the disassembly of $1" >&2
    echo "  (stripped symbols? the dispatched AVX2 kernels fnn_ukr_avx2_* must be visible to objdump)" >&2
    exit 2
fi

echo "check_isa: functions allowed AVX (/$allow/), with their AVX instruction counts:"
for f in $allowed_fns; do
    printf '  %-40s %5d\n' "$f" "$(awk -F'\t' -v f="$f" '$1 == f' "$tmp/avx.txt" | wc -l)"
done
bad=$(awk -F'\t' -v re="$allow" '$1 !~ re' "$tmp/avx.txt")
if [ -n "$bad" ]; then
    echo "check_isa: FAIL: AVX-or-later instructions outside the dispatched kernels:" >&2
    printf '%s\n' "$bad" | awk -F'\t' '{c[$1]++; if (!(($1) in ex)) ex[$1] = $2}
        END {for (f in c) printf "%d\t%s\t%s\n", c[f], f, ex[f]}' |
        sort -t"$(printf '\t')" -k1,1nr | head -n 25 |
        awk -F'\t' '{printf "  %-40s %5d  e.g. %s\n", $2, $1, $3}' >&2
    echo "  ($(printf '%s\n' "$bad" | cut -f1 | sort -u | wc -l) functions; the first 25 by count)" >&2
    exit 1
fi
total=$(grep -c . "$tmp/avx.txt" || true)
echo "check_isa: OK: all $total AVX instructions of $(basename "$1") lie in the dispatched kernels"
