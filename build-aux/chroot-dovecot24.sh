#!/bin/sh
# Prepare (or reuse) a Debian 13 (trixie) minbase chroot with Dovecot 2.4
# and lmbox's build dependencies, for `make check-dovecot24`.
#
#   build-aux/chroot-dovecot24.sh [CHROOT_DIR]
#
# CHROOT_DIR defaults to $LMBOX_CHROOT24 or /var/cache/lmbox/trixie-chroot.
# A chroot that finished setting up (marker file .lmbox-ready) is reused
# as it is. The mirror is taken from the host's apt configuration; no
# other network is used. Needs root and debootstrap (installed when
# missing, from the host's apt sources).
set -e
CHROOT=${1:-${LMBOX_CHROOT24:-/var/cache/lmbox/trixie-chroot}}
SUITE=${LMBOX_CHROOT24_SUITE:-trixie}
PKGS="dovecot-core dovecot-dev dovecot-pop3d dovecot-imapd dovecot-lmtpd \
liblmdb-dev zlib1g-dev build-essential autoconf automake libtool pkg-config python3 curl"

if [ -f "$CHROOT/.lmbox-ready" ]; then
	echo "chroot-dovecot24: reusing $CHROOT ($(cat "$CHROOT/.lmbox-ready"))"
	# a package added to PKGS since the chroot was made
	missing=""
	for p in $PKGS; do
		chroot "$CHROOT" dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed' || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "chroot-dovecot24: installing$missing"
		chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -q &&
			apt-get install -y -q --no-install-recommends $PKGS && apt-get clean" \
			> "$CHROOT.apt.log" 2>&1 || { tail -30 "$CHROOT.apt.log" >&2; exit 1; }
	fi
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "chroot-dovecot24: needs root (debootstrap, chroot)" >&2
	exit 77
fi

# The Debian mirror the host uses: deb822 .sources first, then sources.list.
mirror=${LMBOX_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
		[ -n "$mirror" ] && break
	done
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
	mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/) { print $i; exit } break } }' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
	echo "chroot-dovecot24: no Debian mirror found in the host's apt configuration" >&2
	exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
	echo "chroot-dovecot24: installing debootstrap on the host"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap ||
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap; }
fi

# A half-made chroot from an interrupted run is started over.
if [ -e "$CHROOT" ]; then
	echo "chroot-dovecot24: removing incomplete $CHROOT"
	for m in proc dev/pts; do
		mountpoint -q "$CHROOT/$m" 2>/dev/null && umount "$CHROOT/$m"
	done
	rm -rf --one-file-system "$CHROOT"
fi
mkdir -p "$(dirname "$CHROOT")"
tmp="$CHROOT.tmp.$$"
cleanup() {
	if mountpoint -q "$tmp/proc" 2>/dev/null; then umount "$tmp/proc" || umount -l "$tmp/proc"; fi
	[ -d "$tmp" ] && rm -rf --one-file-system "$tmp"
	return 0
}
trap cleanup EXIT INT TERM

t0=$(date +%s)
echo "chroot-dovecot24: debootstrap --variant=minbase $SUITE from $mirror"
debootstrap --variant=minbase "$SUITE" "$tmp" "$mirror" > "$tmp.log" 2>&1 ||
	{ tail -30 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
rm -f "$tmp.log"
t1=$(date +%s)
echo "chroot-dovecot24: debootstrap took $((t1 - t0)) s"

# Package scripts must not start a system-wide Dovecot.
printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"
chmod +x "$tmp/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
mount -t proc proc "$tmp/proc"
chroot "$tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
	sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $PKGS && apt-get clean" \
	> "$CHROOT.apt.log" 2>&1 || { tail -30 "$CHROOT.apt.log" >&2; exit 1; }
umount "$tmp/proc"
t2=$(date +%s)
echo "chroot-dovecot24: apt-get install took $((t2 - t1)) s"

ver=$(chroot "$tmp" dpkg-query -W -f='${Version}' dovecot-core)
echo "dovecot-core $ver, built $(date -u +%Y-%m-%dT%H:%MZ)" > "$tmp/.lmbox-ready"
mv "$tmp" "$CHROOT"
trap - EXIT INT TERM
echo "chroot-dovecot24: ready: $CHROOT (dovecot-core $ver, $((t2 - t0)) s)"
