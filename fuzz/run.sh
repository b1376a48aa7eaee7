#!/usr/bin/env bash
# Runs every fuzz target in fuzz/fuzz_targets for SECONDS_PER_TARGET seconds (default 30),
# starting from its committed corpus (fuzz/corpus/TARGET), and prints per target the
# executions, executions per second and corpus size. Exits non-zero if any target crashed
# (a panic, a broken invariant, a timeout or a sanitizer report); the input that did it is
# left in fuzz/artifacts/TARGET/ and its path is printed.
#
# Works on a stable toolchain: cargo-fuzz passes -Z flags (sanitizer, coverage), which
# RUSTC_BOOTSTRAP=1 lets stable rustc accept. Installs cargo-fuzz (pinned, --locked) if it is
# missing. Never writes to the committed corpus: new inputs go to fuzz/target/run-corpus/
# (set FUZZ_GROW_CORPUS=1 to add them to fuzz/corpus/ instead, then `cargo fuzz cmin`).
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail

SECONDS_PER_TARGET=${1:-30}
shift || true
CARGO_FUZZ_VERSION=0.13.2
# One input taking longer than this is a hang (e.g. a loop driven by a size field).
TIMEOUT_SECS=10

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${targets[*]}"
cargo fuzz build

# Longest input libFuzzer may make, per target: a form must be able to cross MAX_FORM_BYTES
# (16 KiB); an fMP4 stream needs room for an init segment and a few fragments.
max_len() {
    case "$1" in
        form) echo 20000 ;;
        fmp4) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

failed=()
summary=()
for t in "${targets[@]}"; do
    committed="corpus/$t"
    scratch="target/run-corpus/$t"
    mkdir -p "$committed" "$scratch" "artifacts/$t"
    dirs=("$scratch" "$committed")
    if [ "${FUZZ_GROW_CORPUS:-0}" = 1 ]; then
        dirs=("$committed")
    fi
    log="target/run-$t.log"
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
    status=0
    cargo fuzz run "$t" "${dirs[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout="$TIMEOUT_SECS" \
        -max_len="$(max_len "$t")" -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    bytes=$(find "${dirs[@]}" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    count=$(find "${dirs[@]}" -type f | wc -l)
    line=$(printf '%-12s executions %-9s exec/s %-7s corpus %s files, %s KiB' \
        "$t" "${execs:-?}" "${rate:-?}" "$count" "$((bytes / 1024))")
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        line="$line  CRASHED"
        echo "---- $t failed (exit $status); last lines of $here/$log:"
        tail -40 "$log"
        grep -h "Test unit written to" "$log" || true
    fi
    echo "$line"
    summary+=("$line")
done

echo "== summary (${SECONDS_PER_TARGET}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== crashed: ${failed[*]}"
    exit 1
fi
echo "== no crash in ${#targets[@]} targets"
