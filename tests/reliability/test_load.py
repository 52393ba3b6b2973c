#!/usr/bin/env python3
"""Load with integrity (issue 5): postal -L delivers random messages over
LMTP to many users of the private Dovecot, then rabid reads (and deletes a
share of) them over POP3, each bounded in time (RELIABILITY_LOAD_SECONDS,
default 20 s; `make soak`: 120 s).  postal writes an MD5 of each body into
the message, rabid checks it: zero MD5 mismatches and zero errors reported
by either, zero Error/Panic/Fatal lines in Dovecot's log, `lmbox check` clean
on every store.  Rates (messages/s from Dovecot's "saved mail" lines,
sessions/s from its POP3 logouts) are printed as "figure:" lines for
docs/benchmarks.md ("Load (postal/rabid)") and docs/reliability.md."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reltest import bad_log_lines, cores  # noqa: E402
from lmboxtest import Dovecot, Test, run, check_environment, Skip, DEFAULT_PASSWORD  # noqa: E402

SECONDS = float(os.environ.get("RELIABILITY_LOAD_SECONDS", "20"))
USERS = int(os.environ.get("RELIABILITY_LOAD_USERS", "50"))
THREADS = 4


def run_bounded(argv, seconds, outpath):
    """Run a load tool for `seconds`, then SIGINT (it prints its totals),
    SIGKILL if it lingers; returns (output text, wall seconds)."""
    with open(outpath, "wb") as out:
        t0 = time.monotonic()
        if shutil.which("stdbuf"):   # line-buffered: a SIGTERM loses nothing they printed
            argv = ["stdbuf", "-oL", "-eL"] + list(argv)
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                             cwd=os.path.dirname(outpath))   # postal.log / rabid.log land there
        try:
            p.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        dt = time.monotonic() - t0
    with open(outpath, errors="replace") as f:
        return f.read(), dt, p.returncode


def tool_errors(text):
    """Lines of postal/rabid output that report a problem."""
    bad = []
    for l in text.splitlines():
        if re.search(r"(?i)md5|error|fail|bad|unexpected|timeout", l) and not re.match(r"^time,", l):
            bad.append(l)
    # the periodic CSV lines: time,messages,data(K),errors,connections,...
    for l in text.splitlines():
        f = l.split(",")
        if len(f) >= 4 and re.match(r"^\d\d:\d\d$", f[0]) and f[3].strip().isdigit() and int(f[3]) > 0:
            bad.append(l)
    return bad


def main():
    check_environment()
    postal, rabid = shutil.which("postal"), shutil.which("rabid")
    if not postal or not rabid:
        raise Skip("postal/rabid not installed (Debian package postal)")
    t = Test("load with integrity: postal -L and rabid, %d users, %.0f s each" % (USERS, SECONDS))
    users = ["load%02d" % i for i in range(USERS)]
    with Dovecot(mail_location=os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox"), users=users, fast_login=True, process_min_avail=THREADS,
                 # postal sends "MAIL FROM: <a@b>": Dovecot's documented workaround
                 extra_conf="service lmtp {\n  process_min_avail = %d\n}\n"
                            "lmtp_client_workarounds = whitespace-before-path\n" % THREADS) as dc:
        plist = os.path.join(dc.tmp, "postal-users")
        rlist = os.path.join(dc.tmp, "rabid-users")
        with open(plist, "w") as f:
            f.write("".join("%s@example.org\n" % u for u in users))
        with open(rlist, "w") as f:
            f.write("".join("%s@example.org %s\n" % (u, DEFAULT_PASSWORD) for u in users))
        figures = {}
        # postal.log: "MD5 <from> <to>" per message sent; rabid.log: MD5 per message received
        with t.case("postal -L (%d threads, bodies up to 20 KB): no errors, deliveries stored" % THREADS, required=True):
            dc.mark_log()
            out, dt, rc = run_bounded([postal, "-L", "-t", str(THREADS), "-m", "20", "-c", "5",
                                       "[%s]%d" % (dc.host, dc.ports["lmtp"]), plist],
                                      SECONDS, os.path.join(dc.tmp, "postal.out"))
            log = dc.log_since_mark()
            saved = len(re.findall(r"lmtp\(.*: saved mail to INBOX", log))
            print("      postal output:\n        " + "\n        ".join(out.strip().splitlines()[-6:]))
            bad = tool_errors(out)
            t.check(not bad, "postal reported problems:\n  " + "\n  ".join(bad[:10]))
            t.check(saved > 0, "no delivery was saved")
            figures["postal"] = (saved, dt)
            print("figure: postal -L: %d messages in %.1f s = %.1f messages/s (%d users, %d threads, 0-20 KB bodies)"
                  % (saved, dt, saved / dt, USERS, THREADS))
        with t.case("rabid (%d processes, download and delete all): no MD5 mismatch, no errors" % THREADS):
            dc.mark_log()
            # (rabid 0.70 with -d 100:50 stalls after a RETR, against maildir
            # as well: default download-and-delete-all is used.)
            out, dt, rc = run_bounded([rabid, "-p", str(THREADS),
                                       "[%s]%d" % (dc.host, dc.ports["pop3"]), rlist],
                                      SECONDS, os.path.join(dc.tmp, "rabid.out"))
            log = dc.log_since_mark()
            sessions = re.findall(r"pop3\([^)]*\)<\d+><[^>]*>: Info: Disconnected: Logged out top=\d+/\d+, retr=(\d+)/(\d+), del=(\d+)/", log)
            retr = sum(int(s[0]) for s in sessions)
            dele = sum(int(s[2]) for s in sessions)
            print("      rabid output:\n        " + "\n        ".join(out.strip().splitlines()[-6:]))
            bad = tool_errors(out)
            t.check(not bad, "rabid reported problems (MD5 mismatches count here):\n  " + "\n  ".join(bad[:10]))
            t.check(len(sessions) > 0, "no POP3 session completed")
            sent = set(l.split()[0] for l in open(os.path.join(dc.tmp, "postal.log")) if l.strip())
            got = [l.split()[0] for l in open(os.path.join(dc.tmp, "rabid.log")) if l.strip()]
            foreign = [x for x in got if x not in sent]
            print("      MD5s: postal logged %d sent, rabid logged %d received, %d not among the sent"
                  % (len(sent), len(got), len(foreign)))
            t.check(got, "rabid logged no message")
            # rabid checks each body against its X-PostalHash header and prints
            # "MD5 mis-match" (tool_errors above).  rabid.log lists the hashes
            # it read; postal.log those postal logged after a 250: the
            # messages in flight when postal was stopped (at most one per
            # thread) were stored but never logged by postal.
            t.check(len(set(foreign)) <= THREADS, "%d received hashes postal never logged (more than the %d "
                    "messages in flight at its stop): %r" % (len(set(foreign)), THREADS, foreign[:5]))
            figures["rabid"] = (len(sessions), dt)
            print("figure: rabid: %d POP3 sessions in %.1f s = %.1f sessions/s, %d messages retrieved (%.1f/s), %d deleted"
                  % (len(sessions), dt, len(sessions) / dt, retr, retr / dt, dele))
        with t.case("Dovecot's log: no Error/Panic/Fatal line; no core"):
            errs = [l for l in dc.log_text().splitlines() if re.search(r"(Error|Panic|Fatal):", l)]
            t.check(not errs, "%d error lines:\n  %s" % (len(errs), "\n  ".join(errs[:10])))
            t.check(not bad_log_lines(dc.log_text()), "crash lines")
            t.check(not cores(dc.tmp), "core files")
        with t.case("lmbox check clean on every store; POP3 STAT = doveadm count"):
            bad = []
            for u in users:
                if not dc.mail_location.startswith("lmbox") or not os.path.exists(os.path.join(dc.mail_root(u), "lmbox.mdb")):
                    continue
                r = dc.lmbox_cli("check", dc.mail_root(u), check=False)
                if r.returncode != 0:
                    bad.append("%s: %s" % (u, (r.stdout + r.stderr).decode(errors="replace")[-300:]))
            t.check(not bad, "lmbox check:\n  " + "\n  ".join(bad[:5]))
            p = dc.raw_pop3(users[0])
            n = p.stat()[0]
            p.quit()
            t.eq(int(dc.mailbox_status(users[0], "messages")["messages"]), n, "STAT vs doveadm")
    t.done()


run(main)
