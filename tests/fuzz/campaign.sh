#!/usr/bin/env bash
# A longer fuzzing campaign: every target for SECONDS (default 600), PARALLEL
# at a time (default 2), nice'd, each from a scratch copy of its seed corpus.
# Prints one line per target: executions, final coverage, crashes.
#   tests/fuzz/campaign.sh [SECONDS] [PARALLEL]     (after tools/dev.sh fuzz built build-fuzz)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${1:-600}
parallel=${2:-2}
fuzz_dir=${MPHOST_FUZZ_BUILD_DIR:-$root/build-fuzz}
out=${MPHOST_FUZZ_CAMPAIGN_DIR:-$fuzz_dir/campaign}
targets=(fuzz_channel_frame fuzz_block_ref fuzz_stream_frame fuzz_pickle_reader
         fuzz_handshake fuzz_forkserver_request fuzz_preauth)
mkdir -p "$out/artifacts"

run_one() {
  local target=$1 dict=$root/tests/fuzz/dict/${1#fuzz_}.dict
  rm -rf "$out/$target" && mkdir -p "$out/$target"
  local args=(-max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$out/artifacts/$target-")
  [ -f "$dict" ] && args+=(-dict="$dict")
  nice -n 19 "$fuzz_dir/bin/$target" "${args[@]}" "$out/$target" "$root/tests/fuzz/corpus/$target" \
    >"$out/$target.log" 2>&1
  echo "$?" >"$out/$target.rc"
}

running=0
for target in "${targets[@]}"; do
  run_one "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

status=0
printf '%-26s %14s %8s %8s %8s\n' target executions cov ft crashes
for target in "${targets[@]}"; do
  log=$out/$target.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
  ft=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  crashes=$(ls "$out/artifacts" | grep -c "^$target-" || true)
  rc=$(cat "$out/$target.rc")
  [ "$rc" = 0 ] && [ "$crashes" = 0 ] || status=1
  printf '%-26s %14s %8s %8s %8s\n' "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes"
done
exit $status
