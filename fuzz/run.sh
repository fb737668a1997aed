#!/usr/bin/env bash
# The main job: fuzz real KVM's guest_memfd against the reference model (target diff_kvm).
# Installs cargo-fuzz if it is missing, checks /dev/kvm, and runs libFuzzer with the seed
# corpus. Findings land in fuzz/artifacts/<target>/: libFuzzer's crash-<sha1> (raw input)
# and, beside it, crash-<sha1>.txt, the program that ran as text with the VM type and
# profile it ran on (replay it: `gmemfuzz replay fuzz/artifacts/diff_kvm/crash-<sha1>.txt`).
# New inputs go to fuzz/corpus/<target>/; the seeds in corpus/<target> (text programs) are
# read, never written.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET] [-- extra libFuzzer flags]
#   SECONDS  how long to fuzz (0 = until stopped; default 0)
#   TARGET   diff_kvm (default), model, or diff_sim
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-0}
target=${2:-diff_kvm}
shift $(( $# > 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz (once)"
    cargo install cargo-fuzz --locked
fi
if [ "$target" = diff_kvm ] && ! { [ -r /dev/kvm ] && [ -w /dev/kvm ]; }; then
    echo "fuzz/run.sh: /dev/kvm is missing or not readable and writable by $(id -un):" >&2
    echo "  diff_kvm needs real KVM with guest_memfd. Try: fuzz/run.sh $seconds model" >&2
    exit 2
fi
mkdir -p "$here/corpus/$target" "$here/artifacts/$target"
seeds="$here/../corpus/$target"
cd "$here"
# cargo-fuzz passes -Zsanitizer flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run -O "$target" "corpus/$target" "$seeds" -- \
    -max_total_time="$seconds" -artifact_prefix="artifacts/$target/" -print_final_stats=1 "$@"
