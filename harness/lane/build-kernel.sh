#!/usr/bin/env bash
# build-kernel.sh — build the gmemfuzz test kernel (Linux 6.12 from Debian's
# linux-source-6.12) as a bzImage, for booting under QEMU/TCG with KVM inside.
#
# Why: the host kernel lacks KVM_X86_SW_PROTECTED_VM / private memory
# attributes; 6.12 has them. This script is idempotent and cached:
#   - installs missing Debian packages with apt-get (needs root or sudo),
#   - untars the source once into the cache dir,
#   - configures x86_64_defconfig + kvm_guest.config + kernel.config
#     (+ kernel-kasan.config if GMEMFUZZ_KASAN=1,
#      + kernel-lockdep.config if GMEMFUZZ_LOCKDEP=1),
#   - checks every option of the fragment survived olddefconfig,
#   - builds bzImage in a build dir keyed on sha256(fragment + source version).
# A second run with the same key prints the cached path at once.
#
# Env: GMEMFUZZ_LANE_CACHE (default $HOME/.cache/gmemfuzz-lane),
#      GMEMFUZZ_LANE_CACHED_ONLY=1 (print the cached bzImage or exit 3; build nothing),
#      GMEMFUZZ_KASAN=1, GMEMFUZZ_LOCKDEP=1, GMEMFUZZ_JOBS (default nproc).
# Output: progress on stderr; the bzImage path is the last line of stdout.
set -euo pipefail

LANE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${GMEMFUZZ_LANE_CACHE:-$HOME/.cache/gmemfuzz-lane}"
SRC_PKG=linux-source-6.12
JOBS="${GMEMFUZZ_JOBS:-$(nproc)}"
# Bump when the recipe below changes in a way that changes the kernel.
RECIPE=1

log() { printf '[build-kernel] %s\n' "$*" >&2; }
die() { printf '[build-kernel] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"; fi
}

# --- packages ---------------------------------------------------------------
need_pkgs=(linux-source-6.12 flex bison bc libelf-dev libssl-dev cpio make gcc)
missing=()
for p in "${need_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$p")
done
# GMEMFUZZ_LANE_CACHED_ONLY=1: print the cached bzImage or exit 3, installing and building nothing.
CACHED_ONLY="${GMEMFUZZ_LANE_CACHED_ONLY:-0}"
if [ "${#missing[@]}" -gt 0 ] && [ "$CACHED_ONLY" = 1 ]; then
    log "not built: packages missing (${missing[*]})"
    exit 3
fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
fi
SRC_VER="$(dpkg-query -W -f='${Version}' "$SRC_PKG")"
SRC_TAR="/usr/src/${SRC_PKG}.tar.xz"
[ -f "$SRC_TAR" ] || die "$SRC_TAR missing although $SRC_PKG is installed"

# --- effective fragment and cache key ---------------------------------------
frags=("$LANE_DIR/kernel.config")
[ "${GMEMFUZZ_KASAN:-0}" = 1 ] && frags+=("$LANE_DIR/kernel-kasan.config")
[ "${GMEMFUZZ_LOCKDEP:-0}" = 1 ] && frags+=("$LANE_DIR/kernel-lockdep.config")
for f in "${frags[@]}"; do [ -f "$f" ] || die "fragment $f missing"; done

KEY="$( { echo "recipe=$RECIPE src=$SRC_PKG=$SRC_VER"; \
          cat "${frags[@]}" | grep -E '^(CONFIG_|# CONFIG_)' | sort; } \
        | sha256sum | cut -c1-16)"
OUT="$CACHE/out/$KEY"
cached() {
    if [ -f "$OUT/bzImage" ] && [ -f "$OUT/stamp" ]; then
        log "cached: key $KEY ($SRC_PKG $SRC_VER): $(cat "$OUT/stamp")"
        echo "$OUT/bzImage"
        exit 0
    fi
}
cached
if [ "$CACHED_ONLY" = 1 ]; then
    log "not built yet (key $KEY)"
    exit 3
fi
# Serialize builds sharing this cache; re-check once we hold the lock.
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 || die "cannot lock $CACHE/.lock"
cached

# --- source -----------------------------------------------------------------
SRC="$CACHE/src/$SRC_VER"
if [ ! -f "$SRC/.gmemfuzz-untarred" ]; then
    log "untarring $SRC_TAR -> $SRC"
    rm -rf "$SRC"; mkdir -p "$SRC"
    tar -xf "$SRC_TAR" -C "$SRC" --strip-components=1
    touch "$SRC/.gmemfuzz-untarred"
fi

# --- configure --------------------------------------------------------------
BUILD="$CACHE/build/$KEY"
mkdir -p "$BUILD"
cat "${frags[@]}" > "$BUILD/gmemfuzz-fragment.config"
log "configuring in $BUILD (key $KEY)"
make -s -C "$SRC" O="$BUILD" x86_64_defconfig kvm_guest.config >&2
(cd "$SRC" && scripts/kconfig/merge_config.sh -m -O "$BUILD" \
    "$BUILD/.config" "$BUILD/gmemfuzz-fragment.config") >&2
make -s -C "$SRC" O="$BUILD" olddefconfig >&2

# Verify every option requested by the fragment is in the final .config.
bad=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*)
            grep -qxF "$line" "$BUILD/.config" || {
                log "option dropped: wanted '$line', got '$(grep -E "^(# )?${line%%=*}[= ]" "$BUILD/.config" || echo absent)'"
                bad=1; } ;;
        "# CONFIG_"*" is not set")
            opt="${line#\# }"; opt="${opt%% *}"
            if grep -qE "^${opt}=" "$BUILD/.config"; then
                log "option should be off: $(grep -E "^${opt}=" "$BUILD/.config")"; bad=1
            fi ;;
    esac
done < "$BUILD/gmemfuzz-fragment.config"
[ "$bad" = 0 ] || die "fragment options were dropped by Kconfig (missing dependency?); see $BUILD/.config"
log "config verified: all fragment options present"

# --- build ------------------------------------------------------------------
LOG="$BUILD/build.log"
log "building bzImage with -j$JOBS (log: $LOG)"
start=$(date +%s)
if ! make -C "$SRC" O="$BUILD" -j"$JOBS" bzImage > "$LOG" 2>&1; then
    tail -40 "$LOG" >&2
    die "kernel build failed; full log: $LOG"
fi
log "build took $(( $(date +%s) - start )) s"

mkdir -p "$OUT"
cp "$BUILD/arch/x86/boot/bzImage" "$OUT/bzImage.tmp"
cp "$BUILD/.config" "$OUT/config"
cp "$BUILD/System.map" "$OUT/System.map"
cp "$BUILD/vmlinux" "$OUT/vmlinux"
mv "$OUT/bzImage.tmp" "$OUT/bzImage"
echo "key=$KEY src=$SRC_PKG=$SRC_VER built=$(date -u +%FT%TZ) seconds=$(( $(date +%s) - start ))" > "$OUT/stamp"
echo "$OUT/bzImage"
