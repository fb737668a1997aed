#!/usr/bin/env bash
# build-kernel.sh — build the gmemfuzz test kernel as a bzImage, for booting
# under QEMU/TCG with KVM inside.
#
# Why: the host kernel lacks KVM_X86_SW_PROTECTED_VM / private memory
# attributes; the lane kernel has them. Three recipes:
#   - GMEMFUZZ_KERNEL_VERSION=7.2 (default): Debian's linux-source-7.2 from the
#     unstable suite (7.3: linux-source-7.3 from experimental, 7.3-rc7), fetched with a private apt configuration (the system's
#     package sources are not touched) and unpacked into the cache;
#   - GMEMFUZZ_KERNEL_VERSION=6.12: Debian's linux-source-6.12 (bookworm),
#     installed with apt-get;
#   - GMEMFUZZ_KERNEL_SRC=DIR: the user's own kernel tree, left untouched: the
#     build happens in a directory of its own (O=), kept between runs so that a
#     rebuild after an edit is incremental; the result is cached by the tree's
#     state (git HEAD + diff, or the sizes and times of its files).
# Each recipe configures x86_64_defconfig + kvm_guest.config + kernel.config
# (+ kernel-lean.config in the lean configuration, + kernel-kasan.config if
# GMEMFUZZ_KASAN=1, + kernel-lockdep.config if GMEMFUZZ_LOCKDEP=1), checks every
# option of the fragments survived olddefconfig, and builds. A second run with
# the same key prints the cached path at once.
# Two configurations, each its own cache key: "lean" (kernel-lean.config drops
# what the lane's QEMU never offers: a build about half as long, a boot seconds
# long) and "full" (kernel.config alone, what the seeds of ../shared/lane-kernels
# were built with). Unless GMEMFUZZ_LANE_CONFIG names one, a kernel of either
# that is cached or seeded serves (lean first), and a build makes the lean one.
#
# Env: GMEMFUZZ_LANE_CACHE (default $HOME/.cache/gmemfuzz-lane),
#      GMEMFUZZ_LANE_CACHED_ONLY=1 (print the cached bzImage or exit 3; build nothing),
#      GMEMFUZZ_LANE_LIST=1 (print every cached bzImage built from a Debian recipe, one a
#        line, and exit; builds of a user's tree are left out: no regression pins them; so
#        is a full kernel whose lean twin is cached, unless GMEMFUZZ_LANE_CONFIG is set),
#      GMEMFUZZ_KERNEL_VERSION, GMEMFUZZ_KERNEL_SRC, GMEMFUZZ_KASAN=1,
#      GMEMFUZZ_LOCKDEP=1, GMEMFUZZ_JOBS (default nproc),
#      GMEMFUZZ_SW_RMP=1 (the SNP-like software platform: patches/sw-rmp-SERIES.patch applied
#        to a packaged source, which a user's tree must already carry, + kernel-sw-rmp.config),
#      GMEMFUZZ_LANE_CONFIG=lean|full (only that configuration is looked up or built),
#      GMEMFUZZ_LANE_SEED=DIR (read-only prebuilt kernels, one directory per cache key
#        as this script leaves them in $CACHE/out: a seed whose name is the key this
#        recipe and fragment give for the source its stamp records is copied into the
#        cache, and nothing is fetched or built for it; one that does not match is named
#        with the reason).
# Output: progress on stderr; the bzImage path is the last line of stdout.
set -euo pipefail

LANE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${GMEMFUZZ_LANE_CACHE:-$HOME/.cache/gmemfuzz-lane}"
VERSION="${GMEMFUZZ_KERNEL_VERSION:-7.2}"
TREE="${GMEMFUZZ_KERNEL_SRC:-}"
JOBS="${GMEMFUZZ_JOBS:-$(nproc)}"
CACHED_ONLY="${GMEMFUZZ_LANE_CACHED_ONLY:-0}"
# Bump when the recipe below changes in a way that changes the kernel.
RECIPE=1

log() { printf '[build-kernel] %s\n' "$*" >&2; }
die() { printf '[build-kernel] ERROR: %s\n' "$*" >&2; exit 1; }

# --- the configurations, their fragments, and the cache key they give a source -
case "${GMEMFUZZ_LANE_CONFIG:-}" in
    "") CONFIGS=(lean full) ;;
    lean|full) CONFIGS=("$GMEMFUZZ_LANE_CONFIG") ;;
    *) die "GMEMFUZZ_LANE_CONFIG=$GMEMFUZZ_LANE_CONFIG: the configurations are lean and full" ;;
esac
# What a build makes: the first configuration looked up.
BUILD_CONFIG="${CONFIGS[0]}"
# frags_of CONFIG: the fragments of that configuration (with the detectors asked for), one a line.
frags_of() {
    echo "$LANE_DIR/kernel.config"
    [ "$1" = lean ] && echo "$LANE_DIR/kernel-lean.config"
    [ "${GMEMFUZZ_KASAN:-0}" = 1 ] && echo "$LANE_DIR/kernel-kasan.config"
    [ "${GMEMFUZZ_LOCKDEP:-0}" = 1 ] && echo "$LANE_DIR/kernel-lockdep.config"
    [ "${GMEMFUZZ_SW_RMP:-0}" = 1 ] && echo "$LANE_DIR/kernel-sw-rmp.config"
    return 0
}
for c in lean full; do
    while IFS= read -r f; do [ -f "$f" ] || die "fragment $f missing"; done < <(frags_of "$c")
done
mapfile -t frags < <(frags_of "$BUILD_CONFIG")
# key_of CONFIG SRC_ID: what a kernel built by this recipe from SRC_ID in CONFIG is cached as.
# The full configuration's key is what it was before the lean one existed, so the seeds match.
key_of() {
    local f; mapfile -t f < <(frags_of "$1")
    { echo "recipe=$RECIPE $2"; cat "${f[@]}" | grep -E '^(CONFIG_|# CONFIG_)' | sort; } \
        | sha256sum | cut -c1-16
}
# keys_of SRC_ID: "CONFIG=KEY" for each configuration looked up, in order.
keys_of() {
    local c; for c in "${CONFIGS[@]}"; do echo "$c=$(key_of "$c" "$1")"; done
}

# seed_cache [PKG]: copies into the cache every seed (of PKG, or of any Debian
# recipe) that this recipe and fragment would build, saying why each other one is
# left; nothing is fetched. A seed's stamp records its source ("src=PKG=VERSION").
seed_cache() {
    local want="${1:-}" dir stamp name src key keys
    [ -n "${GMEMFUZZ_LANE_SEED:-}" ] || return 0
    [ -d "$GMEMFUZZ_LANE_SEED" ] || { log "GMEMFUZZ_LANE_SEED=$GMEMFUZZ_LANE_SEED is not a directory; no seed used"; return 0; }
    for stamp in "$GMEMFUZZ_LANE_SEED"/*/stamp; do
        [ -f "$stamp" ] || continue
        dir="$(dirname "$stamp")"; name="$(basename "$dir")"
        src="$(grep -o ' src=[^ ]*' "$stamp" | head -1 | cut -c2-)" || true
        [ -n "$src" ] || { log "seed $dir: its stamp names no Debian source (src=...): not used"; continue; }
        if [ -n "$want" ] && [ "${src#src=$want=}" = "$src" ]; then continue; fi
        keys="$(keys_of "$src")"
        if ! grep -qx "[a-z]*=$name" <<<"$keys"; then
            log "seed $dir ($src): not used: this recipe ($RECIPE) and fragments give that source the keys $(echo $keys) (another fragment or recipe built it)"
            continue
        fi
        key="$name"
        for f in bzImage config stamp; do
            [ -f "$dir/$f" ] || { log "seed $dir: no $f: not used"; continue 2; }
        done
        [ -f "$CACHE/out/$key/bzImage" ] && [ -f "$CACHE/out/$key/stamp" ] && continue
        log "seed $dir ($src) matches this recipe and the $(grep -x "[a-z]*=$name" <<<"$keys" | cut -d= -f1) configuration: copying it into the cache"
        mkdir -p "$CACHE/out"
        rm -rf "$CACHE/out/$key.tmp"
        cp -r "$dir" "$CACHE/out/$key.tmp" && chmod -R u+w "$CACHE/out/$key.tmp" \
            && rm -rf "$CACHE/out/$key" && mv "$CACHE/out/$key.tmp" "$CACHE/out/$key" \
            || die "copying seed $dir into $CACHE/out failed"
    done
}

# has_lean_twin DIR: whether DIR holds a full kernel whose source and detectors a cached lean
# kernel also has (found by the keys both give that source with each set of detectors).
has_lean_twin() {
    local name src k l
    name="$(basename "$1")"
    src="$(grep -o ' src=[^ ]*' "$1/stamp" | head -1 | cut -c2-)" || return 1
    for k in 0 1; do for l in 0 1; do
        [ "$(GMEMFUZZ_KASAN=$k GMEMFUZZ_LOCKDEP=$l key_of full "$src")" = "$name" ] || continue
        [ -f "$CACHE/out/$(GMEMFUZZ_KASAN=$k GMEMFUZZ_LOCKDEP=$l key_of lean "$src")/bzImage" ] && return 0
    done; done
    return 1
}

if [ "${GMEMFUZZ_LANE_LIST:-0}" = 1 ]; then
    seed_cache
    for stamp in "$CACHE"/out/*/stamp; do
        dir="$(dirname "$stamp")"
        [ -f "$stamp" ] && [ -f "$dir/bzImage" ] && grep -q ' src=' "$stamp" || continue
        # One kernel per source and detectors, the one a lookup takes (the lean one), so that
        # the lane test boots a release once; with GMEMFUZZ_LANE_CONFIG set, every one.
        if [ "${#CONFIGS[@]}" = 2 ] && has_lean_twin "$dir"; then
            log "not listed: $dir (full configuration): a lean kernel of the same source is cached"
            continue
        fi
        echo "$dir/bzImage"
    done
    exit 0
fi


as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"; fi
}

# Installs what is missing of the packages named (or exits 3 with CACHED_ONLY).
need_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$CACHED_ONLY" = 1 ]; then
        log "not built: packages missing (${missing[*]})"
        exit 3
    fi
    log "installing: ${missing[*]}"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

# Fetches one package from Debian unstable into $CACHE/sid without touching the
# system's package sources (platform-facts.md, "Newer kernels and QEMU").
# Prints the path of the unpacked root.
fetch_from_sid() {
    local pkg="$1" sid="$CACHE/sid" mirror
    local root="$sid/root-$pkg"
    if [ -f "$root/.gmemfuzz-unpacked" ]; then echo "$root"; return 0; fi
    if [ "$CACHED_ONLY" = 1 ]; then log "not built: $pkg not fetched yet"; exit 3; fi
    mirror="$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
    [ -n "$mirror" ] || mirror="$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*debian\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)"
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    mkdir -p "$sid/lists/partial" "$sid/archives/partial" "$sid/debs"
    # Experimental holds only what is newer than unstable (7.3's release candidates), on top of it.
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
        "$mirror" sid "$mirror" experimental > "$sid/sid.list"
    local opts=(-o "Dir::Etc::sourcelist=$sid/sid.list" -o Dir::Etc::sourceparts=-
                -o "Dir::State::Lists=$sid/lists" -o "Dir::Cache::archives=$sid/archives"
                -o APT::Sandbox::User=root)
    log "fetching $pkg from Debian unstable ($mirror)"
    apt-get "${opts[@]}" update -qq >&2 || die "apt-get update of the unstable suite failed"
    (cd "$sid/debs" && apt-get "${opts[@]}" download "$pkg" >&2) || die "apt-get download $pkg failed"
    local deb
    deb="$(ls -t "$sid/debs/${pkg}"_*.deb | head -1)"
    rm -rf "$root"; mkdir -p "$root"
    dpkg -x "$deb" "$root"
    dpkg-deb -f "$deb" Version > "$root/.gmemfuzz-version"
    touch "$root/.gmemfuzz-unpacked"
    echo "$root"
}

# --- packages ---------------------------------------------------------------
need_packages flex bison bc libelf-dev libssl-dev cpio make gcc

# --- source: sets SRC (the tree make runs in), SRC_ID (what it is) ----------
if [ -n "$TREE" ]; then
    [ -f "$TREE/Makefile" ] && [ -d "$TREE/virt/kvm" ] \
        || die "GMEMFUZZ_KERNEL_SRC=$TREE is not a kernel tree (no Makefile or virt/kvm/)"
    SRC="$(cd "$TREE" && pwd -P)"
    # The tree's state: what a rebuild depends on.
    if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
        state="$( { git -C "$SRC" rev-parse HEAD; git -C "$SRC" diff HEAD; \
                    git -C "$SRC" ls-files --others --exclude-standard -s; } | sha256sum | cut -c1-16)"
    else
        state="$(find "$SRC" -type f ! -path '*/.git/*' -printf '%P %s %T@\n' | sort | sha256sum | cut -c1-16)"
    fi
    SRC_ID="tree=$SRC state=$state"
else
    case "$VERSION" in
        6.12)
            need_packages linux-source-6.12
            SRC_PKG=linux-source-6.12
            SRC_VER="$(dpkg-query -W -f='${Version}' "$SRC_PKG")"
            SRC_TAR="/usr/src/${SRC_PKG}.tar.xz" ;;
        7.2|7.3)
            SRC_PKG=linux-source-$VERSION
            root="$(fetch_from_sid "$SRC_PKG")"
            SRC_VER="$(cat "$root/.gmemfuzz-version")"
            SRC_TAR="$root/usr/src/${SRC_PKG}.tar.xz" ;;
        *) die "GMEMFUZZ_KERNEL_VERSION=$VERSION names no recipe (known: 7.2, 7.3, 6.12; or give GMEMFUZZ_KERNEL_SRC=DIR)" ;;
    esac
    [ -f "$SRC_TAR" ] || die "$SRC_TAR missing although $SRC_PKG is installed"
    SRC_ID="src=$SRC_PKG=$SRC_VER"
fi
# The SNP-like software platform: a patch of the source, which is part of what a kernel is.
PATCH=""
if [ "${GMEMFUZZ_SW_RMP:-0}" = 1 ]; then
    if [ -n "$TREE" ]; then
        [ -f "$SRC/arch/x86/kvm/sw_rmp.c" ] \
            || die "GMEMFUZZ_SW_RMP=1 with GMEMFUZZ_KERNEL_SRC=$TREE: the tree lacks the software platform; apply $LANE_DIR/patches/sw-rmp-<series>.patch to it first"
    else
        PATCH="$LANE_DIR/patches/sw-rmp-$VERSION.patch"
        [ -f "$PATCH" ] || die "GMEMFUZZ_SW_RMP=1: no software platform patch for Linux $VERSION (have: $(cd "$LANE_DIR/patches" && ls sw-rmp-*.patch | sed 's/sw-rmp-//; s/.patch//' | xargs))"
        SRC_ID="$SRC_ID patch=sw-rmp-$(sha256sum "$PATCH" | cut -c1-16)"
    fi
fi

# --- cache key ----------------------------------------------------------------
KEY="$(key_of "$BUILD_CONFIG" "$SRC_ID")"
OUT="$CACHE/out/$KEY"
# cached: prints the cached kernel of the first configuration that has one, and exits.
cached() {
    local entry out
    for entry in $(keys_of "$SRC_ID"); do
        out="$CACHE/out/${entry#*=}"
        if [ -f "$out/bzImage" ] && [ -f "$out/stamp" ]; then
            log "cached (${entry%%=*} configuration): key ${entry#*=} ($SRC_ID): $(cat "$out/stamp")"
            echo "$out/bzImage"
            exit 0
        fi
    done
}
cached
if [ -z "$TREE" ]; then
    seed_cache "$SRC_PKG"
    cached
    for stamp in "${GMEMFUZZ_LANE_SEED:-/nonexistent}"/*/stamp; do
        grep -q " src=$SRC_PKG=" "$stamp" 2>/dev/null || continue
        grep -q " $SRC_ID " "$stamp" \
            || log "seed $(dirname "$stamp") is of $(grep -o ' src=[^ ]*' "$stamp" | cut -c6-), the recipe now fetches ${SRC_ID#src=}: not used"
    done
fi
if [ "$CACHED_ONLY" = 1 ]; then
    log "not built yet (keys $(echo $(keys_of "$SRC_ID")))"
    exit 3
fi
log "building the $BUILD_CONFIG configuration (key $KEY): no kernel of $SRC_ID in the cache or the seeds has the keys $(echo $(keys_of "$SRC_ID"))"
# A user's tree builds in one directory per (tree, fragment), kept across edits so
# that make rebuilds only what changed; a packaged source in one per key.
if [ -n "$TREE" ]; then
    BUILD="$CACHE/build/tree-$( { echo "$SRC"; cat "${frags[@]}"; } | sha256sum | cut -c1-16)"
else
    BUILD="$CACHE/build/$KEY"
fi
# Serialize builds in one build directory (other builds go on); re-check once locked.
mkdir -p "$CACHE/build"
exec 9>"$BUILD.lock"
flock 9 || die "cannot lock $BUILD.lock"
cached

# --- unpack a packaged source once (under a lock of its own) ------------------
if [ -z "$TREE" ]; then
  SRC_DIR="$SRC_VER${PATCH:++${SRC_ID##* patch=}}"
  SRC="$CACHE/src/$SRC_DIR"
  exec 8>"$CACHE/src-$SRC_DIR.lock"
  flock 8 || die "cannot lock $CACHE/src-$SRC_DIR.lock"
  if [ ! -f "$SRC/.gmemfuzz-untarred" ]; then
    log "untarring $SRC_TAR -> $SRC"
    rm -rf "$SRC"; mkdir -p "$SRC"
    tar -xf "$SRC_TAR" -C "$SRC" --strip-components=1
    if [ -n "$PATCH" ]; then
        log "applying $PATCH"
        patch -d "$SRC" -p1 -s --no-backup-if-mismatch < "$PATCH" || die "$PATCH does not apply to $SRC_VER"
    fi
    touch "$SRC/.gmemfuzz-untarred"
  fi
  exec 8>&-
fi

# --- configure --------------------------------------------------------------
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
# The estimate: objects the last build of this configuration made (kept in its stamp), or
# what a lane build makes.
# Stamps before the lean configuration have no config= and are full builds.
expect="$(grep -h " config=$BUILD_CONFIG " "$CACHE"/out/*/stamp 2>/dev/null | grep -o ' objects=[0-9]*' | cut -d= -f2 | sort -n | tail -1 || true)"
case "$BUILD_CONFIG" in
    lean) expect="${expect:-1530}"; took="9-10 min on 2 quiet cores, 20-25 under load" ;;
    full) expect="${expect:-3000}"; took="15-20 min on 2 quiet cores, an hour under load" ;;
esac
log "building bzImage with -j$JOBS (log: $LOG); a first build makes about $expect objects: $took"
start=$(date +%s)
make -C "$SRC" O="$BUILD" -j"$JOBS" bzImage > "$LOG" 2>&1 &
make_pid=$!
while kill -0 "$make_pid" 2>/dev/null; do
    for _ in $(seq 30); do kill -0 "$make_pid" 2>/dev/null && sleep 1; done
    kill -0 "$make_pid" 2>/dev/null || break
    made=$(grep -c '^  CC ' "$LOG" || true); spent=$(( $(date +%s) - start ))
    left="?"; [ "$made" -gt 0 ] && [ "$made" -lt "$expect" ] && left="$(( spent * (expect - made) / made / 60 + 1 )) min"
    log "building: $made of about $expect objects compiled in $(( spent / 60 )) min $(( spent % 60 )) s; about $left left"
done
if ! wait "$make_pid"; then
    tail -40 "$LOG" >&2
    die "kernel build failed; full log: $LOG"
fi
objects=$(grep -c '^  CC ' "$LOG" || true)
log "build took $(( $(date +%s) - start )) s ($objects objects)"

mkdir -p "$OUT"
cp "$BUILD/arch/x86/boot/bzImage" "$OUT/bzImage.tmp"
cp "$BUILD/.config" "$OUT/config"
cp "$BUILD/System.map" "$OUT/System.map"
cp "$BUILD/vmlinux" "$OUT/vmlinux"
mv "$OUT/bzImage.tmp" "$OUT/bzImage"
echo "key=$KEY $SRC_ID config=$BUILD_CONFIG built=$(date -u +%FT%TZ) seconds=$(( $(date +%s) - start )) objects=$objects" > "$OUT/stamp"
echo "$OUT/bzImage"
