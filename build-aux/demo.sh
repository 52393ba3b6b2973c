#!/bin/sh
# Demo: install what is missing, build lmbox in _build/demo, start a private
# Dovecot on 127.0.0.1 serving POP3/IMAP/LMTP from lmbox, deliver a few
# messages to user "demo" over LMTP and show a POP3 session fetching them.
# Dovecot is left running; the last lines say how to reach and stop it.
# Run as root on Debian 12, from anywhere:   sh build-aux/demo.sh
# Environment: LMBOX_DEMO_DIR (default /tmp/lmbox-demo) holds the demo's
# config, logs and mail; a previous demo there is stopped and replaced.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc 2>/dev/null || echo 2)
demo_dir=${LMBOX_DEMO_DIR:-/tmp/lmbox-demo}
build="$top/_build/demo"

echo "=== dependencies (build-aux/deps.sh)"
sh build-aux/deps.sh

echo "=== build in _build/demo"
mkdir -p "$build"
# (re)generate the build system when missing or older than its sources
if [ ! -x configure ] || [ -n "$(find . -path ./_build -prune -o \( -name configure.ac -o -name Makefile.am \) -newer configure -print | head -1)" ]; then
	autoreconf -fi >"$build/autoreconf.log" 2>&1 || { cat "$build/autoreconf.log"; exit 1; }
fi
cd "$build"
if [ ! -f Makefile ] || [ "$top/configure" -nt config.status ]; then
	../../configure -q >configure.log 2>&1 || { tail -30 configure.log; exit 1; }
fi
make -j"$jobs" >make.log 2>&1 || { tail -40 make.log; echo "demo: build failed (log: $build/make.log)"; exit 1; }
cd "$top"
if [ ! -f "$build/plugin/.libs/lib20_lmbox_plugin.so" ]; then
	echo "demo: $build/plugin/.libs/lib20_lmbox_plugin.so was not built"
	exit 1
fi

echo "=== private Dovecot on 127.0.0.1 (files in $demo_dir)"
exec python3 "$top/tests/integration/lmboxtest.py" demo --builddir "$build" --keep-dir "$demo_dir"
