#!/usr/bin/env python3
"""CI smoke test of the benchmark itself (make check, make bench-smoke):
every measurement of bench.py once at a small N, for every backend, lmbox
included, both login modes, answers checked, speed not judged.  Writes
results.jsonl, plots and report.md into ./bench-smoke-out; never touches
docs/.  Exit 0 pass, 1 fail, 77 when Dovecot is not installed."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The smoke test's own settings win over a BENCH_* left in the environment.
os.environ.update({
    "BENCH_SMOKE": "1",
    "BENCH_N": os.environ.get("BENCH_SMOKE_N", "300"),
    "BENCH_REPEAT": "1",
    "BENCH_LOGIN": "default,perf",
    "BENCH_BACKENDS": os.environ.get("BENCH_SMOKE_BACKENDS",
                                     "lmbox,maildir,sdbox,mdbox,maildir+zlib,mdbox+zlib"),
    "BENCH_OUT": os.path.abspath("bench-smoke-out"),
    "BENCH_DOCS": "",
    "BENCH_TIME_LIMIT": "900",
})
sys.argv = [os.path.join(HERE, "bench.py")]
sys.path.insert(0, HERE)
with open(os.path.join(HERE, "bench.py")) as f:
    code = compile(f.read(), os.path.join(HERE, "bench.py"), "exec")
exec(code, {"__name__": "__main__", "__file__": os.path.join(HERE, "bench.py")})
