#!/usr/bin/env bash
# The C++ faces as a user gets them: install the build tree to a scratch
# prefix, build every examples/cpp/*/ out of tree against it with
# find_package(mphost) and run what it builds; then make the Debian package,
# unpack it into a scratch root (dpkg -x) and build and run one example
# against that root, which also shows that the installed CMake files are
# relocatable.
#
#   tests/install/install_test.sh BUILD_DIR [SOURCE_DIR]
set -euo pipefail

build_dir=$(cd "$1" && pwd)
source_dir=$(cd "${2:-$(dirname "${BASH_SOURCE[0]}")/../..}" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/mphost-install-test.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
unset MPHOST_EXECUTABLE
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

fail() { echo "install test: $*" >&2; exit 1; }

# Builds example $1 against prefix $2 in $3, then runs every executable it made.
build_and_run() {
  local example=$1 prefix=$2 out=$3 ran=0 program
  echo "== $(basename "$example") against $prefix"
  cmake -S "$example" -B "$out" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >"$out.configure.log" 2>&1 ||
    { cat "$out.configure.log"; fail "configuring $(basename "$example") failed"; }
  cmake --build "$out" >"$out.build.log" 2>&1 || { cat "$out.build.log"; fail "building $(basename "$example") failed"; }
  for program in "$out"/*; do
    [ -f "$program" ] && [ -x "$program" ] || continue
    timeout 120 "$program" >"$out.run.log" 2>&1 || { cat "$out.run.log"; fail "$program failed"; }
    cat "$out.run.log"
    # A child started as the prefix's own launcher, never another one.
    if grep -q "children start as" "$out.run.log"; then
      grep -q "children start as $prefix/bin/mphost" "$out.run.log" || fail "$program used another mphost"
    fi
    ran=$((ran + 1))
  done
  [ "$ran" -gt 0 ] || fail "$(basename "$example") built no program"
}

echo "== install to a prefix"
prefix=$scratch/prefix
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
[ -f "$prefix/lib/cmake/mphost/mphostConfig.cmake" ] || fail "no mphostConfig.cmake in $prefix"
[ -x "$prefix/bin/mphost" ] || fail "no launcher in $prefix"
[ -f "$prefix/share/mphost/python/multiprocessing/__init__.py" ] || fail "no shim in $prefix"
[ -x "$prefix/bin/mphost-inspect" ] || fail "no mphost-inspect in $prefix"
"$prefix/bin/mphost-inspect" --help | grep -q "^usage: mphost-inspect" || fail "mphost-inspect does not run"

examples=0
for example in "$source_dir"/examples/cpp/*/; do
  [ -f "$example/CMakeLists.txt" ] || continue
  build_and_run "${example%/}" "$prefix" "$scratch/build-$(basename "$example")"
  examples=$((examples + 1))
done
[ "$examples" -gt 0 ] || fail "no example under $source_dir/examples/cpp"

echo "== the Debian package, unpacked into a scratch root"
cpack -G DEB --config "$build_dir/CPackConfig.cmake" -B "$scratch/deb" >"$scratch/cpack.log" 2>&1 ||
  { cat "$scratch/cpack.log"; fail "cpack failed"; }
deb=$(ls "$scratch"/deb/mphost_*_amd64.deb)
echo "$(basename "$deb")"
dpkg-deb -f "$deb" Depends | grep -q libpython3.11 || fail "the package does not depend on libpython3.11"
dpkg -x "$deb" "$scratch/root"
build_and_run "$source_dir/examples/cpp/embed_pool" "$scratch/root/usr" "$scratch/build-from-deb"
echo "install test: $examples example(s) from the prefix and one from the package passed"
