#!/usr/bin/env python3
"""A POP3 session whose view is older than another session's committed
QUIT.  Session A logs in and sees N messages; session B deletes half of them
and quits (the expunges are committed, the space given back after B's
answer).  A then goes on with the view it logged in with, on the paths that
read the store's metadata in the middle of a session:
- RETR of more than 32 of B's deleted messages (the folder's metadata array
  is built from a newer snapshot mid-session; each answer is either the
  whole message as delivered or -ERR, never a wrong message);
- UIDL of every message (the same UIDLs as at login) and LIST;
- DELE of more than a quarter of the folder, B's messages among them, and
  QUIT: the expunge search looks up GUIDs past the single-lookup limit.
Then: the folder is empty, nothing came back, and Dovecot's log has no
Error, Panic or Fatal (a crash of the pop3 process after its QUIT answer
shows only there)."""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, check_environment, msg

N = 120
SEQ_RE = re.compile(rb"\r\nX-Seq: (\d+)\r\n")


def main():
    check_environment()
    t = Test("a POP3 session older than another session's QUIT")
    with Dovecot() as dc:
        with t.case("deliver %d messages over LMTP" % N, required=True):
            for i in range(1, N + 1):
                dc.lmtp_deliver("alice", msg(i, body=b"line of message %d\r\n" % i * (20 + i)))
            r = dc.raw_pop3("alice")
            t.eq(r.stat()[0], N, "messages after delivery")
            uidls = r.uidl()
            r.quit()
        a = dc.raw_pop3("alice")
        with t.case("A logs in; B deletes the first half and quits", required=True):
            t.eq(a.stat()[0], N, "A's STAT")
            b = dc.raw_pop3("alice")
            for n in range(1, N // 2 + 1):
                b.ok("DELE %d" % n)
            t.check(b.quit().startswith(b"+OK"), "B's QUIT answered +OK")
            c = dc.raw_pop3("alice")
            t.eq(c.stat()[0], N - N // 2, "a new session's STAT after B's QUIT")
            c.quit()
        with t.case("A: RETR of 40 of B's deleted messages: each whole or -ERR"):
            whole = errs = 0
            for n in range(1, 41):
                r = a.cmd("RETR %d" % n)
                if r.startswith(b"+OK"):
                    body = a.multiline()
                    m = SEQ_RE.search(body)
                    t.check(m is not None and int(m.group(1)) == n,
                            "RETR %d sent message %r" % (n, m and m.group(1)))
                    t.check(body.endswith((b"line of message %d\r\n" % n) * 3),
                            "RETR %d: the body as delivered" % n)
                    whole += 1
                else:
                    t.check(r.startswith(b"-ERR"), "RETR %d -> %r" % (n, r))
                    errs += 1
            t.eq(whole + errs, 40, "answers")
        with t.case("A: UIDL lists the UIDLs of its login, LIST every message"):
            t.eq(a.uidl(), uidls, "UIDL")
            t.eq(len(a.list()), N, "LIST")
        with t.case("A: DELE of 30 of B's and all of the second half, QUIT +OK"):
            for n in list(range(1, 31)) + list(range(N // 2 + 1, N + 1)):
                a.ok("DELE %d" % n)
            t.check(a.quit().startswith(b"+OK"), "A's QUIT answered +OK")
        with t.case("the folder is empty; nothing came back"):
            r = dc.raw_pop3("alice")
            t.eq(r.stat(), (0, 0), "STAT")
            r.quit()
            t.eq(dc.doveadm_fetch("alice", "uid"), [], "doveadm fetch")
        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


if __name__ == "__main__":
    main()
