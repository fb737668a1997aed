#!/bin/bash -eu
# Builds the fuzz targets ClusterFuzzLite can run (no /dev/kvm on its runners, so not
# diff_kvm) into $OUT, each with its seed corpus (<target>_seed_corpus.zip) from corpus/.
cd "$SRC/gmemfuzz/fuzz"
for target in model diff_sim; do
    cargo fuzz build -O "$target"
    cp "target/x86_64-unknown-linux-gnu/release/$target" "$OUT/"
    (cd "$SRC/gmemfuzz/corpus/$target" && zip -q -j "$OUT/${target}_seed_corpus.zip" ./*)
done
