#!/usr/bin/env python3
"""Disk full through Dovecot (issue 5).  alice's home (mail root and
Dovecot's index files) is a small tmpfs (mount -t tmpfs -o size=...; needs
root, else exit 77).  Deliveries of incompressible messages fill it:

  - the delivery that does not fit gets a temporary LMTP error (4xx, with
    Dovecot's quota_full_tempfail = yes; without it Dovecot answers any
    "Not enough disk space" with 552 5.2.2, for maildir too), never
    a 5xx and never a 250 for mail that is not stored, with a clear log line;
  - nothing committed is damaged: every message that got 250 is served
    byte-exact by POP3 (LIST size = RETR octets), `lmbox check --bodies` clean;
  - with the file system then filled to the last block by another file,
    POP3 DELE+QUIT still works (the store keeps space in reserve for
    deletions) and deletes exactly those messages;
  - once space is freed, delivery works again; bob (another file system)
    is served throughout; no Panic/Fatal/core."""
import os
import random
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reltest import pop3_view, bad_log_lines, cores  # noqa: E402
from lmboxtest import Dovecot, Test, run, check_environment, Skip, Failure  # noqa: E402

SIZE_MB = 6
FULL_LOG = r"(Not enough disk space|No space left on device|ENOSPC|disk full|Disk full)"


def message(rng, n, size):
    body = b"\r\n".join(rng.randbytes(38).hex().encode() for _ in range(size // 78 + 1))
    return (b"From: full@example.org\r\nSubject: full %d\r\nMessage-ID: <full-%d@reltest>\r\n\r\n"
            % (n, n) + body + b"\r\n"), b"<full-%d@reltest>" % n


def fill(path):
    """Fill the file system of path to its last byte with a file; returns
    the bytes written."""
    total = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 4096, 512, 1):
            buf = b"\0" * chunk
            for _ in range(100000):
                try:
                    w = os.write(fd, buf)
                except OSError:
                    break
                total += w
                if w < chunk:
                    break
    finally:
        os.close(fd)
    return total


def main():
    check_environment()
    if os.geteuid() != 0:
        raise Skip("needs root to mount a small tmpfs for the mail root")
    t = Test("disk full (%d MB tmpfs under alice's home)" % SIZE_MB)
    rng = random.Random(7)
    # Dovecot maps a full disk to its quota error (MAIL_ERROR_NOQUOTA, "Not
    # enough disk space", like maildir/mdbox do); LMTP answers that with
    # 552 5.2.2 unless quota_full_tempfail = yes, which makes it 452 4.2.2.
    # The operator setting for a temporary error is that one.
    dc = Dovecot(users=("alice", "bob"), extra_conf="quota_full_tempfail = yes")
    dc.setup()
    home = dc.home("alice")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0700,uid=%d,gid=%d" % (SIZE_MB, dc.uid, dc.gid),
                        "reltest-full", home], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        dc.stop()
        raise Skip("cannot mount tmpfs: %s" % r.stderr.decode(errors="replace").strip())
    tmp = dc.tmp
    filler = os.path.join(home, "filler")
    try:
        with dc:
            delivered = {}   # mid -> bytes sent
            with open(os.path.join(home, "ballast"), "wb") as f:   # freed at the end
                f.write(b"\0" * (1 << 20))
            with t.case("fill with 150 KB messages: 250 until full, then 4xx (not 5xx), clear log line", required=True):
                dc.mark_log()
                code = 250
                for n in range(400):
                    data, mid = message(rng, n, 150000 if n < 1000 else 2000)
                    code, txt = dc.lmtp_deliver_raw("alice", data)
                    if code != 250:
                        break
                    delivered[mid] = data
                t.check(400 <= code < 500, "delivery %d on a full disk answered %d %r" % (n, code, txt))
                print("      %d messages stored, then %d %s" % (len(delivered), code, txt.decode(errors="replace")))
                m = dc.wait_log(FULL_LOG)
                line = [l for l in dc.log_since_mark().splitlines() if re.search(FULL_LOG, l)][0]
                print("      log: %s" % line)
            with t.case("small messages until full too (4xx), then the file system filled to the last byte"):
                for k in range(2000):
                    data, mid = message(rng, 1000 + k, 1500)
                    code, txt = dc.lmtp_deliver_raw("alice", data)
                    if code != 250:
                        break
                    delivered[mid] = data
                t.check(400 <= code < 500, "small delivery answered %d %r" % (code, txt))
                wrote = fill(filler)
                st = os.statvfs(home)
                print("      %d messages in all; filler took %d more bytes; %d blocks free"
                      % (len(delivered), wrote, st.f_bavail))
                for k in range(200):   # the last partly used blocks may still take a small one
                    data, mid = message(rng, 5000 + k, 500)
                    code, txt = dc.lmtp_deliver_raw("alice", data)
                    if code != 250:
                        break
                    delivered[mid] = data
                t.check(400 <= code < 500, "delivery on a 100%% full disk answered %d %r" % (code, txt))

            def check_all(what):
                view = pop3_view(dc, "alice")
                for mid, data in delivered.items():
                    t.check(mid in view, "%s: %s missing" % (what, mid))
                    t.eq(len(view[mid]), 1, "%s: copies of %s" % (what, mid))
                    uidl, size, body = view[mid][0]
                    t.check(body.endswith(data), "%s: %s bytes differ" % (what, mid))
                    t.eq(size, len(body), "%s: LIST size of %s" % (what, mid))
                t.eq(sorted(view), sorted(delivered), "%s: the set of messages" % what)
                r = dc.lmbox_cli("check", "--bodies", dc.mail_root("alice"), check=False)
                t.check(r.returncode == 0, "%s: lmbox check --bodies exit %d: %s%s" % (
                    what, r.returncode, r.stdout.decode(errors="replace")[-600:],
                    r.stderr.decode(errors="replace")[-600:]))

            with t.case("on the full disk: every committed message byte-exact, lmbox check --bodies clean"):
                check_all("full disk")
            with t.case("on the full disk: POP3 DELE+QUIT of 3 messages answers +OK and deletes exactly those"):
                dc.mark_log()
                r = dc.raw_pop3("alice")
                uidl = r.uidl()
                lst = r.list()
                gone = []
                for n in (1, 2, len(lst)):
                    body = r.retr(n)
                    gone.append(re.search(rb"Message-ID: (<[^>]+>)", body).group(1))
                    r.ok("DELE %d" % n)
                q = r.quit()
                t.check(q.startswith(b"+OK"), "QUIT on a full disk answered %r\n%s" % (q, dc.log_since_mark()[-1500:]))
                for g in gone:
                    del delivered[g]
                st = os.statvfs(home)
                print("      after QUIT: %d blocks free; store files: %s" % (st.f_bavail, subprocess.run(
                    ["du", "-a", "--block-size=1", dc.mail_root("alice")], stdout=subprocess.PIPE).stdout.decode()[-600:]))
                check_all("after QUIT on the full disk")
                after = dc.raw_pop3("alice")
                left = set(after.uidl().values())
                after.quit()
                t.eq(left, set(uidl.values()) - {uidl[1], uidl[2], uidl[len(lst)]}, "UIDLs left")
            with t.case("bob (another file system) is served while alice's disk is full"):
                dc.lmtp_deliver("bob", message(rng, 9000, 3000)[0])
                p = dc.raw_pop3("bob")
                t.eq(p.stat()[0], 1, "bob STAT")
                p.quit()
            with t.case("space freed: delivery works again, byte-exact, lmbox check clean"):
                dc.mark_log()
                os.unlink(filler)
                os.unlink(os.path.join(home, "ballast"))
                for k in range(3):
                    data, mid = message(rng, 7000 + k, 100000)
                    code, txt = dc.lmtp_deliver_raw("alice", data)
                    t.eq(code, 250, "delivery after freeing space (%r): %s" % (txt, dc.log_since_mark()[-800:]))
                    delivered[mid] = data
                check_all("after freeing space")
            with t.case("log: no Panic/Fatal/signal, no core files"):
                bad = bad_log_lines(dc.log_text())
                t.check(not bad, "bad log lines:\n  " + "\n  ".join(bad[:10]))
                t.check(not cores(dc.tmp), "core files: %r" % cores(dc.tmp))
                errs = [l for l in dc.log_text().splitlines() if "Error:" in l]
                print("      %d Error lines, all of the disk-full kind: %s" % (
                    len(errs), all(re.search(FULL_LOG + "|Quota|quota|space", l) for l in errs)))
                for l in errs[:4]:
                    print("        " + l[:200])
    finally:
        subprocess.run(["umount", "-l", home], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if tmp and os.environ.get("LMBOX_KEEP_TMP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
    t.done()


run(main)
