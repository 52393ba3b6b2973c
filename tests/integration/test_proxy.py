#!/usr/bin/env python3
"""Scale-out path on loopback (DESIGN "Scale-out"): a front Dovecot whose
passdb says proxy=y host=127.0.0.1 port=<backend> forwards POP3 and IMAP to a
backend Dovecot serving lmbox.  Through the proxy, a client sees exactly what
the backend serves (STAT, LIST, UIDL, RETR octets, IMAP FETCH), and a
DELE+QUIT through the proxy commits on the backend."""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")


def main():
    check_environment()
    t = Test("proxy -> lmbox backend on loopback (%s)" % LOCATION)
    with Dovecot(mail_location=LOCATION, users=("alice",)) as back:
        proxy_users = {
            "alice": {"extra": "proxy=y host=127.0.0.1 port=%d" % back.ports["pop3"]},
            "alice-imap": {"extra": "proxy=y host=127.0.0.1 port=%d destuser=alice" % back.ports["imap"]},
        }
        with Dovecot(mail_location="maildir:~/Maildir", users=proxy_users, mail_plugins=[],
                     protocols=("pop3", "imap")) as front:
            with t.case("deliver 4 messages to the backend over LMTP", required=True):
                for i in range(1, 5):
                    back.lmtp_deliver("alice", msg(i, body=b"x" * (i * 1000) + b"\r\n.dot\r\n"))
            with t.case("POP3 through the proxy = POP3 on the backend (STAT, LIST, UIDL, RETR octets)"):
                d = back.raw_pop3("alice")
                want = (d.stat(), d.list(), d.uidl(), [d.retr(i) for i in range(1, 5)])
                d.quit()
                p = front.raw_pop3("alice")
                got = (p.stat(), p.list(), p.uidl(), [p.retr(i) for i in range(1, 5)])
                p.quit()
                t.eq(got, want, "proxied POP3")
                t.check(not os.path.exists(os.path.join(front.home("alice"), "Maildir")),
                        "the front created mail for alice: not proxied?")
            with t.case("DELE 2 + QUIT through the proxy commits on the backend"):
                p = front.raw_pop3("alice")
                gone = p.uidl()[2]
                p.ok("DELE 2")
                t.check(p.quit().startswith(b"+OK"), "QUIT")
                d = back.raw_pop3("alice")
                u = d.uidl()
                d.quit()
                t.eq(len(u), 3, "backend messages")
                t.check(gone not in u.values(), "deleted UIDL still on the backend")
            with t.case("IMAP through the proxy: SELECT, UID FETCH RFC822.SIZE BODY[] as on the backend"):
                m = front.imap("alice-imap")
                typ, data = m.select("INBOX", readonly=True)
                t.eq((typ, data[0]), ("OK", b"3"), "SELECT")
                typ, got = m.uid("FETCH", "1:*", "(RFC822.SIZE BODY.PEEK[])")
                m.logout()
                m = back.imap("alice")
                m.select("INBOX", readonly=True)
                typ, want = m.uid("FETCH", "1:*", "(RFC822.SIZE BODY.PEEK[])")
                m.logout()
                strip = lambda data: [d[1] if isinstance(d, tuple) else d for d in data]
                t.eq(strip(got), strip(want), "proxied FETCH bodies")
            with t.case("no Error/Panic/Fatal in either log"):
                front.assert_clean_log()
                back.assert_clean_log()
    t.done()


run(main)
