#!/usr/bin/env bash
# Checks dropkit as users get it, each mode in a temporary directory of its own (ctest runs them
# in parallel with everything else):
#   check.sh version BUILD SOURCE  the CLI's --version, the Python package's __version__ and
#                                  setup.py's version equal CMakeLists.txt's project() version
#   check.sh install BUILD SOURCE  cmake --install into a temporary prefix, then the README's
#                                  library example built there as an outside project would
#   check.sh deb BUILD SOURCE      cpack's .deb: its dependencies and files, then the same
#                                  checks on its contents unpacked (dpkg-deb -x)
# The example is built twice: with CMake (find_package(dropkit), tests/install/consumer) and
# with g++ and pkg-config.
set -euo pipefail
mode=$1
build=$(realpath "$2")
source=$(realpath "$3")
work=$(mktemp -d "${TMPDIR:-/tmp}/dropkit-$mode.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() {
  echo "check.sh $mode: $*" >&2
  exit 1
}

# The version CMake was configured with (project() in CMakeLists.txt).
expected=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
[ -n "$expected" ] || fail "no CMAKE_PROJECT_VERSION in $build/CMakeCache.txt"
python_built=$(sed -n 's/^DROPKIT_BUILD_PYTHON:BOOL=//p' "$build/CMakeCache.txt")

# check_versions CLI PYTHONPATH: the CLI and (when built) the Python package say $expected.
check_versions() {
  local out
  out=$("$1" --version) || fail "$1 --version exited $?"
  [ "$out" = "dropkit $expected" ] || fail "$1 --version says '$out', not 'dropkit $expected'"
  if [ "$python_built" = ON ]; then
    out=$(PYTHONPATH=$2 /usr/bin/python3 -c 'import dropkit; print(dropkit.__version__)')
    [ "$out" = "$expected" ] || fail "dropkit.__version__ from $2 is '$out', not '$expected'"
  fi
}

# check_example PREFIX: the README's example, built against the dropkit installed in PREFIX.
check_example() {
  local prefix=$1 example=$source/examples/dropout_layer.cpp expected_out out
  expected_out=$("$build/example_dropout_layer")
  cmake -S "$source/tests/install/consumer" -B consumer -G Ninja -DEXAMPLE="$example" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >consumer.log 2>&1 ||
    { cat consumer.log >&2; fail "find_package(dropkit) in $prefix failed"; }
  cmake --build consumer >>consumer.log 2>&1 || { cat consumer.log >&2; fail "CMake build failed"; }
  out=$(consumer/dropout_layer) || fail "the example built with CMake exited $?"
  [ "$out" = "$expected_out" ] || fail "the example built with CMake printed '$out'"

  local flags
  flags=$(PKG_CONFIG_PATH="$(dirname "$(find "$prefix" -name dropkit.pc)")" \
    pkg-config --cflags --libs dropkit) || fail "pkg-config finds no dropkit in $prefix"
  # shellcheck disable=SC2086  # the flags are words
  g++ -std=c++20 "$example" -o example_pc $flags || fail "g++ with pkg-config's flags failed"
  out=$(./example_pc) || fail "the example built with pkg-config exited $?"
  [ "$out" = "$expected_out" ] || fail "the example built with pkg-config printed '$out'"
}

case $mode in
  version)
    check_versions "$build/dropkit" "$build/python"
    out=$(/usr/bin/python3 "$source/setup.py" --version 2>/dev/null | tail -n 1)
    [ "$out" = "$expected" ] || fail "setup.py --version says '$out', not '$expected'"
    ;;
  install)
    cmake --install "$build" --prefix "$work/prefix" >install.log ||
      fail "cmake --install failed"
    check_versions "$work/prefix/bin/dropkit" "$work/prefix/lib/python3/dist-packages"
    check_example "$work/prefix"
    ;;
  deb)
    cpack --config "$build/CPackConfig.cmake" -B "$work/cpack" >cpack.log 2>&1 ||
      { cat cpack.log >&2; fail "cpack failed"; }
    deb=$(echo "$work"/cpack/dropkit_"$expected"_*.deb)
    [ -f "$deb" ] || fail "cpack made no dropkit_${expected}_*.deb"
    depends=$(dpkg-deb -f "$deb" Depends)
    for p in libdnnl2 libdnnl-dev zlib1g libfmt9 libgomp1 nlohmann-json3-dev; do
      [[ ", $depends," == *", $p"[\ ,]* ]] || fail "Depends lacks $p: $depends"
    done
    if [ "$python_built" = ON ]; then
      [[ $depends == *python3-numpy* ]] || fail "Depends lacks python3-numpy: $depends"
    fi
    dpkg-deb -x "$deb" root
    for f in usr/bin/dropkit usr/lib/libdropkit.a usr/include/dropkit/version.h \
      usr/include/dropkit/dropout/dropout.h usr/lib/cmake/dropkit/dropkitConfig.cmake \
      usr/lib/pkgconfig/dropkit.pc; do
      [ -f "root/$f" ] || fail "the package has no /$f"
    done
    check_versions root/usr/bin/dropkit "$work/root/usr/lib/python3/dist-packages"
    check_example "$work/root/usr"
    ;;
  *) fail "unknown mode (version, install or deb)" ;;
esac
echo "check.sh $mode: dropkit $expected checked"
