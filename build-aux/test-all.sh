#!/bin/sh
# Install dependencies, build from a clean tree and run every test:
#   1. -Wall -Wextra -Werror build, `make check` (unit, integration, fuzz smoke)
#   2. ASan+UBSan build, unit tests once more
# Ends with one line: "N passed, N failed, N skipped".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh build-aux/deps.sh || { echo "deps.sh failed"; echo "0 passed, 1 failed"; exit 1; }
jobs=$(nproc 2>/dev/null || echo 2)
status=0
rm -rf _build
mkdir -p _build/werror _build/san
( autoreconf -fi >_build/autoreconf.log 2>&1 ) || { cat _build/autoreconf.log; echo "0 passed, 1 failed"; exit 1; }

step() { echo "=== $*"; }

step "build with -Werror"
( cd _build/werror && ../../configure --enable-werror -q >configure.log 2>&1 &&
  make -j"$jobs" >make.log 2>&1 ) || { tail -50 _build/werror/configure.log _build/werror/make.log 2>/dev/null; echo "0 passed, 1 failed"; exit 1; }
step "make check"
( cd _build/werror && make -j"$jobs" check ) || status=1

step "ASan+UBSan build, unit tests"
( cd _build/san && ../../configure --enable-sanitizers -q >configure.log 2>&1 &&
  make -j"$jobs" -C storage >make.log 2>&1 &&
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  make -j"$jobs" -C tests/unit check ) || status=1

python3 "$top/build-aux/summarize.py" _build || status=1
exit $status
