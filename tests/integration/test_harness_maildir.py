#!/usr/bin/env python3
"""Harness self-test without lmbox: the same harness with maildir (and sdbox,
mdbox) delivers over LMTP and dovecot-lda and serves POP3, IMAP and doveadm.
If this fails, the harness or the environment is broken, not lmbox."""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, crlf


def main():
    check_environment()
    t = Test("harness self-test (maildir, sdbox, mdbox; no lmbox plugin)")
    for loc in ("maildir:~/Maildir", "sdbox:~/sdbox", "mdbox:~/mdbox"):
        with Dovecot(mail_location=loc) as dc:
            msgs = [msg(i) for i in range(1, 4)]
            with t.case("%s: LMTP x2 + dovecot-lda x1 delivery" % loc):
                dc.lmtp_deliver("alice", msgs[0])
                dc.lmtp_deliver("alice", msgs[1])
                dc.lda_deliver("alice", msgs[2])
            with t.case("%s: POP3 STAT = sum(LIST), LIST n = octets of RETR n" % loc):
                r = dc.raw_pop3("alice")
                n, size = r.stat()
                t.eq(n, 3, "STAT count")
                lst = r.list()
                t.eq(size, sum(lst.values()), "STAT size")
                for i in range(1, 4):
                    body = r.retr(i)
                    t.eq(lst[i], len(body), "LIST %d vs RETR octets" % i)
                    t.check(body.endswith(crlf(msgs[i - 1])), "RETR %d content" % i)
                r.quit()
            with t.case("%s: poplib + imaplib + doveadm agree" % loc):
                p = dc.pop3("alice")
                t.eq(p.stat()[0], 3, "poplib STAT")
                p.quit()
                m = dc.imap("alice")
                typ, data = m.select("INBOX")
                t.eq(data[0], b"3", "IMAP SELECT EXISTS")
                m.logout()
                st = dc.mailbox_status("alice")
                t.eq(st["messages"], "3", "doveadm mailbox status messages")
            with t.case("%s: no errors in the log" % loc):
                dc.assert_clean_log()
    t.done()


run(main)
