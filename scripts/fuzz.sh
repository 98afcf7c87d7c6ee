#!/usr/bin/env bash
# Fuzzes the parsers that take untrusted input with cargo-fuzz (libFuzzer), each target
# for a bounded time, and fails if any input makes one panic or crash.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 300        # 5 minutes per target
#
# Targets live in fuzz/fuzz_targets (search_filter: MLflow filter and order_by parsing;
# artifact_path: artifact path parsing, joining and prefix stripping). Seeds are in
# fuzz/corpus/<target>; each run works on a temporary copy, so the tree stays clean. A
# crashing input is kept under fuzz/artifacts/<target>/ and printed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PER_TARGET="${1:-60}"
case "$PER_TARGET" in
    '' | *[!0-9]*) echo "usage: $0 [seconds per target]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz builds with -Z sanitizer flags; this machine has only the stable toolchain,
# which accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

status=0
for target in $(cargo fuzz list); do
    work="$(mktemp -d -t "cairn-fuzz-$target.XXXXXX")"
    cp -R "fuzz/corpus/$target/." "$work/"
    echo "==> fuzzing $target for ${PER_TARGET}s"
    if ! cargo fuzz run "$target" "$work" -- \
        -max_total_time="$PER_TARGET" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1; then
        echo "!! $target crashed; the input is under fuzz/artifacts/$target/" >&2
        status=1
    fi
    rm -rf "$work"
done
exit "$status"
