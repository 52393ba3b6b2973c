#!/usr/bin/env python3
"""Each message's POP3 size is kept in its Dovecot index record (extension
lmbox-vsize, docs/plugin.md): the login walk and LIST read it there
instead of the store's metadata.  It must be the store's size whatever
way the message came in:
- LMTP delivery and doveadm save (bare LFs: POP3 size > physical size);
- IMAP COPY and MOVE from another folder (the store copies, the index
  record is new);
- the index rebuilt from the store after every Dovecot index file is lost;
- an empty message (size 0: not recorded, the store answers).
Checked: LIST octets == bytes RETR sends == doveadm's size.virtual.  (That
the walk reads the index and not the store is a cost, measured with
callgrind in docs/plugin.md.)"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, check_environment, msg


def pop3_sizes(dc, user):
    r = dc.raw_pop3(user)
    try:
        lst = r.list()
        got = {n: len(r.retr(n)) for n in sorted(lst)}
        r.quit()
    finally:
        r.close()
    return lst, got


def main():
    check_environment()
    t = Test("POP3 sizes in the index records (lmbox-vsize)")
    with Dovecot() as dc:
        with t.case("deliver: 4 over LMTP, 3 by doveadm save with bare LFs, 1 empty", required=True):
            for i in range(4):
                dc.lmtp_deliver("alice", msg(i, body=b"text %d\r\n" % i * (100 * (i + 1))))
            for i in range(3):
                dc.doveadm("save", "-u", "alice", input=b"Subject: lf %d\n\n" % i + b"bare lf line\n" * (30 * (i + 1)))
            dc.doveadm("save", "-u", "alice", input=b"")
        with t.case("IMAP: 3 saved to Old, 1 COPY and 2 MOVE into INBOX", required=True):
            dc.doveadm("mailbox", "create", "-u", "alice", "Old")
            for i in range(3):
                dc.doveadm("save", "-u", "alice", "-m", "Old",
                           input=b"Subject: old %d\n\n" % i + b"old line\n" * (40 * (i + 1)))
            m = dc.imap("alice")
            m.select("Old")
            t.eq(m.copy("1", "INBOX")[0], "OK", "COPY")
            typ, _ = m._simple_command("MOVE", "2:3", "INBOX")
            t.eq(typ, "OK", "MOVE")
            m.logout()
        total = 4 + 3 + 1 + 3

        def check(what):
            lst, got = pop3_sizes(dc, "alice")
            t.eq(len(lst), total, "%s: messages" % what)
            # (an empty message is sent as one empty line: 2 bytes)
            t.eq({n: v for n, v in lst.items() if v != 0}, {n: v for n, v in got.items() if lst[n] != 0},
                 "%s: LIST octets vs bytes RETR sends" % what)
            fetched = dc.doveadm_fetch("alice", "uid size.virtual")
            t.eq([int(f["size.virtual"]) for f in fetched], [lst[n] for n in sorted(lst)],
                 "%s: doveadm size.virtual vs LIST" % what)
            t.check(0 in [lst[n] for n in lst], "%s: the empty message is listed with 0 octets" % what)

        with t.case("LIST = RETR = size.virtual = the index records' lmbox-vsize", required=True):
            check("warm")
        with t.case("after every Dovecot index file is lost: the same, the records rebuilt from the store"):
            dc.delete_index_files("alice")
            check("rebuilt")
        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


if __name__ == "__main__":
    main()
