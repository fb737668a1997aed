#!/usr/bin/env bash
# boot.sh --kernel BZIMAGE --initrd CPIO [--out DIR] [--timeout SECS]
#         [--mem 2G] [--smp N] [--accel tcg|kvm] [--cmd 'SHELL CMD'] [--append 'KERNEL ARGS']
#         [--share DIR] [--quiet] [-- EXTRA QEMU ARGS...]
#
# Boots the gmemfuzz test kernel under QEMU/TCG (-cpu max exposes SVM+NPT, so
# KVM_AMD works inside the guest) with DIR shared over virtio-9p (tag "out",
# mounted at /out by the initramfs /init of make-initramfs.sh).
# Why: lets the host run the fuzzer against a 6.12 kernel that has
# KVM_X86_SW_PROTECTED_VM, and get results back through DIR.
#
# --share DIR also offers DIR over virtio-9p (tag "share"), for the command to mount, e.g. at
# the same path, so that the absolute paths cargo compiles into test binaries resolve inside.
# --cmd is passed base64-encoded as gmemfuzz.cmd_b64= (no quoting problems);
# without it the guest runs /run.sh or the initramfs' BINARY.
# The console goes to DIR/console.log (and to stdout unless --quiet).
# -nodefaults drops QEMU's default NIC, CD-ROM and VGA (their drivers cost
# seconds of boot under TCG); the serial port is then given explicitly.
# Exit status: the guest command's status read from DIR/exit_status;
#   124 = timeout, 125 = the guest stopped without writing a status
#   (kernel panic, init died, QEMU failed to start).
# DIR defaults to a fresh temp dir; its path is printed on stderr.
set -euo pipefail

log() { printf '[boot] %s\n' "$*" >&2; }
die() { printf '[boot] ERROR: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

KERNEL="" INITRD="" OUT="" TIMEOUT=600 MEM=2G SMP=1 CMD="" APPEND="" QUIET=0 ACCEL=tcg SHARE=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) KERNEL="${2:?--kernel needs a value}"; shift 2 ;;
        --initrd) INITRD="${2:?--initrd needs a value}"; shift 2 ;;
        --out) OUT="${2:?--out needs a value}"; shift 2 ;;
        --timeout) TIMEOUT="${2:?--timeout needs a value}"; shift 2 ;;
        --mem) MEM="${2:?--mem needs a value}"; shift 2 ;;
        --smp) SMP="${2:?--smp needs a value}"; shift 2 ;;
        --accel) ACCEL="${2:?--accel needs a value}"; shift 2 ;;
        --cmd) CMD="${2?--cmd needs a value}"; shift 2 ;;
        --append) APPEND="${2?--append needs a value}"; shift 2 ;;
        --share) SHARE="${2:?--share needs a value}"; shift 2 ;;
        --quiet) QUIET=1; shift ;;
        -h|--help) usage ;;
        --) shift; EXTRA=("$@"); break ;;
        *) log "unknown argument: $1"; usage ;;
    esac
done
[ -n "$KERNEL" ] || die "--kernel BZIMAGE is required"
[ -n "$INITRD" ] || die "--initrd CPIO is required"
[ -f "$KERNEL" ] || die "kernel '$KERNEL' not found"
[ -f "$INITRD" ] || die "initrd '$INITRD' not found"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
[[ "$SMP" =~ ^[0-9]+$ ]] || die "--smp must be a number"
case "$ACCEL" in
    # KVM: the host's CPU, SVM or VMX included, for a nested guest (gmemfuzz lane picks it
    # only where kvm_amd or kvm_intel has nested on and the kernel has KVM_AMD or KVM_INTEL:
    # harness/src/lane/accel.rs). TCG: -cpu max offers SVM with NPT under emulation.
    kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
    tcg) ACCEL_ARGS=(-accel tcg -cpu "${GMEMFUZZ_QEMU_CPU:-max}") ;;
    *) die "--accel must be tcg or kvm" ;;
esac

# GMEMFUZZ_QEMU: another qemu-system-x86_64 (e.g. one unpacked from a newer Debian suite:
# it then reads its firmware from the usr/share beside it, not the system's).
QEMU="${GMEMFUZZ_QEMU:-qemu-system-x86_64}"
DATA=()
if [ -n "${GMEMFUZZ_QEMU:-}" ]; then
    [ -x "$QEMU" ] || die "GMEMFUZZ_QEMU=$QEMU is not an executable"
    root="$(cd "$(dirname "$QEMU")/../.." && pwd)"
    for d in "$root/usr/share/qemu" "$root/usr/share/seabios"; do
        [ -d "$d" ] && DATA+=(-L "$d")
    done
elif ! command -v "$QEMU" >/dev/null; then
    log "installing qemu-system-x86"
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq >&2
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >&2 \
        || die "apt-get install qemu-system-x86 failed"
fi

if [ -z "$OUT" ]; then
    OUT="$(mktemp -d "${TMPDIR:-/tmp}/gmemfuzz-boot.XXXXXX")"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT/exit_status" "$OUT/console.log"
log "out dir: $OUT"

# no_timer_check: under TCG on a loaded host the boot-time IO-APIC timer check can fail
# and panic ("IO-APIC + timer doesn't work!", seen here); virtual machines skip it.
KARGS="console=ttyS0 panic=-1 loglevel=6 no_timer_check"
if [ -n "$CMD" ]; then
    KARGS="$KARGS gmemfuzz.cmd_b64=$(printf '%s' "$CMD" | base64 -w0)"
fi
[ -z "$APPEND" ] || KARGS="$KARGS $APPEND"
# GMEMFUZZ_KERNEL_ARGS: more kernel parameters for every boot (experiments, e.g. mitigations=off).
[ -z "${GMEMFUZZ_KERNEL_ARGS:-}" ] || KARGS="$KARGS $GMEMFUZZ_KERNEL_ARGS"

# GMEMFUZZ_QEMU_CPU: another CPU model under TCG, for experiments (it must offer SVM with NPT).
qemu_cmd=("$QEMU" ${DATA[@]+"${DATA[@]}"} "${ACCEL_ARGS[@]}" -m "$MEM" -smp "$SMP"
    -kernel "$KERNEL" -initrd "$INITRD" -append "$KARGS"
    -nographic -no-reboot
    -nodefaults -serial stdio
    -virtfs "local,path=$OUT,mount_tag=out,security_model=none")
[ -z "$SHARE" ] || qemu_cmd+=(-virtfs "local,path=$SHARE,mount_tag=share,security_model=none")
qemu_cmd+=(${EXTRA[@]+"${EXTRA[@]}"})

start=$(date +%s.%N)
set +e
if [ "$QUIET" = 1 ]; then
    timeout -k 10 "$TIMEOUT" "${qemu_cmd[@]}" </dev/null > "$OUT/console.log" 2>&1
    qrc=$?
else
    timeout -k 10 "$TIMEOUT" "${qemu_cmd[@]}" </dev/null 2>&1 | tee "$OUT/console.log"
    qrc=${PIPESTATUS[0]}
fi
set -e
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')

for pat in 'BUG:' 'WARNING:' 'Oops' 'Kernel panic' 'general protection fault' \
           'KASAN' 'possible circular locking' 'lockdep'; do
    if grep -qF "$pat" "$OUT/console.log"; then
        log "note: console.log contains '$pat'"
    fi
done

if [ -f "$OUT/exit_status" ] && status="$(tr -d ' \n' < "$OUT/exit_status")" \
   && [[ "$status" =~ ^[0-9]+$ ]]; then
    log "guest exit status $status after ${elapsed}s"
    exit $(( status & 255 ))
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    log "TIMEOUT after ${elapsed}s (limit ${TIMEOUT}s); console: $OUT/console.log"
    exit 124
fi
log "guest stopped without an exit status after ${elapsed}s (qemu status $qrc); console: $OUT/console.log"
tail -20 "$OUT/console.log" >&2 || true
exit 125
