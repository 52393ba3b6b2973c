#!/bin/sh
# valgrind memcheck over the unit test programs (tests/unit): any memory
# error or definite leak fails (--error-exitcode), forked children included.
# test-big (about a minute under valgrind) runs only in `make soak`
# (RELIABILITY_VALGRIND_ALL=1).  Exit 77 when valgrind is not installed.
set -u
top=${LMBOX_TOP_BUILDDIR:?}
src=${LMBOX_TOP_SRCDIR:-$top/../..}
here=$(cd "$(dirname "$0")" && pwd)
supp=$here/valgrind.supp
[ -f "$supp" ] || supp=$src/tests/reliability/valgrind.supp
command -v valgrind >/dev/null 2>&1 || { echo "SKIP: valgrind not installed"; exit 77; }
progs="test-store test-folder test-message test-corrupt test-reclaim test-format test-concurrent test-nospace"
[ "${RELIABILITY_VALGRIND_ALL:-0}" = 1 ] && progs="$progs test-big"
# the unit programs are built by tests/unit's make check; build them if not
( cd "$top/tests/unit" && make -s $progs >/dev/null ) || { echo "FAIL: cannot build the unit tests"; exit 1; }
fail=0 n=0
logdir=$(pwd)/valgrind-logs
rm -rf "$logdir"; mkdir -p "$logdir"
for p in $progs; do
	n=$((n + 1))
	t0=$(date +%s)
	# the unit tests use a scratch dir under the cwd (test-common.h)
	( cd "$logdir" && timeout 600 valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite --show-leak-kinds=definite --track-fds=no \
		--suppressions="$supp" "$top/tests/unit/$p" >"$logdir/$p.log" 2>&1 )
	rc=$?
	if [ $rc -eq 0 ]; then
		echo "ok:   valgrind $p ($(( $(date +%s) - t0 ))s)"
	else
		echo "FAIL: valgrind $p exit $rc"; tail -40 "$logdir/$p.log"; fail=$((fail + 1))
	fi
done
echo "figure: valgrind memcheck: $((n - fail)) of $n unit test programs clean"
[ $fail -eq 0 ] && rm -rf "$logdir"
[ $fail -eq 0 ]
