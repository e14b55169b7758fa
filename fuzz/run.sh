#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30) and fails on the first crash.
#
#   fuzz/run.sh 30
#
# The committed seeds (fuzz/corpus/<target>/) are copied to a scratch corpus first, so a run
# never adds libFuzzer's finds to the repository; a crash leaves its input in
# fuzz/artifacts/<target>/ (git-ignored) and the script exits non-zero. cargo-fuzz needs
# nightly flags (-Z sanitizer); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_FUZZ:-$PWD/target}"

targets=$(cargo fuzz list)
# Build every target first, so the time budget below is spent fuzzing, not compiling.
cargo fuzz build

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $targets; do
    mkdir -p "$scratch/$target"
    if [ -d "corpus/$target" ]; then
        cp -R "corpus/$target/." "$scratch/$target/"
    fi
    echo "== fuzz $target for ${seconds}s"
    log="$scratch/$target.log"
    if ! cargo fuzz run "$target" "$scratch/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|Done [0-9]+ runs)" "$log" || tail -n 3 "$log"
done
echo "== every fuzz target ran ${seconds}s without a crash"
echo "fuzz: $(echo $targets | wc -w) passed, 0 failed"
