#!/usr/bin/env bash
# Check that a compiled fastnn runs on any x86-64 CPU: disassemble the extension
# and fail if an instruction above the baseline lies outside the functions that
# are only called after the CPU was checked for it (csrc/cpu.c's ISA registry).
#
#   tools/check_isa.sh PATH        PATH: a .whl, or the _kernels*.so itself
#                                  (e.g. src/fastnn/_kernels*.so of an in-place build)
#
# The rule is a naming convention: a function compiled for an ISA level above the
# baseline is named fnn_<what>_<isa>_<dtype> (fnn_ukr_avx2_f32, fnn_adam_avx512_f64,
# fnn_conv_ukr_avx512_f32, fnn_ukr_avx512bf16_bf16, fnn_ukr_amx_bf16), optionally
# with a compiler clone suffix (.part.0, .cold, .constprop.0).  The encoding is
# read from the instruction bytes:
#   AMX (a %tmm register, ldtilecfg, sttilecfg, tilerelease) only in functions
#        matching ALLOW_AMX (default: *_amx_bf16);
#   EVEX (AVX-512: first opcode byte 0x62, or a %zmm, %k or xmm/ymm16-31 register)
#        only in functions matching ALLOW_EVEX (default: *_avx512_*, *_avx512bf16_*,
#        *_amx_*: the bf16 levels sit above avx512);
#   VEX (AVX, AVX2, FMA: first opcode byte 0xc4 or 0xc5, any v-prefixed mnemonic,
#        any %ymm register) and the BMI/LZCNT/POPCNT/MOVBE instructions that
#        -march=x86-64 never emits only in functions matching ALLOW (default:
#        *_avx2_*, *_avx512_*, *_avx512bf16_* or *_amx_*).
# Every other function must be plain x86-64 (SSE2): the CPU checks in cpu.c included.
# So an AVX2-level kernel that the compiler vectorized with zmm registers, or an
# AVX-512 instruction leaking into a baseline function, fails the check.
# Exits 0 on success (prints the functions that use VEX/EVEX with their counts),
# 1 on a violation, 2 on bad usage or when there is nothing to check.
set -euo pipefail

if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 WHEEL_OR_SO" >&2
    exit 2
fi
allow=${ALLOW:-'^fnn_[a-z0-9_]+_(avx2_(f32|f64)|avx512_(f32|f64)|avx512bf16_bf16|amx_bf16)([.].*)?$'}
allow_evex=${ALLOW_EVEX:-'^fnn_[a-z0-9_]+_(avx512_(f32|f64)|avx512bf16_bf16|amx_bf16)([.].*)?$'}
allow_amx=${ALLOW_AMX:-'^fnn_[a-z0-9_]+_amx_bf16([.].*)?$'}
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

if ! objdump -f "$so" | grep "x86-64" > /dev/null; then
    echo "check_isa: $1 is not an x86-64 object; nothing to check" >&2
    exit 2
fi

objdump -d "$so" > "$tmp/dis.txt"

# One line per instruction above the baseline: "function<TAB>class<TAB>instruction",
# class evex, vex or bmi.  objdump prints "addr:<TAB>bytes<TAB>insn"; an instruction
# longer than 7 bytes continues its bytes on a line with no insn field (skipped).
awk -F'\t' '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; sub(/^[0-9a-f]+ </, "", fn); sub(/>:$/, "", fn); next }
    /^ *[0-9a-f]+:\t/ && NF >= 3 {
        nb = split($2, b, / +/)
        j = 1   # skip legacy prefixes (operand/address size, rep, lock, segments)
        while (j < nb && b[j] ~ /^(66|67|f2|f3|f0|2e|36|3e|26|64|65)$/) j++
        insn = $3
        n = split(insn, w, /[ \t]+/)
        i = 1   # skip prefixes to reach the mnemonic
        while (i < n && w[i] ~ /^(rep|repz|repe|repnz|repne|lock|notrack|bnd|data16|addr32|cs|ds|es|ss|fs|gs|rex(\.[a-z]+)?|\{evex\}|\{vex\}|\{vex3\})$/) i++
        m = w[i]
        if (insn ~ /%tmm[0-7]/ || m ~ /^(ldtilecfg|sttilecfg|tilerelease)$/)
            print fn "\tamx\t" insn
        else if (b[j] == "62" || insn ~ /\{evex\}/ || insn ~ /%zmm[0-9]/ || insn ~ /%k[0-7]/ ||
            insn ~ /%[xy]mm(1[6-9]|2[0-9]|3[01])/)
            print fn "\tevex\t" insn
        else if (b[j] == "c4" || b[j] == "c5" || insn ~ /%ymm[0-9]/ ||
                 (m ~ /^v/ && m !~ /^(verr|verw|vmcall|vmlaunch|vmresume|vmxoff|vmread|vmwrite|vmptrld|vmclear)$/))
            print fn "\tvex\t" insn
        else if (m ~ /^(andn|bextr|blsi|blsmsk|blsr|bzhi|mulx|pdep|pext|rorx|sarx|shlx|shrx|lzcnt|tzcnt|popcnt|movbe)[bwlq]?$/)
            print fn "\tbmi\t" insn
    }' "$tmp/dis.txt" > "$tmp/avx.txt"

allowed_fns=$(sed -nE 's/^[0-9a-f]+ <(.*)>:$/\1/p' "$tmp/dis.txt" | grep -E "$allow" | sort -u || true)
if [ -z "$allowed_fns" ]; then
    echo "check_isa: FAIL: no function matching /$allow/ in the disassembly of $1" >&2
    echo "  (stripped symbols? the dispatched AVX2 kernels fnn_ukr_avx2_* must be visible to objdump)" >&2
    exit 2
fi

echo "check_isa: functions allowed VEX (/$allow/) and EVEX (/$allow_evex/), with counts:"
printf '  %-44s %6s %6s\n' function vex evex
for f in $allowed_fns; do
    printf '  %-44s %6d %6d\n' "$f" \
        "$(awk -F'\t' -v f="$f" '$1 == f && $2 != "evex"' "$tmp/avx.txt" | wc -l)" \
        "$(awk -F'\t' -v f="$f" '$1 == f && $2 == "evex"' "$tmp/avx.txt" | wc -l)"
done
report() { # $1: message; stdin: "function<TAB>class<TAB>insn" lines
    local bad
    bad=$(cat)
    [ -z "$bad" ] && return 0
    echo "check_isa: FAIL: $1:" >&2
    printf '%s\n' "$bad" | awk -F'\t' '{c[$1]++; if (!(($1) in ex)) ex[$1] = $3}
        END {for (f in c) printf "%d\t%s\t%s\n", c[f], f, ex[f]}' |
        sort -t"$(printf '\t')" -k1,1nr | head -n 25 |
        awk -F'\t' '{printf "  %-40s %5d  e.g. %s\n", $2, $1, $3}' >&2
    echo "  ($(printf '%s\n' "$bad" | cut -f1 | sort -u | wc -l) functions; the first 25 by count)" >&2
    return 1
}
status=0
awk -F'\t' -v re="$allow_amx" '$2 == "amx" && $1 !~ re' "$tmp/avx.txt" |
    report "AMX (tile) instructions outside the *_amx_bf16 kernels" || status=1
awk -F'\t' -v re="$allow_evex" '$2 == "evex" && $1 !~ re' "$tmp/avx.txt" |
    report "EVEX (AVX-512) instructions outside the AVX-512 and bf16 kernels" || status=1
awk -F'\t' -v re="$allow" '$2 == "vex" || $2 == "bmi"' "$tmp/avx.txt" | awk -F'\t' -v re="$allow" '$1 !~ re' |
    report "VEX (AVX/AVX2/FMA) or BMI instructions outside the dispatched kernels" || status=1
[ "$status" -eq 0 ] || exit 1
total=$(grep -c . "$tmp/avx.txt" || true)
evex=$(awk -F'\t' '$2 == "evex"' "$tmp/avx.txt" | wc -l)
amx=$(awk -F'\t' '$2 == "amx"' "$tmp/avx.txt" | wc -l)
echo "check_isa: OK: all $total VEX/EVEX/AMX instructions of $(basename "$1") lie in the dispatched kernels ($evex EVEX ones in the AVX-512 and bf16 functions, $amx AMX ones in *_amx_bf16)"
