#!/usr/bin/env python3
"""Run one integration test script with every process it starts (Dovecot,
doveadm, dovecot-lda, the lmbox CLI) under the ASan runtime: LD_PRELOAD is
set for the children only, not for this Python.  Used by
test_sanitizers.sh:  san_run.py LIBASAN LOGDIR script.py"""
import os
import runpy
import sys

libasan, logdir, script = sys.argv[1:4]
os.environ["LD_PRELOAD"] = libasan
# Dovecot's own leaks at exit are not ours: no leak detection.  A report
# (memory error or, with -fno-sanitize-recover, undefined behaviour) goes
# to a file in logdir named after the process.
os.environ["ASAN_OPTIONS"] = ("detect_leaks=0:abort_on_error=0:disable_coredump=1:"
                              "log_path=%s/asan" % logdir)
os.environ["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:log_path=%s/ubsan" % logdir
os.environ["LMBOX_IT_EXTRA_CONF"] = (
    "import_environment = $import_environment LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS\n"
    # ASan reserves terabytes of address space: no vsz_limit in this run
    "default_vsz_limit = 0\n")
# Clients that are not ours run without the ASan runtime (curl hangs with it
# preloaded): a wrapper first in PATH drops LD_PRELOAD for them.
wrap = os.path.join(logdir, "nosan-bin")
os.makedirs(wrap, exist_ok=True)
for tool in ("curl", "mpop", "fetchmail"):
    real = None
    for d in os.environ.get("PATH", "/usr/bin").split(os.pathsep):
        if os.access(os.path.join(d, tool), os.X_OK) and d != wrap:
            real = os.path.join(d, tool)
            break
    if real:
        with open(os.path.join(wrap, tool), "w") as f:
            f.write('#!/bin/sh\nunset LD_PRELOAD\nexec %s "$@"\n' % real)
        os.chmod(os.path.join(wrap, tool), 0o755)
os.environ["PATH"] = wrap + os.pathsep + os.environ.get("PATH", "")
sys.argv = [script] + sys.argv[4:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
