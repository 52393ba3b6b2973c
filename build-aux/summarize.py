#!/usr/bin/env python3
"""Count automake test results (*.trs) under a build tree; print failures'
logs and the closing line "N passed, N failed, N skipped"."""
import os, sys

root = sys.argv[1] if len(sys.argv) > 1 else "."
# steps of the driver that failed outside any test (a build, a make check
# that stopped before running its tests) count as failures too
step_failures = int(sys.argv[2]) if len(sys.argv) > 2 else 0
passed = failed = skipped = 0
failures = []
for dirpath, _, files in os.walk(root):
    for f in sorted(files):
        if not f.endswith(".trs"):
            continue
        path = os.path.join(dirpath, f)
        with open(path, errors="replace") as fh:
            for line in fh:
                if line.startswith(":test-result:"):
                    res = line.split(":", 2)[2].strip().split()[0]
                    if res == "PASS":
                        passed += 1
                    elif res in ("SKIP", "XFAIL"):
                        # an expected failure is not a pass: it is
                        # reported with the skipped ones
                        print("%s: %s" % (res, path[:-4]))
                        skipped += 1
                    else:
                        failed += 1
                        failures.append(path[:-4] + ".log")
for log in failures:
    print("----- %s" % log)
    try:
        with open(log, errors="replace") as fh:
            print("".join(fh.readlines()[-40:]))
    except OSError:
        pass
if step_failures and failed == 0:
    failed = step_failures
    print("%d build/test step(s) failed outside any test (see above)" % step_failures)
if passed + failed + skipped == 0:
    failed = 1
    print("no test ran")
print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(1 if failed else 0)
