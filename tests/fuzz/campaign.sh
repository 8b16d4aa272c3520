#!/usr/bin/env bash
# A fuzz campaign: one target for a given amount of CPU time (issue 18, docs/reliability.md).
#
#   tests/fuzz/campaign.sh TARGET [CPU_SECONDS] [WORK_DIR]
#   nice -n 19 tests/fuzz/campaign.sh sync_server 3600      # one CPU-hour, beside other work
#
# Builds TARGET with the nightly toolchain and AddressSanitizer (`cargo +nightly fuzz build
# -O`), copies its committed corpus to WORK_DIR/TARGET/corpus (the committed corpus is never
# written), and runs the fuzzer until the process has used CPU_SECONDS (default 3600) of CPU
# time, measured from /proc, not the wall clock, so a campaign run beside other work is as
# long as one run alone. It then stops the fuzzer (SIGINT: libFuzzer prints its final stats)
# and prints one line: target, commit, CPU seconds, wall seconds, executions, coverage
# (edges and features), corpus size and crashes, also appended to WORK_DIR/campaigns.tsv.
# A crash stops the fuzzer at once; its input is in WORK_DIR/TARGET/artifacts/.
#
# A campaign may run in pieces: the CPU time and executions of earlier runs in the same
# WORK_DIR (WORK_DIR/TARGET/cpu_seconds, kept up to date every few seconds, so a run that is
# killed still counts) are added, the corpus carries over, and a run stops once the total
# reaches CPU_SECONDS.
#
# To keep what the campaign found, merge it into the committed corpus (only inputs that add
# coverage are copied):  BIN -merge=1 corpus/TARGET WORK_DIR/TARGET/corpus
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
    echo "usage: $0 TARGET [CPU_SECONDS] [WORK_DIR]" >&2
    exit 2
fi
target=$1
budget=${2:-3600}
work=${3:-${TMPDIR:-/tmp}/cophr-fuzz}
case "$budget" in '' | *[!0-9]*)
    echo "CPU_SECONDS must be a whole number of seconds, not '$budget'" >&2
    exit 2
    ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if [ ! -f "fuzz_targets/$target.rs" ]; then
    echo "no fuzz target '$target'; the targets are:" $(basename -s .rs fuzz_targets/*.rs) >&2
    exit 2
fi

cargo +nightly fuzz build -O "$target"
bin="${CARGO_TARGET_DIR:-$here/target}/x86_64-unknown-linux-gnu/release/$target"
[ -x "$bin" ] || { echo "built, but no binary at $bin" >&2; exit 1; }

# What a target needs beyond the defaults (as in tests/tests/fuzz_smoke.rs).
extra=()
case "$target" in
    dicom_header) extra+=(-malloc_limit_mb=128) ;;
esac

dir="$work/$target"
mkdir -p "$dir/corpus" "$dir/artifacts"
cp -r "corpus/$target/." "$dir/corpus/"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# What earlier runs of this campaign spent: CPU seconds and executions.
read -r spent_before execs_before 2>/dev/null <"$dir/cpu_seconds" || true
spent_before=${spent_before:-0}
execs_before=${execs_before:-0}
run=1
while [ -e "$dir/log.$run" ]; do run=$((run + 1)); done
log="$dir/log.$run"
last_execs() { grep -oE '^#[0-9]+' "$log" 2>/dev/null | tail -1 | tr -d '#' || true; }

start=$(date +%s)
"$bin" -rss_limit_mb=2048 "${extra[@]}" -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" "$dir/corpus" >"$log" 2>&1 &
pid=$!
tick=$(getconf CLK_TCK)
cpu_of() { awk -v t="$tick" '{ print int(($14 + $15) / t) }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu=0
while kill -0 "$pid" 2>/dev/null; do
    now=$(cpu_of "$pid")
    [ "$now" -gt 0 ] && cpu=$now
    n=$(last_execs)
    echo "$((spent_before + cpu)) $((execs_before + ${n:-0}))" >"$dir/cpu_seconds.tmp" &&
        mv "$dir/cpu_seconds.tmp" "$dir/cpu_seconds"
    if [ "$((spent_before + cpu))" -ge "$budget" ]; then
        kill -INT "$pid" 2>/dev/null || true
        break
    fi
    sleep 5
done
status=0
wait "$pid" || status=$?
wall=$(($(date +%s) - start))

stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
execs=$(stat number_of_executed_units)
execs=${execs:-$(last_execs)}
execs=$((execs_before + ${execs:-0}))
cpu=$((spent_before + cpu))
echo "$cpu $execs" >"$dir/cpu_seconds"
last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
corpus=$(find "$dir/corpus" -type f | wc -l)
crashes=$(find "$dir/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | wc -l)
line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$(date -u +%F)" "$target" "$commit" \
    "$cpu" "$wall" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$crashes")
echo "date target commit cpu_s wall_s executions edges features corpus crashes"
echo "$line"
echo "$line" >>"$work/campaigns.tsv"
if [ "$crashes" -gt 0 ]; then
    echo "crash inputs in $dir/artifacts/ (exit status $status); reproduce with: $bin FILE" >&2
    exit 1
fi
