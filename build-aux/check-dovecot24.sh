#!/bin/sh
# make check-dovecot24 (docs/dovecot24.md): build lmbox against Dovecot 2.4
# in a Debian 13 chroot (build-aux/chroot-dovecot24.sh) and run a subset of
# the integration suite there against private 2.4 instances on 127.0.0.1.
#
#   build-aux/check-dovecot24.sh [TEST.py ...]
#
# Environment: LMBOX_CHROOT24 (the chroot, default
# /var/cache/lmbox/trixie-chroot), LMBOX_CHECK24_TESTS (the test list),
# LMBOX_CHECK24_DEB=0 (no Debian package test, build-aux/build-deb24.sh).
# Needs root.  Exit 0 pass, 1 fail, 77 skip (no root).
set -e
srcdir=$(cd "$(dirname "$0")/.." && pwd)
CHROOT=${LMBOX_CHROOT24:-/var/cache/lmbox/trixie-chroot}
TESTS=${*:-${LMBOX_CHECK24_TESTS:-test_lmtp.py test_pop3.py test_imap.py test_doveadm.py test_index_loss.py test_pop3_module.py test_settings.py test_no_body_read.py test_zlib.py test_expunge_notify.py test_vsize_index.py test_stale_session.py}}

if [ "$(id -u)" != 0 ]; then
	echo "check-dovecot24: SKIP: needs root (debootstrap, chroot)" >&2
	exit 77
fi
# One run at a time per chroot: every run builds in the same $CHROOT/build
# (two concurrent runs would remove each other's tree); a second run waits.
mkdir -p "$(dirname "$CHROOT")"
exec 9>"$CHROOT.lock"
if ! flock -n 9; then
	echo "check-dovecot24: waiting for another run on $CHROOT" >&2
	flock 9
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
inchroot sh -c "cd /build/lmbox/tests/integration && make check TESTS='$TESTS'" || rc=$?
for t in $TESTS; do
	log="$dst/tests/integration/${t%.py}.log"
	[ -f "$log" ] && grep -E "^(FAIL|SKIP)" "$log" | sed "s/^/  ${t}: /" | head -20
done

# kill -9 subset: tests/reliability/test_crash.py with fewer kill points
if [ -n "$LMBOX_CHECK24_KILLS" ] || [ -z "$*" ]; then
	kills=${LMBOX_CHECK24_KILLS:-20}
	if inchroot sh -c "cd /build/lmbox/tests/reliability &&
		make check TESTS=test_crash.py RELIABILITY_KILLS=$kills >/dev/null 2>&1"; then
		echo "PASS: test_crash.py (reliability, $kills kill points)"
	else
		rc=1
		echo "FAIL: test_crash.py (reliability, $kills kill points)"
		tail -n 30 "$dst/tests/reliability/test_crash.log"
	fi
fi
t3=$(date +%s)

# Upgrade 2.3 -> 2.4 -> 2.3 on one store: needs the host's Dovecot 2.3 and
# a 2.3 build tree (make check-dovecot24 from one passes it).
if [ -n "$LMBOX_D23_BUILDDIR" ] && [ -z "$*" ]; then
	up="$CHROOT/build/upgrade"
	ut="tests/integration/test_upgrade24.py"
	urc=0
	LMBOX_TOP_BUILDDIR="$LMBOX_D23_BUILDDIR" python3 "$srcdir/$ut" write23 "$up" > "$dst/upgrade.log" 2>&1 &&
	inchroot sh -c "LMBOX_TOP_BUILDDIR=/build/lmbox python3 /build/lmbox/$ut open24 /build/upgrade" >> "$dst/upgrade.log" 2>&1 &&
	LMBOX_TOP_BUILDDIR="$LMBOX_D23_BUILDDIR" python3 "$srcdir/$ut" back23 "$up" >> "$dst/upgrade.log" 2>&1 || urc=$?
	if [ $urc = 0 ]; then
		echo "PASS: test_upgrade24.py (2.3 -> 2.4 -> 2.3)"
		grep -E "^(ok|FAIL)" "$dst/upgrade.log" | sed 's/^/  /'
		rm -rf "$up"
	else
		rc=1
		echo "FAIL: test_upgrade24.py (2.3 -> 2.4 -> 2.3), store kept in $up"
		grep -vE "^ok" "$dst/upgrade.log" | tail -n 40
	fi
elif [ -z "$*" ]; then
	echo "SKIP: test_upgrade24.py (no LMBOX_D23_BUILDDIR: run make check-dovecot24 from a 2.3 build)"
fi
t4=$(date +%s)

# The Debian package built against 2.4 in this chroot, installed with apt,
# served by a private Dovecot 2.4 from the system module dir, purged
# (build-aux/build-deb24.sh --check: tests/package/test_package.py there;
# docs/packaging.md). LMBOX_CHECK24_DEB=0 leaves it out.
if [ -z "$*" ] && [ "${LMBOX_CHECK24_DEB:-1}" != 0 ]; then
	sh "$srcdir/build-aux/build-deb24.sh" --check || { r=$?; [ $r = 77 ] || rc=1; }
fi
t5=$(date +%s)
echo "check-dovecot24: chroot $((t1 - t0)) s, build $((t2 - t1)) s, integration+crash $((t3 - t2)) s, upgrade $((t4 - t3)) s, package $((t5 - t4)) s"
[ $rc = 0 ] && echo "check-dovecot24: PASS" || echo "check-dovecot24: FAIL"
exit $rc
