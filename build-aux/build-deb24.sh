#!/bin/sh
# The Debian package dovecot-lmbox built against Dovecot 2.4 (docs/packaging.md):
# the same debian/ run by `dpkg-buildpackage -us -uc -b` (build-aux/build-deb.sh)
# inside the Debian 13 chroot of build-aux/chroot-dovecot24.sh (Dovecot 2.4.1).
# The package then ships the settings module too and depends on the ABI
# virtual package of the chroot's dovecot-core (dovecot-abi-2.4.abiv1).
#
#   build-aux/build-deb24.sh [OUTDIR]   build; copy the results to OUTDIR
#                                       (default: _build/deb24/ of the tree)
#   build-aux/build-deb24.sh --check    tests/package/test_package.py in the
#                                       chroot: build, lintian, apt install,
#                                       a private Dovecot 2.4 (LMTP in, POP3
#                                       out), purge
#
# `make deb24` / `make check-deb24` run it; build-aux/check-dovecot24.sh runs
# --check. Environment: LMBOX_CHROOT24 (default /var/cache/lmbox/trixie-chroot).
# Needs root (exit 77 otherwise). Installs debhelper, lintian and man-db into
# the chroot when missing.
set -e
srcdir=$(cd "$(dirname "$0")/.." && pwd)
CHROOT=${LMBOX_CHROOT24:-/var/cache/lmbox/trixie-chroot}
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
out=${1:-$srcdir/_build/deb24}
TOOLS="debhelper lintian man-db"

if [ "$(id -u)" != 0 ]; then
	echo "build-deb24: SKIP: needs root (chroot)" >&2
	exit 77
fi
t0=$(date +%s)
sh "$srcdir/build-aux/chroot-dovecot24.sh" "$CHROOT"

inchroot() {
	chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 "$@"
}
mounted=0
saved=""
cleanup() {
	# the unpackaged settings module of check-dovecot24's build, put back
	if [ -n "$saved" ] && [ -f "$CHROOT/build/deb24-saved.so" ]; then
		mv -f "$CHROOT/build/deb24-saved.so" "$CHROOT$saved"
	fi
	if [ $mounted = 1 ]; then umount "$CHROOT/proc" 2>/dev/null || umount -l "$CHROOT/proc"; fi
	return 0
}
trap cleanup EXIT
trap 'exit 1' INT TERM
if ! mountpoint -q "$CHROOT/proc"; then
	mount -t proc proc "$CHROOT/proc"
	mounted=1
fi

missing=""
for p in $TOOLS; do
	inchroot dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
		grep -q '^install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "build-deb24: installing$missing in $CHROOT"
	inchroot DEBIAN_FRONTEND=noninteractive sh -c "
		apt-get install -y -q --no-install-recommends $missing ||
		{ apt-get update -q && apt-get install -y -q --no-install-recommends $missing; }
		rc=\$?; apt-get clean; exit \$rc" > "$CHROOT.deb24-apt.log" 2>&1 ||
		{ tail -30 "$CHROOT.deb24-apt.log" >&2; exit 1; }
fi

# A clean copy of the source tree (tracked and new files, no build output);
# build-deb.sh copies it once more into a temporary directory.
dst="$CHROOT/build/lmbox-deb"
rm -rf "$dst"
mkdir -p "$dst"
if git -C "$srcdir" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$srcdir" && git ls-files -co --exclude-standard -z) |
		(cd "$srcdir" && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$dst"
else
	(cd "$srcdir" && tar --exclude='./_build*' --exclude=./autom4te.cache --exclude=./.git \
		--exclude=./debian/dovecot-lmbox --exclude=./debian/.debhelper -cf - .) | tar -xf - -C "$dst"
fi
t1=$(date +%s)

if [ $check = 0 ]; then
	rm -rf "$CHROOT/build/deb24"
	if ! inchroot sh /build/lmbox-deb/build-aux/build-deb.sh /build/deb24 > "$dst/build-deb24.log" 2>&1; then
		tail -n 40 "$dst/build-deb24.log" >&2
		echo "build-deb24: FAIL: dpkg-buildpackage in $CHROOT failed (log: $dst/build-deb24.log)" >&2
		exit 1
	fi
	mkdir -p "$out"
	out=$(cd "$out" && pwd)
	rm -f "$out"/dovecot-lmbox_* "$out"/dovecot-lmbox-dbgsym_* "$out"/lmbox_*
	cp "$CHROOT"/build/deb24/* "$out/"
	for f in "$out"/dovecot-lmbox_*.deb; do
		echo "build-deb24: $f ($(dpkg-deb -f "$f" Depends | grep -o 'dovecot-abi-[0-9a-z.]*'))"
	done
	echo "build-deb24: against $(inchroot dovecot --version) in $(( $(date +%s) - t0 )) s"
	exit 0
fi

# --check: the package test inside the chroot. check-dovecot24.sh's build
# installs lib20_lmbox_settings.so by hand (owned by no package): moved
# aside so that apt installs and purges the package's own, then put back.
s=/usr/lib/dovecot/modules/settings/lib20_lmbox_settings.so
if [ -f "$CHROOT$s" ] && ! inchroot dpkg -S "$s" >/dev/null 2>&1; then
	saved=$s
	mkdir -p "$CHROOT/build"
	mv -f "$CHROOT$s" "$CHROOT/build/deb24-saved.so"
fi
rc=0
inchroot LMBOX_TOP_SRCDIR=/build/lmbox-deb LMBOX_TOP_BUILDDIR=/build/lmbox-deb \
	PYTHONDONTWRITEBYTECODE=1 python3 /build/lmbox-deb/tests/package/test_package.py \
	> "$dst/test_package24.log" 2>&1 || rc=$?
grep -E "^(ok|FAIL|SKIP|PASS)|^      (W|E): " "$dst/test_package24.log" | sed 's/^/  /'
t2=$(date +%s)
case $rc in
0) echo "PASS: test_package.py (Debian package against Dovecot 2.4, $((t2 - t1)) s)" ;;
77) echo "SKIP: test_package.py (Dovecot 2.4)" ;;
*) echo "FAIL: test_package.py (Debian package against Dovecot 2.4), log $dst/test_package24.log"
   tail -n 40 "$dst/test_package24.log" ;;
esac
exit $rc
