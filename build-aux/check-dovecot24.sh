#!/bin/sh
# make check-dovecot24 (docs/dovecot24.md): build lmbox against Dovecot 2.4
# in a Debian 13 chroot (build-aux/chroot-dovecot24.sh) and run a subset of
# the integration suite there against private 2.4 instances on 127.0.0.1.
#
#   build-aux/check-dovecot24.sh [TEST.py ...]
#
# Environment: LMBOX_CHROOT24 (the chroot, default
# /var/cache/lmbox/trixie-chroot), LMBOX_CHECK24_TESTS (the test list).
# Needs root.  Exit 0 pass, 1 fail, 77 skip (no root).
set -e
srcdir=$(cd "$(dirname "$0")/.." && pwd)
CHROOT=${LMBOX_CHROOT24:-/var/cache/lmbox/trixie-chroot}
TESTS=${*:-${LMBOX_CHECK24_TESTS:-test_lmtp.py test_pop3.py test_imap.py test_doveadm.py test_index_loss.py test_pop3_module.py}}

if [ "$(id -u)" != 0 ]; then
	echo "check-dovecot24: SKIP: needs root (debootstrap, chroot)" >&2
	exit 77
fi
t0=$(date +%s)
sh "$srcdir/build-aux/chroot-dovecot24.sh" "$CHROOT"
t1=$(date +%s)

# A clean copy of the source tree (tracked and new files; never build
# output), configured and built inside the chroot with its autotools and
# its Dovecot 2.4 dovecot.m4.
dst="$CHROOT/build/lmbox"
rm -rf "$dst"
mkdir -p "$dst"
if git -C "$srcdir" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$srcdir" && git ls-files -co --exclude-standard -z) |
		(cd "$srcdir" && tar --null -T - -cf -) | tar -xf - -C "$dst"
else
	(cd "$srcdir" && tar --exclude=./_build --exclude=autom4te.cache -cf - .) | tar -xf - -C "$dst"
	(cd "$dst" && rm -f configure aclocal.m4 && find . -name Makefile.in -delete)
fi
# The 2.3 build tree (when given) for the upgrade test: its modules are
# copied in, and the test runs the 2.3 Dovecot of the host on the same store.
if [ -n "$LMBOX_D23_BUILDDIR" ]; then
	mkdir -p "$dst/_d23/plugin/.libs" "$dst/_d23/pop3/.libs"
	cp "$LMBOX_D23_BUILDDIR"/plugin/.libs/*.so "$dst/_d23/plugin/.libs/"
	cp "$LMBOX_D23_BUILDDIR"/pop3/.libs/*.so "$dst/_d23/pop3/.libs/"
fi

inchroot() {
	chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 "$@"
}
mount -t proc proc "$CHROOT/proc"
trap 'umount "$CHROOT/proc" 2>/dev/null || umount -l "$CHROOT/proc"' EXIT INT TERM

nproc=$(nproc 2>/dev/null || echo 2)
if ! inchroot sh -c "cd /build/lmbox && autoreconf -fi >build24.log 2>&1 &&
	./configure --enable-werror >>build24.log 2>&1 &&
	make -j$nproc >>build24.log 2>&1 &&
	make -C plugin install-settingsLTLIBRARIES >>build24.log 2>&1 &&
	rm -f /usr/lib/dovecot/modules/settings/lib20_lmbox_settings.la"; then
	tail -n 40 "$dst/build24.log" >&2
	echo "check-dovecot24: FAIL: the build against Dovecot 2.4 failed" >&2
	exit 1
fi
t2=$(date +%s)
echo "check-dovecot24: built against $(inchroot dovecot --version) in $((t2 - t1)) s"

rc=0
inchroot sh -c "cd /build/lmbox/tests/integration &&
	make check TESTS='$TESTS' LMBOX_D23_BUILDDIR=${LMBOX_D23_BUILDDIR:+/build/lmbox/_d23}" || rc=$?
t3=$(date +%s)
for t in $TESTS; do
	log="$dst/tests/integration/${t%.py}.log"
	[ -f "$log" ] && grep -E "^(FAIL|SKIP)" "$log" | sed "s/^/  ${t}: /" | head -20
done
grep -hE "^(PASS|FAIL|SKIP|XFAIL|ERROR):" "$dst"/tests/integration/test_*.trs 2>/dev/null | head -0
grep -E "^# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR)" "$dst/tests/integration/test-suite.log" || true
echo "check-dovecot24: chroot $((t1 - t0)) s, build $((t2 - t1)) s, tests $((t3 - t2)) s"
exit $rc
