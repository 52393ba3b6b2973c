#!/bin/sh
# Build the Debian package dovecot-lmbox (docs/packaging.md) out of tree:
# copy the source tree (git's tracked and untracked-not-ignored files, so
# no build products) into a temporary directory, run
# `dpkg-buildpackage -us -uc -b` there, and copy the results into OUTDIR
# (default: _build/deb/ of the source tree). Nothing is written next to the
# source tree. `make deb` runs this.
#   build-aux/build-deb.sh [OUTDIR]
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/_build/deb}
for t in dpkg-buildpackage dpkg-parsechangelog dh; do
	command -v "$t" >/dev/null 2>&1 || {
		echo "build-deb.sh: $t not found: apt-get install dpkg-dev debhelper" >&2; exit 1; }
done
version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
work=$(mktemp -d "${TMPDIR:-/tmp}/lmbox-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
tree="$work/lmbox-$version"
mkdir "$tree"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# working-tree contents (uncommitted edits included), no ignored files
	( cd "$src" && git ls-files -z --cached --others --exclude-standard |
	  tar --null -T - --ignore-failed-read -cf - 2>/dev/null ) | tar -xf - -C "$tree"
else
	( cd "$src" && tar --exclude='./_build*' --exclude=./.git --exclude=./autom4te.cache \
	  --exclude=./debian/dovecot-lmbox --exclude=./debian/.debhelper -cf - . ) | tar -xf - -C "$tree"
fi
[ -f "$tree/debian/rules" ] || { echo "build-deb.sh: debian/rules missing in the copied tree" >&2; exit 1; }
jobs=$(nproc 2>/dev/null || echo 1)
case " ${DEB_BUILD_OPTIONS:-} " in
*" parallel="*) ;;
*) DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:+$DEB_BUILD_OPTIONS }parallel=$jobs"; export DEB_BUILD_OPTIONS ;;
esac
# not an outer make's jobserver or flags (make deb, make check)
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
echo "build-deb.sh: building lmbox $version in $tree"
( cd "$tree" && dpkg-buildpackage -us -uc -b )
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/dovecot-lmbox_* "$out"/dovecot-lmbox-dbgsym_* "$out"/lmbox_*
found=0
for f in "$work"/*.deb "$work"/*.ddeb "$work"/*.changes "$work"/*.buildinfo; do
	[ -e "$f" ] || continue
	cp "$f" "$out/"
	case "$f" in *.deb) found=1; echo "build-deb.sh: $out/$(basename "$f")" ;; esac
done
[ "$found" = 1 ] || { echo "build-deb.sh: no .deb produced" >&2; exit 1; }
