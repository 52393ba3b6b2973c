#!/usr/bin/env python3
"""Delivery paths into lmbox: one LMTP transaction to several recipients
(Dovecot saves once, then copies from the first recipient's new mail into
the others' stores), a refused recipient in the same transaction, and
dovecot-lda -m into a folder (autocreated).  Every copy is independent: same
bytes and size for all, a deletion at one recipient leaves the others alone."""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, crlf

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
USERS = ("alice", "bob", "carol")


def main():
    check_environment()
    t = Test("LMTP multi-recipient and LDA delivery (%s)" % LOCATION)
    big = msg(2, body=b"".join(b"line %d\r\n" % i for i in range(20000)))
    with Dovecot(mail_location=LOCATION, users=USERS,
                 extra_conf="lda_mailbox_autocreate = yes\n") as dc:
        with t.case("one LMTP transaction to alice, bob, carol and an unknown user", required=True):
            res = dc.lmtp_deliver_multi(list(USERS) + ["nosuchuser"], msg(1))
            t.eq([c for c, _ in res[:3]], [250, 250, 250], "replies for the 3 users: %r" % res)
            t.check(500 <= res[3][0] < 600, "unknown user accepted: %r" % (res[3],))
            res = dc.lmtp_deliver_multi(list(USERS), big)
            t.eq([c for c, _ in res], [250, 250, 250], "replies for a 160 KB message: %r" % res)
        with t.case("each recipient has both messages; LIST = RETR octets; bodies equal across users"):
            bodies = {}
            for u in USERS:
                r = dc.raw_pop3(u)
                lst = r.list()
                t.eq(len(lst), 2, "%s messages" % u)
                for n in (1, 2):
                    b = r.retr(n)
                    t.eq(lst[n], len(b), "%s LIST %d vs RETR" % (u, n))
                    # Delivered-To differs per recipient; the rest must not
                    bodies.setdefault(n, {})[u] = re.sub(rb"(?m)^(Delivered-To:|\tfor ).*\r\n", b"", b)
                r.quit()
            for n in (1, 2):
                vals = list(bodies[n].values())
                t.check(all(v == vals[0] for v in vals), "message %d differs between recipients" % n)
                t.check(vals[0].endswith(crlf(msg(1) if n == 1 else big)), "message %d content" % n)
        with t.case("deleting at alice (POP3 DELE+QUIT) leaves bob's and carol's copies"):
            r = dc.raw_pop3("alice")
            r.ok("DELE 1"); r.ok("DELE 2")
            t.check(r.quit().startswith(b"+OK"), "QUIT")
            for u, n in (("alice", 0), ("bob", 2), ("carol", 2)):
                r = dc.raw_pop3(u)
                t.eq(r.stat()[0], n, "%s STAT" % u)
                if n:
                    t.check(r.retr(2).endswith(crlf(big)), "%s message 2 intact" % u)
                r.quit()
        with t.case("dovecot-lda -m Lists/lmbox autocreates the folder; IMAP sees the message"):
            dc.lda_deliver("bob", msg(3), extra_args=("-m", "Lists/lmbox"))
            st = dc.mailbox_status("bob", "messages", "Lists/lmbox")
            t.eq(st["messages"], "1", "messages in Lists/lmbox")
            m = dc.imap("bob")
            typ, data = m.select("Lists/lmbox", readonly=True)
            t.eq((typ, data[0]), ("OK", b"1"), "IMAP SELECT")
            typ, data = m.fetch("1", "(BODY.PEEK[])")
            t.check(data[0][1].endswith(crlf(msg(3))), "IMAP BODY[]")
            m.logout()
        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


run(main)
