#!/usr/bin/env bash
# The main job: fuzz real KVM's guest_memfd against the reference model (target diff_kvm).
# Installs cargo-fuzz if it is missing and runs libFuzzer with the seed corpus: on the host's
# KVM where it has guest_memfd, else inside the lane (`gmemfuzz lane --libfuzzer`: a lane
# kernel under QEMU, taken from GMEMFUZZ_LANE_SEED or the cache, or built; extra arguments
# then go to `gmemfuzz lane`). Findings land in fuzz/artifacts/<target>/: libFuzzer's crash-<sha1> (raw input)
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
# cargo-fuzz passes -Zsanitizer flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
mkdir -p "$here/corpus/$target" "$here/artifacts/$target"
seeds="$here/../corpus/$target"

if [ "$target" = diff_kvm ]; then
    # Which real KVM: the host's where it has guest_memfd, else the lane's (`gmemfuzz host`
    # asks; its line says what the host lacks).
    echo "fuzz/run.sh: building gmemfuzz to ask the host's KVM what it offers"
    (cd "$here/.." && cargo build --release -q --bin gmemfuzz)
    gmemfuzz="$here/../target/release/gmemfuzz"
    if ! host=$("$gmemfuzz" host 2>&1); then
        echo "fuzz/run.sh: $host"
        echo "fuzz/run.sh: diff_kvm runs in the lane instead: a lane kernel (Linux 7.2, VM types 0 and 1) under QEMU, found, seeded or built"
        # Prebuilt lane kernels beside the checkout (as this project's machines keep them).
        if [ -z "${GMEMFUZZ_LANE_SEED:-}" ] && [ -d "$here/../../shared/lane-kernels" ]; then
            export GMEMFUZZ_LANE_SEED="$(cd "$here/../../shared/lane-kernels" && pwd)"
        fi
        (cd "$here" && cargo fuzz build -O diff_kvm)
        [ "$seconds" != 0 ] || seconds=$((100 * 365 * 86400))
        exec "$gmemfuzz" lane --libfuzzer "$here/target/x86_64-unknown-linux-gnu/release/diff_kvm" \
            --corpus "$here/corpus/diff_kvm" --artifacts "$here/artifacts/diff_kvm" \
            --seconds "$seconds" --out "$here/lane-out" --kcov off "$@"
    fi
    echo "fuzz/run.sh: $host"
fi
cd "$here"
exec cargo fuzz run -O "$target" "corpus/$target" "$seeds" -- \
    -max_total_time="$seconds" -artifact_prefix="artifacts/$target/" -print_final_stats=1 "$@"
