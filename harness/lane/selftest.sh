#!/usr/bin/env bash
# selftest.sh — end-to-end check of the gmemfuzz test-kernel lane.
#
# Builds the kernel (cached by build-kernel.sh), compiles probe.c statically,
# packs it into an initramfs, boots it under QEMU/TCG and checks that, inside
# the guest, /dev/kvm offers KVM_CAP_MEMORY_ATTRIBUTES with PRIVATE,
# KVM_CAP_GUEST_MEMFD, VM type 1 (KVM_X86_SW_PROTECTED_VM), and that a
# guest_memfd can be made, bound and converted. A second boot checks that a
# --cmd command's exit status comes back through the 9p share.
# Why: one command that proves the whole lane works on this machine.
# Prints the time each stage took. Exit 0 on success.
# Env: GMEMFUZZ_SELFTEST_DIR (work dir; default a temp dir, kept on failure),
#      and the build-kernel.sh variables (GMEMFUZZ_LANE_CACHE, ...).
set -euo pipefail

LANE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[selftest] %s\n' "$*" >&2; }
fail() { printf '[selftest] FAIL: %s\n' "$*" >&2; printf '[selftest] work dir kept: %s\n' "$WORK" >&2; exit 1; }

WORK="${GMEMFUZZ_SELFTEST_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gmemfuzz-selftest.XXXXXX")}"
mkdir -p "$WORK"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
TIMES=()

# 1. kernel
t=$(now)
KERNEL="$("$LANE_DIR/build-kernel.sh" | tail -n1)" || fail "build-kernel.sh failed"
[ -f "$KERNEL" ] || fail "build-kernel.sh printed '$KERNEL', which is not a file"
TIMES+=("kernel: $(since "$t") s ($KERNEL)")
log "${TIMES[-1]}"

# 2. probe
t=$(now)
command -v gcc >/dev/null || fail "gcc not found (apt-get install gcc)"
gcc -static -O2 -Wall -o "$WORK/probe" "$LANE_DIR/probe.c" || fail "compiling probe.c failed"
TIMES+=("probe compile: $(since "$t") s")
log "${TIMES[-1]}"

# 3. initramfs
t=$(now)
"$LANE_DIR/make-initramfs.sh" "$WORK/probe" "$WORK/initramfs.cpio" >/dev/null \
    || fail "make-initramfs.sh failed"
TIMES+=("initramfs: $(since "$t") s")
log "${TIMES[-1]}"

# 4. boot, run the probe (the initramfs' BINARY)
t=$(now)
set +e
"$LANE_DIR/boot.sh" --kernel "$KERNEL" --initrd "$WORK/initramfs.cpio" \
    --out "$WORK/out1" --timeout 300 --quiet
rc=$?
set -e
TIMES+=("boot + probe: $(since "$t") s")
log "${TIMES[-1]}"
CONSOLE="$WORK/out1/console.log"
grep 'GMEMFUZZ_PROBE' "$CONSOLE" | tr -d '\r' >&2 || true
[ "$rc" = 0 ] || fail "probe boot exited $rc (console: $CONSOLE)"
probe_val() { tr -d '\r' < "$CONSOLE" | sed -n "s/^GMEMFUZZ_PROBE $1=\([0-9-]*\).*/\1/p" | head -n1; }
attrs="$(probe_val cap_memory_attributes)"
gmem="$(probe_val cap_guest_memfd)"
types="$(probe_val cap_vm_types)"
# shellcheck disable=SC2015 # fail exits, so A && B || fail is safe here
[ -n "$attrs" ] && (( attrs & 8 )) || fail "KVM_CAP_MEMORY_ATTRIBUTES lacks PRIVATE (got '${attrs}')"
# shellcheck disable=SC2015
[ -n "$gmem" ] && (( gmem > 0 )) || fail "KVM_CAP_GUEST_MEMFD missing (got '${gmem}')"
# shellcheck disable=SC2015
[ -n "$types" ] && (( types & 2 )) || fail "KVM_CAP_VM_TYPES lacks type 1 (got '${types}')"
for k in create_vm_type1 create_guest_memfd set_memslot_guest_memfd set_attributes_private punch_hole; do
    [ "$(probe_val "$k")" = 0 ] || fail "probe step $k did not succeed"
done
tr -d '\r' < "$CONSOLE" | grep -qx 'GMEMFUZZ_PROBE result=PASS' || fail "probe did not print result=PASS"
[ "$(cat "$WORK/out1/exit_status")" = 0 ] || fail "exit_status file in out dir is not 0"

# 5. boot with --cmd, check a non-zero status and a file come back over 9p
# shellcheck disable=SC2016 # expanded by the guest's shell
GUEST_CMD='echo "from guest: $(uname -r)" > "$GMEMFUZZ_OUT/hello.txt"; exit 7'
t=$(now)
set +e
"$LANE_DIR/boot.sh" --kernel "$KERNEL" --initrd "$WORK/initramfs.cpio" \
    --out "$WORK/out2" --timeout 300 --quiet \
    --cmd "$GUEST_CMD"
rc=$?
set -e
TIMES+=("boot + --cmd: $(since "$t") s")
log "${TIMES[-1]}"
[ "$rc" = 7 ] || fail "--cmd boot exited $rc, expected 7 (console: $WORK/out2/console.log)"
grep -q '^from guest: [0-9]' "$WORK/out2/hello.txt" 2>/dev/null \
    || fail "hello.txt did not come back through the 9p share"

log "capabilities inside the guest: MEMORY_ATTRIBUTES=$attrs GUEST_MEMFD=$gmem VM_TYPES=$types"
for line in "${TIMES[@]}"; do log "time: $line"; done
[ -n "${GMEMFUZZ_SELFTEST_DIR:-}" ] || rm -rf "$WORK"
echo "selftest: PASS"
