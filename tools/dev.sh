#!/usr/bin/env bash
# Set up, build, demo and test mphost on Debian 12 (run as root, or with sudo
# available for the package step).
#
#   tools/dev.sh demo    install dependencies, build, run examples/demo.py under mphost
#   tools/dev.sh test    install dependencies, build, run every test
#   tools/dev.sh setup | build | install PREFIX
#   tools/dev.sh package install dependencies, build, write build/mphost_<version>_amd64.deb
#   tools/dev.sh fuzz [SECONDS]  build the libFuzzer targets (clang, ASan+UBSan) in
#                        build-fuzz and run each for SECONDS (default 20) over its corpus
#   tools/dev.sh sanitize  build build-asan (ASan+UBSan) and build-tsan (TSan), run the C++
#                        tests under both and the shim suite under ASan+UBSan; any report fails
#   tools/dev.sh sanitize-ci  the part of it that `test` runs (see run_sanitizers_ci)
#
# Every step is idempotent: packages already installed are not fetched again
# and the build is incremental.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${MPHOST_BUILD_DIR:-$root/build}
jobs=$(nproc 2>/dev/null || echo 2)

packages=(
  build-essential cmake git
  python3.11 libpython3.11-dev libpython3.11-testsuite
  libboost-dev pybind11-dev libgtest-dev libexpat1-dev zlib1g-dev
  python3-pytest python3-numpy python3-psutil python3-matplotlib
  python3-tqdm python3-joblib python3-dask
  python3-sklearn python3-torch python3-pebble python3-distributed
  python3-pandas python3-scipy python3-cloudpickle
  clang libclang-rt-14-dev
  openmpi-bin libopenmpi-dev python3-mpi4py
)

setup() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "mphost: installing ${missing[*]}"
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

build() {
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build_dir" -j"$jobs"
}

# The fuzz targets of tests/fuzz (docs/reliability/fuzzing.md): each runs
# for a bounded time over a scratch copy of its seed corpus (the tree's
# corpus is only read); a crash leaves its input in build-fuzz/artifacts and
# fails the step. Then the Python-side pre-authentication loop under mphost.
fuzz() {
  local seconds=${1:-20} fuzz_dir=${MPHOST_FUZZ_BUILD_DIR:-$root/build-fuzz} status=0 target dict
  cmake -S "$root" -B "$fuzz_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DMPHOST_FUZZ=ON -DMPHOST_BUILD_TESTS=OFF >/dev/null
  cmake --build "$fuzz_dir" --target mphost_fuzzers -j"$jobs"
  mkdir -p "$fuzz_dir/artifacts"
  for target in fuzz_channel_frame fuzz_block_ref fuzz_stream_frame fuzz_pickle_reader \
                fuzz_handshake fuzz_forkserver_request fuzz_preauth; do
    rm -rf "$fuzz_dir/work/$target" && mkdir -p "$fuzz_dir/work/$target"
    dict=$root/tests/fuzz/dict/${target#fuzz_}.dict
    local args=(-max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$fuzz_dir/artifacts/$target-")
    [ -f "$dict" ] && args+=(-dict="$dict")
    echo "-- $target, ${seconds}s"
    if "$fuzz_dir/bin/$target" "${args[@]}" "$fuzz_dir/work/$target" "$root/tests/fuzz/corpus/$target" \
        >"$fuzz_dir/work/$target.log" 2>&1; then
      grep -E '^stat::number_of_executed_units|^Done' "$fuzz_dir/work/$target.log" || true
    else
      tail -40 "$fuzz_dir/work/$target.log"
      echo "$target: FAILED (input saved under $fuzz_dir/artifacts)"
      status=1
    fi
  done
  if [ -x "$build_dir/bin/mphost" ]; then
    echo "-- preauth_loop.py under mphost"
    "$build_dir/bin/mphost" "$root/tests/fuzz/preauth_loop.py" --seconds "$((seconds < 15 ? seconds : 15))" || status=1
  else
    echo "-- preauth_loop.py: not run ($build_dir/bin/mphost is not built)"
  fi
  return $status
}

demo() {
  setup
  build
  "$build_dir/bin/mphost" "$root/examples/demo.py"
}

# Sanitizer builds (CMakePresets.json: asan, tsan). Every report goes to a
# file under build-<preset>/sanitizer-reports, so that one written by any
# process (a forked child, a spawned worker) is counted, not only by the
# test's own; a run passes only when its tests pass and no file is there.
# The options and suppressions are explained in tools/sanitizers/README.md.
sanitizer_build() {
  (cd "$root" && cmake --preset "$1" >/dev/null && cmake --build --preset "$1" -j"$jobs")
}

sanitizer_env() {
  local reports=$1 supp=$root/tools/sanitizers
  rm -rf "$reports" && mkdir -p "$reports"
  # Python objects from malloc, not from pymalloc's mmap'd arenas: ASan then
  # sees a Python object's use after free, and LeakSanitizer scans the
  # objects, so C++ state owned by a live object is not taken for a leak.
  export PYTHONMALLOC=malloc
  export ASAN_OPTIONS="log_path=$reports/asan:allocator_may_return_null=1:detect_leaks=1:handle_segv=0:handle_sigbus=0:strict_string_checks=0"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
  export TSAN_OPTIONS="log_path=$reports/tsan:suppressions=$supp/tsan.supp:die_after_fork=0:halt_on_error=0:second_deadlock_stack=1"
}

sanitizer_reports() {
  # A report is an ERROR (ASan, LSan), a runtime error (UBSan) or a TSan
  # WARNING; ASan's warnings that an allocation failed are not (Python asks
  # for impossible sizes on purpose and gets MemoryError).
  local reports=$1 f found=0
  for f in "$reports"/*; do
    [ -e "$f" ] || continue
    grep -qE 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|WARNING: ThreadSanitizer' "$f" || continue
    found=$((found + 1))
    echo "---- sanitizer report $f" && head -c 20000 "$f"
  done
  echo "sanitizer reports in $reports: $found"
  return $((found > 0))
}

# ctest under one sanitizer build, without the shim suite (run by itself
# below) and the install test (it builds the .deb, not instrumented code).
sanitizer_ctest() (
  local dir=$root/build-$1
  sanitizer_env "$dir/sanitizer-reports"
  local status=0
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 600 \
    -E 'mphost_shim_tests|mphost_install_test' || status=1
  sanitizer_reports "$dir/sanitizer-reports" || status=1
  return $status
)

sanitizer_shim() (
  local dir=$root/build-asan
  sanitizer_env "$dir/sanitizer-reports-shim"
  local status=0
  (cd "$root" && "$dir/bin/mphost" -m pytest -q -p no:cacheprovider "$@") || status=1
  sanitizer_reports "$dir/sanitizer-reports-shim" || status=1
  return $status
)

# The whole thing: both builds, every C++ test under both, the whole shim
# suite under ASan+UBSan. About an hour on 2 cores from a clean checkout.
run_sanitizers() {
  local status=0
  echo "== Sanitizers: build build-asan (AddressSanitizer + UndefinedBehaviorSanitizer) and build-tsan (ThreadSanitizer)"
  sanitizer_build asan && sanitizer_build tsan || return 1
  echo "== Sanitizers: C++ tests under ASan+UBSan"
  sanitizer_ctest asan || status=1
  echo "== Sanitizers: C++ tests under TSan"
  sanitizer_ctest tsan || status=1
  echo "== Sanitizers: the shim suite under ASan+UBSan, with the instrumented launcher"
  sanitizer_shim tests/shim || status=1
  return $status
}

# CI's share (budget 25 min on 2 cores without ccache): the ASan+UBSan
# build, every C++ test under it, and the in-process shim modules under the
# instrumented launcher (the _fork/_spawn/_forkserver variants repeat the
# same code paths under other start methods and would triple the time);
# TSan builds and runs the core's tests (ipc, runtime), where the threads
# live: the embed and api tests run Python, which TSan cannot see into.
sanitizer_shim_ci_tests=(
  tests/shim/test_garbage_recv.py tests/shim/test_connection.py tests/shim/test_queues.py
  tests/shim/test_simple_queue.py tests/shim/test_synchronize.py tests/shim/test_pool.py
  tests/shim/test_managers.py tests/shim/test_shared_memory.py tests/shim/test_sharedctypes.py
  tests/shim/test_queue_port.py tests/shim/test_listener.py
)

run_sanitizers_ci() {
  local status=0
  sanitizer_build asan || return 1
  sanitizer_ctest asan || status=1
  sanitizer_shim "${sanitizer_shim_ci_tests[@]}" || status=1
  (cd "$root" && cmake --preset tsan >/dev/null &&
     cmake --build --preset tsan -j"$jobs" --target mphost_ipc_tests mphost_runtime_tests) || return 1
  (
    sanitizer_env "$root/build-tsan/sanitizer-reports"
    local t tsan_status=0
    for t in mphost_ipc_tests mphost_runtime_tests; do
      timeout 900 "$root/build-tsan/bin/$t" --gtest_brief=1 || tsan_status=1
    done
    sanitizer_reports "$root/build-tsan/sanitizer-reports" || tsan_status=1
    exit $tsan_status
  ) || status=1
  return $status
}

run_tests() {
  setup
  build
  local status=0
  echo "== Our own code: how much of the shim repeats the stdlib's multiprocessing"
  local overlap="$root/../shared/tools/stdlib_overlap"
  if [ -x "$overlap" ]; then
    (cd "$root" && "$overlap" --max-body 20 --max-similar 3 --max-total 10) || status=1
  else
    echo "stdlib_overlap not found at $overlap: check not run"
  fi
  echo "== C++ unit tests (ctest)"
  ctest --test-dir "$build_dir" --output-on-failure -j"$jobs" -E mphost_shim_tests || status=1
  echo "== Tests of the conformance harness"
  (cd "$root" && /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/conformance) || status=1
  echo "== Tests of the benchmark harness (CPU accounting, targets, report)"
  (cd "$root" && /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/bench) || status=1
  echo "== CPython's suites under mphost: the CI subset against the expected results"
  (cd "$root" && /usr/bin/python3 tools/conformance/run_conformance.py --ci --mphost "$build_dir/bin/mphost") || status=1
  echo "== Benchmarks, quick: every scenario runs and checks its result under both interpreters"
  (cd "$root" && /usr/bin/python3 tools/bench/run_bench.py --quick --mphost "$build_dir/bin/mphost") || status=1
  echo "== Sanitizers: C++ tests and the in-process shim tests under ASan+UBSan, the core tests under TSan"
  (run_sanitizers_ci) || status=1
  echo "== Python tests of the shim, under mphost"
  (cd "$root" && "$build_dir/bin/mphost" -m pytest -q -p no:cacheprovider tests/shim) || status=1
  echo "== Security: permissions, names, another user, nothing unpickled before authentication (under mphost)"
  (cd "$root" && "$build_dir/bin/mphost" -m pytest -q -p no:cacheprovider tests/security) || status=1
  echo "== Scale limits, bounded: 300 fork + 100 spawn children each with a queue, descriptors per queue, 2.5 GiB message"
  (cd "$root" && MPHOST_SCALE_TESTS=1 "$build_dir/bin/mphost" -m pytest -q -p no:cacheprovider -rs tests/shim/test_scale.py) || status=1
  echo "== Fault injection: SIGKILL at seeded random points, 8 trials per row (FAULTS_SEED=<printed seed> replays)"
  (cd "$root" && FAULTS_TRIALS=8 "$build_dir/bin/mphost" -m pytest -q -p no:cacheprovider tests/faults) || status=1
  echo "== Real clients (scikit-learn, scipy, torch, pebble, dask.distributed, pandas, joblib): under mphost and stock"
  (cd "$root" && "$build_dir/bin/mphost" -m pytest -q -p no:cacheprovider tests/clients) || status=1
  echo "== joblib's own tests under mphost: test_parallel and test_memmapping"
  local joblib_tests=/usr/lib/python3/dist-packages/joblib/test
  # Deselected: test_multithreaded_parallel_termination_resource_tracker_silent
  # races inside joblib (two threads ending one shared loky executor can both
  # unregister the same temporary files, and loky's tracker prints a KeyError);
  # it fails under stock /usr/bin/python3 too (2 runs in 30 on this machine).
  (cd "$root" && "$build_dir/bin/mphost" -m pytest -q -p no:cacheprovider \
    -k 'not test_multithreaded_parallel_termination_resource_tracker_silent' \
    "$joblib_tests/test_parallel.py" "$joblib_tests/test_memmapping.py") || status=1
  echo "== Fuzzing: each libFuzzer target of tests/fuzz for 20 s over its corpus (ASan+UBSan)"
  fuzz 20 || status=1
  return $status
}

case "${1:-}" in
  setup) setup ;;
  build) setup; build ;;
  demo) demo ;;
  test) run_tests ;;
  install)
    [ -n "${2:-}" ] || { echo "usage: tools/dev.sh install PREFIX" >&2; exit 2; }
    setup; build; cmake --install "$build_dir" --prefix "$2" ;;
  package) setup; build; cmake --build "$build_dir" --target package ;;
  fuzz) setup; fuzz "${2:-20}" ;;
  sanitize) setup; run_sanitizers ;;
  sanitize-ci) setup; run_sanitizers_ci ;;
  *) echo "usage: tools/dev.sh {demo|test|setup|build|install PREFIX|package|fuzz [SECONDS]|sanitize|sanitize-ci}" >&2; exit 2 ;;
esac
