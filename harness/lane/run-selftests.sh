#!/usr/bin/env bash
# run-selftests.sh --kernel BZIMAGE [--out DIR] [--timeout SECS] SELFTEST...
#
# Runs built KVM selftests (static binaries: `make -C tools/testing/selftests/kvm
# EXTRA_CFLAGS=-static ...`, see docs/findings/README.md) in one boot of a lane kernel,
# one after the other, and prints each one's exit status as "SELFTEST <name> <status>".
# Why: the host has no guest_memfd; the lane's kernel is where a selftest from
# `gmemfuzz selftest` shows whether it fails (the bug is there) or passes.
# Each test's output is in DIR/<name>.log and on the console (DIR/console.log).
# Exit status: 0 when the boot ran every test (whatever their statuses), else boot.sh's.
set -euo pipefail

LANE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { printf '[run-selftests] ERROR: %s\n' "$*" >&2; exit 2; }

KERNEL="" OUT="" TIMEOUT=600
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) KERNEL="${2:?--kernel needs a value}"; shift 2 ;;
        --out) OUT="${2:?--out needs a value}"; shift 2 ;;
        --timeout) TIMEOUT="${2:?--timeout needs a value}"; shift 2 ;;
        -*) die "unknown option $1 (usage: $0 --kernel BZIMAGE [--out DIR] [--timeout SECS] SELFTEST...)" ;;
        *) break ;;
    esac
done
[ -n "$KERNEL" ] || die "--kernel BZIMAGE is required"
[ $# -gt 0 ] || die "no selftest given"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gmemfuzz-selftests.XXXXXX")}"
mkdir -p "$OUT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gmemfuzz-selftests-initrd.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

extras=() names=()
for t in "$@"; do
    [ -x "$t" ] || die "'$t' is not an executable file"
    file "$t" | grep -q 'statically linked' || die "'$t' is not static (build it with EXTRA_CFLAGS=-static)"
    name="$(basename "$t")"
    extras+=("$t:/selftests/$name")
    names+=("$name")
done
{
    echo 'cd /selftests'
    for name in "${names[@]}"; do
        # The selftests' log is what a maintainer reads: kept whole, and echoed.
        echo "./$name > /out/$name.log 2>&1; rc=\$?; cat /out/$name.log; echo \"SELFTEST $name \$rc\""
    done
} > "$WORK/run.sh"
# BINARY is only what /init would run without /run.sh: the first test.
"$LANE_DIR/make-initramfs.sh" "$1" "$WORK/initramfs.cpio" "${extras[@]}" "$WORK/run.sh:/run.sh" >/dev/null
"$LANE_DIR/boot.sh" --kernel "$KERNEL" --initrd "$WORK/initramfs.cpio" --out "$OUT" --timeout "$TIMEOUT" --quiet
tr -d '\r' < "$OUT/console.log" | grep '^SELFTEST ' || true
echo "logs: $OUT" >&2
