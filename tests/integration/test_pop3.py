#!/usr/bin/env python3
"""POP3 from lmbox (issue #3): every command via poplib, a raw socket reader
and curl; LIST octets == bytes RETR sends; content equal to what Dovecot's
own maildir serves for the same saved bytes; DELE/QUIT, RSET and a dropped
connection; UIDLs stable.

Env LMBOX_IT_LOCATION overrides the mail location under test
(default lmbox:~/lmbox) so the same checks can run against maildir/sdbox."""
import os, re, subprocess, sys, poplib
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, Failure

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
poplib._MAXLINE = 4 << 20   # the 1 MB line

RAW = [
    ("crlf", b"From: a@example.org\r\nSubject: crlf\r\n\r\nline one\r\nline two\r\n"),
    ("bare LF", b"From: a@example.org\nSubject: bare lf\n\nline one\nline two\n"),
    ("NUL bytes", b"Subject: nul\r\n\r\nbefore\0after\r\n\0\r\n"),
    ("5000-byte line", b"Subject: long\r\n\r\n" + b"a" * 5000 + b"\r\nshort\r\n"),
    ("1 MB line", b"Subject: huge\r\n\r\n" + b"0123456789abcdef" * 65536 + b"\r\n"),
    ("no final newline", b"Subject: nonl\r\n\r\nlast line without newline"),
    ("lines starting with dots", b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n...three\r\nend\r\n.\r\n"),
    ("mixed CRLF/LF/CR", b"Subject: mixed\r\nX-A: lf\n\r\ncrlf line\r\nlf line\nbare cr\rinside\r\n"),
    ("empty body", b"Subject: empty\r\n\r\n"),
    ("LF, ends in a lone dot", b"Subject: dotend\n\nend with dot\n."),
    ("binary-ish 8bit", b"Subject: 8bit\r\nContent-Type: text/plain; charset=latin1\r\n\r\n" + bytes(range(1, 256)) + b"\r\n"),
]


def ends_nl(data):
    return data.endswith(b"\n")


def main():
    check_environment()
    t = Test("pop3 (%s)" % LOCATION)
    users = {"alice": {}, "bob": {}, "carol": {}, "ref": {"mail": "maildir:~/Maildir"}}
    with Dovecot(mail_location=LOCATION, users=users) as dc:
        # ---------------------------------------------------------------
        with t.case("save %d edge-case messages with doveadm save (alice + maildir reference)" % len(RAW), required=True):
            for name, data in RAW:
                for u in ("alice", "ref"):
                    dc.doveadm("save", "-u", u, "-m", "INBOX", input=data)
        lmtp_msgs = [msg(100), msg(101, body=b"y" * 1048576 + b"\r\n"), msg(102, body=b".dot first\r\n")]
        with t.case("deliver 3 messages over LMTP (one of 1 MB)", required=True):
            for m in lmtp_msgs:
                dc.lmtp_deliver("alice", m)
        nraw = len(RAW)
        total = nraw + len(lmtp_msgs)
        state = {}

        with t.case("raw socket: STAT, LIST, LIST n, UIDL, UIDL n", required=True):
            r = dc.raw_pop3("alice")
            n, size = r.stat()
            t.eq(n, total, "STAT count")
            lst = r.list()
            t.eq(sorted(lst), list(range(1, total + 1)), "LIST numbers")
            t.eq(size, sum(lst.values()), "STAT octets = sum of LIST")
            for i in (1, 5, total):
                t.eq(r.ok("LIST %d" % i), b"+OK %d %d" % (i, lst[i]), "LIST %d" % i)
            uidl = r.uidl()
            t.eq(len(set(uidl.values())), total, "UIDLs distinct")
            for i, u in uidl.items():
                t.check(re.fullmatch(r"[\x21-\x7e]{1,70}", u), "UIDL %d %r not RFC 1939" % (i, u))
            for i in (1, total):
                t.eq(r.ok("UIDL %d" % i).decode(), "+OK %d %s" % (i, uidl[i]), "UIDL %d" % i)
            t.check(r.cmd("LIST %d" % (total + 1)).startswith(b"-ERR"), "LIST of no message must be -ERR")
            t.check(r.cmd("UIDL %d" % (total + 1)).startswith(b"-ERR"), "UIDL of no message must be -ERR")
            r.quit()
            state.update(lst=lst, uidl=uidl)

        with t.case("raw socket: LIST n == exact octets RETR n sends (CRLF form, un-dot-stuffed), every message"):
            r = dc.raw_pop3("alice")
            ref = dc.raw_pop3("ref")
            bad = []
            retr = {}
            for i in range(1, total + 1):
                body = r.retr(i)
                retr[i] = body
                src = RAW[i - 1][1] if i <= nraw else lmtp_msgs[i - nraw - 1]
                octets = len(body) - (0 if ends_nl(src) else 2)   # pop3 adds CRLF before '.' then
                if octets != state["lst"][i]:
                    bad.append("msg %d (%s): LIST %d, RETR sent %d" % (
                        i, RAW[i - 1][0] if i <= nraw else "lmtp", state["lst"][i], octets))
                if i <= nraw:
                    want = ref.retr(i)
                    if body != want:
                        bad.append("msg %d (%s): RETR differs from maildir's (%d vs %d bytes)" % (
                            i, RAW[i - 1][0], len(body), len(want)))
                else:
                    if not body.endswith(src):
                        bad.append("msg %d: RETR does not end with the LMTP-delivered bytes" % i)
            r.quit(); ref.quit()
            state["retr"] = retr
            if bad:
                raise Failure("\n".join(bad))

        with t.case("raw socket: TOP n 0 / TOP n 2 equal maildir's, TOP of 1 MB line message"):
            r = dc.raw_pop3("alice")
            ref = dc.raw_pop3("ref")
            for i in range(1, nraw + 1):
                for k in (0, 2):
                    t.eq(r.top(i, k), ref.top(i, k), "TOP %d %d (%s)" % (i, k, RAW[i - 1][0]))
            r.quit(); ref.quit()

        with t.case("poplib: USER/PASS, STAT, LIST, LIST n, UIDL, UIDL n, RETR, TOP, NOOP, RSET, QUIT"):
            p = dc.pop3("alice")
            t.eq(p.stat(), (total, sum(state["lst"].values())), "poplib STAT")
            resp, lines, _ = p.list()
            t.eq({int(a): int(b) for a, b in (l.split() for l in lines)}, state["lst"], "poplib LIST")
            t.eq(p.list(2), b"+OK 2 %d" % state["lst"][2], "poplib LIST 2")
            resp, lines, _ = p.uidl()
            t.eq({int(a): b.decode() for a, b in (l.split() for l in lines)}, state["uidl"], "poplib UIDL")
            t.eq(p.uidl(3), ("+OK 3 %s" % state["uidl"][3]).encode(), "poplib UIDL 3")
            resp, lines, octets = p.retr(1)
            t.eq(b"\r\n".join(lines) + b"\r\n", state["retr"][1], "poplib RETR 1")
            resp, lines, _ = p.top(nraw + 1, 0)
            t.check(any(l.startswith(b"X-Seq: 100") for l in lines), "TOP header lines")
            t.check(p.noop().startswith(b"+OK"), "NOOP")
            t.check(p.rset().startswith(b"+OK"), "RSET")
            t.check(p.quit().startswith(b"+OK"), "QUIT")

        with t.case("curl: LIST, RETR n, UIDL, TOP n 0 agree with the raw reader"):
            out = dc.curl_pop3("alice", "").stdout
            t.eq({int(a): int(b) for a, b in (l.split() for l in out.split(b"\r\n") if l)},
                 state["lst"], "curl LIST")
            for i in (1, 2, 7, nraw + 2):
                got = dc.curl_pop3("alice", str(i)).stdout
                want = state["retr"][i]
                t.eq(got, want, "curl RETR %d" % i)
            out = dc.curl_pop3("alice", "", extra=("-X", "UIDL")).stdout
            t.eq({int(a): b.decode() for a, b in (l.split() for l in out.split(b"\r\n") if l)},
                 state["uidl"], "curl UIDL")
            url = "pop3://alice:%s@127.0.0.1:%d/1" % (dc.password("alice"), dc.ports["pop3"])
            r = subprocess.run(["curl", "-s", "--max-time", "60", url], stdout=subprocess.PIPE, timeout=120)
            t.eq(r.stdout, state["retr"][1], "curl -s %s" % url)
            out = dc.curl_pop3("alice", "", extra=("-X", "TOP 1 0")).stdout
            t.eq(out, RAW[0][1].split(b"\r\n\r\n")[0] + b"\r\n\r\n", "curl TOP 1 0")

        with t.case("session: DELE hides a message (STAT, LIST n, RETR n -> -ERR), RSET restores, QUIT deletes nothing"):
            r = dc.raw_pop3("alice")
            r.ok("DELE 1")
            t.check(r.cmd("DELE 1").startswith(b"-ERR"), "second DELE 1 must fail")
            n, size = r.stat()
            t.eq((n, size), (total - 1, sum(state["lst"].values()) - state["lst"][1]), "STAT after DELE")
            t.check(r.cmd("LIST 1").startswith(b"-ERR"), "LIST of deleted must fail")
            t.check(r.cmd("RETR 1").startswith(b"-ERR"), "RETR of deleted must fail")
            r.ok("RSET")
            t.eq(r.stat()[0], total, "STAT after RSET")
            r.quit()
            r = dc.raw_pop3("alice")
            t.eq(r.uidl(), state["uidl"], "UIDLs after RSET+QUIT")
            r.quit()

        with t.case("DELE + dropped connection (no QUIT) deletes nothing"):
            r = dc.raw_pop3("alice")
            r.ok("DELE 2")
            r.ok("DELE 3")
            dc.mark_log()
            r.drop()
            # wait until that pop3 process has ended its session
            dc.wait_log(r"pop3\(alice\).*Disconnected")
            p = dc.raw_pop3("alice")
            t.eq(p.uidl(), state["uidl"], "UIDLs after a dropped session")
            t.eq(p.list(), state["lst"], "LIST after a dropped session")
            p.quit()

        with t.case("DELE 2, DELE 4 + QUIT deletes exactly those; others keep UIDL, size, bytes"):
            r = dc.raw_pop3("alice")
            r.ok("DELE 2")
            r.ok("DELE 4")
            q = r.quit()
            t.check(q.startswith(b"+OK"), "QUIT: %r" % q)
            r = dc.raw_pop3("alice")
            keep = [i for i in range(1, total + 1) if i not in (2, 4)]
            uidl = r.uidl()
            t.eq(sorted(uidl.values()), sorted(state["uidl"][i] for i in keep), "remaining UIDLs")
            lst = r.list()
            by_uidl = {state["uidl"][i]: i for i in keep}
            for n, u in uidl.items():
                old = by_uidl[u]
                t.eq(lst[n], state["lst"][old], "size of UIDL %s" % u)
                t.eq(r.retr(n), state["retr"][old], "bytes of UIDL %s" % u)
            r.quit()
            state["uidl2"] = uidl
            state["lst2"] = lst

        with t.case("curl -X 'DELE 1' -I deletes message 1 at its QUIT"):
            gone = state["uidl2"][1]
            dc.curl_pop3("alice", "", extra=("-X", "DELE 1", "-I"))
            r = dc.raw_pop3("alice")
            uidl = r.uidl()
            t.check(gone not in uidl.values(), "UIDL %s still there" % gone)
            t.eq(sorted(uidl.values()), sorted(v for v in state["uidl2"].values() if v != gone), "rest")
            r.quit()
            state["uidl3"] = uidl

        with t.case("UIDLs and sizes unchanged after a Dovecot restart"):
            dc.restart()
            r = dc.raw_pop3("alice")
            t.eq(r.uidl(), state["uidl3"], "UIDL after restart")
            r.quit()

        with t.case("a walk past the dense array's threshold (80 messages): STAT, LIST, UIDL "
                    "agree with single-message lookups, also with a message deleted in the session"):
            n_walk = 80
            for i in range(n_walk - 10):
                dc.lmtp_deliver("carol", msg(200 + i, body=b"w" * (37 * i) + b"\r\n"))
            for i in range(10):
                # bare LF: virtual size above the physical one
                dc.doveadm("save", "-u", "carol", "-m", "INBOX",
                           input=b"Subject: lf %d\n\nline\n%s\n" % (i, b"v" * (51 * i)))
            r = dc.raw_pop3("carol")
            count, octets = r.stat()
            t.eq(count, n_walk, "STAT count")
            lst = r.list()
            uidl = r.uidl()
            t.eq(octets, sum(lst.values()), "STAT octets = sum of LIST")
            t.eq(len(set(uidl.values())), n_walk, "UIDLs distinct")
            # one message at a time, in another process (no walk, no dense array)
            for n in (1, 33, 34, 70, 71, n_walk):
                f = dc.doveadm_fetch("carol", "uid size.virtual pop3.uidl",
                                     query=("mailbox", "INBOX", "uid", str(n)))
                t.eq(len(f), 1, "doveadm fetch of uid %d" % n)
                t.eq(lst[n], int(f[0]["size.virtual"]), "LIST %d = its virtual size" % n)
                t.eq(uidl[n], f[0]["pop3.uidl"], "UIDL %d = its stored UIDL" % n)
            t.check(lst[n_walk] > len(b"Subject: lf 9\n\nline\n") + 51 * 9 + 1,
                    "bare-LF message counted with CRLFs")
            r.ok("DELE 40")
            t.eq(r.stat(), (n_walk - 1, octets - lst[40]), "STAT after DELE 40")
            lst2 = r.list()
            uidl2 = r.uidl()
            t.eq(lst2, {k: v for k, v in lst.items() if k != 40}, "LIST after DELE 40")
            t.eq(uidl2, {k: v for k, v in uidl.items() if k != 40}, "UIDL after DELE 40")
            r.ok("RSET")
            t.eq(r.list(), lst, "LIST after RSET")
            r.quit()

        with t.case("bob's mailbox is separate and empty; wrong password refused"):
            r = dc.raw_pop3("bob")
            t.eq(r.stat(), (0, 0), "bob STAT")
            r.quit()
            r = dc.raw_pop3()
            r.ok("USER alice")
            t.check(r.cmd("PASS wrong").startswith(b"-ERR"), "wrong password accepted")
            r.close()

        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log(allow=(r"auth.*(Password mismatch|unknown user)",))
    t.done()


run(main)
