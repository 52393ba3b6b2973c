#!/bin/sh
# Install what building and testing lmbox needs, from Debian's packages.
# Does nothing (and needs no network) when everything is already there.
set -e
PKGS="build-essential autoconf automake libtool pkg-config \
dovecot-core dovecot-dev dovecot-pop3d dovecot-imapd dovecot-lmtpd \
liblmdb-dev lmdb-utils zlib1g-dev python3 curl mpop fetchmail postal \
clang libclang-rt-14-dev valgrind debhelper lintian dpkg-dev debootstrap gnuplot-nox"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: missing packages:$missing (run as root to install them)" >&2
	exit 1
fi
echo "deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Dovecot's packages try to start the system service; we never want that.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -q --no-install-recommends $missing
