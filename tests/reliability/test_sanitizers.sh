#!/bin/sh
# The Dovecot integration tests (pop3, imap, index loss, concurrency, lmtp,
# doveadm, no-body-read) once more with storage/, plugin/ and pop3/ built with
# ASan+UBSan (configure --enable-sanitizers, in ./san-build) and every
# Dovecot process running with the ASan runtime preloaded (san_run.py):
# every script must pass and no ASan/UBSan report file may appear.
# Exit 77 when libasan is not installed.
set -u
src=${LMBOX_TOP_SRCDIR:?}
here=$src/tests/reliability
b=$(pwd)/san-build
logdir=$(pwd)/san-logs
jobs=$(nproc 2>/dev/null || echo 2)
scripts=${RELIABILITY_SAN_TESTS:-"test_pop3.py test_imap.py test_index_loss.py test_concurrency.py test_lmtp.py test_doveadm.py test_no_body_read.py"}

t0=$(date +%s)
mkdir -p "$b"
if [ ! -f "$b/Makefile" ]; then
	( cd "$b" && "$src/configure" --enable-sanitizers -q >configure.log 2>&1 ) ||
		{ echo "FAIL: configure --enable-sanitizers"; tail -30 "$b/configure.log"; exit 1; }
fi
( cd "$b" && make -j"$jobs" -C storage >make.log 2>&1 && make -j"$jobs" -C plugin >>make.log 2>&1 &&
  make -j"$jobs" -C pop3 >>make.log 2>&1 ) || { echo "FAIL: sanitizer build"; tail -30 "$b/make.log"; exit 1; }
so=$b/plugin/.libs/lib20_lmbox_plugin.so
libasan=$(ldd "$so" | awk '/libasan/ {print $3; exit}')
[ -n "$libasan" ] && [ -f "$libasan" ] || { echo "SKIP: plugin not linked with libasan (no ASan runtime)"; exit 77; }
echo "ok:   sanitizer build ($(( $(date +%s) - t0 ))s), runtime $libasan"
rm -rf "$logdir"; mkdir -p "$logdir"; chmod 1777 "$logdir"
fail=0 n=0
for s in $scripts; do
	n=$((n + 1))
	t1=$(date +%s)
	LMBOX_TOP_BUILDDIR=$b timeout 900 ${PYTHON3:-python3} "$here/san_run.py" "$libasan" "$logdir" \
		"$src/tests/integration/$s" >"$logdir/$s.out" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		echo "ok:   $s under ASan+UBSan ($(( $(date +%s) - t1 ))s)"
	else
		echo "FAIL: $s under ASan+UBSan exit $rc"; grep -v ': Info: ' "$logdir/$s.out" | tail -30; fail=$((fail + 1))
	fi
done
reports=$(ls "$logdir" | grep -E '^(asan|ubsan)\.' || true)
if [ -n "$reports" ]; then
	echo "FAIL: sanitizer reports:"
	for r in $reports; do echo "== $r"; head -40 "$logdir/$r"; done
	fail=$((fail + 1))
else
	echo "ok:   no ASan/UBSan report from any process"
fi
echo "figure: sanitizers: $((n - fail < 0 ? 0 : n - fail)) of $n integration scripts clean under ASan+UBSan ($(( $(date +%s) - t0 ))s)"
[ $fail -eq 0 ] && rm -rf "$logdir"
[ $fail -eq 0 ]
