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
b=_build/ci
rm -rf "$b"
mkdir -p "$b/werror" "$b/san"
( autoreconf -fi >"$b/autoreconf.log" 2>&1 ) || { cat "$b/autoreconf.log"; echo "0 passed, 1 failed"; exit 1; }

step() { echo "=== $*"; }

step "build with -Werror"
( cd "$b/werror" && ../../../configure --enable-werror -q >configure.log 2>&1 &&
  make -j"$jobs" >make.log 2>&1 ) || { tail -50 "$b/werror/configure.log" "$b/werror/make.log" 2>/dev/null; echo "0 passed, 1 failed"; exit 1; }
step "make check"
( cd "$b/werror" && make -j"$jobs" -k check ) || status=1

step "Dovecot 2.4 (Debian 13 chroot, make check-dovecot24)"
if [ "$(id -u)" = 0 ]; then
	( cd "$b/werror" && make check-dovecot24 ) || status=$((status + 1))
	# count its results with the others
	chroot24=${LMBOX_CHROOT24:-/var/cache/lmbox/trixie-chroot}
	if [ -d "$chroot24/build/lmbox/tests" ]; then
		mkdir -p "$b/dovecot24"
		( cd "$chroot24/build/lmbox" && find tests -name '*.trs' -o -name '*.log' |
		  tar -cf - -T - ) | tar -xf - -C "$b/dovecot24"
	fi
else
	echo "SKIP: check-dovecot24 needs root (debootstrap, chroot)"
fi

step "ASan+UBSan build, unit tests"
( cd "$b/san" && ../../../configure --enable-sanitizers -q >configure.log 2>&1 &&
  make -j"$jobs" -C storage >make.log 2>&1 &&
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  make -j"$jobs" -C tests/unit check ) || status=$((status + 1))

python3 "$top/build-aux/summarize.py" "$b" "$status" || exit 1
exit $status
