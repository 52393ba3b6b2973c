#!/usr/bin/env python3
"""Index loss (issue #3, DESIGN "the store is the authority"): delete every
Dovecot index file of the user (dovecot.index*, dovecot.list.index*,
dovecot-uidlist, ... anywhere under the home, never the lmbox store files
lmbox.mdb*, seg/), then POP3, IMAP and doveadm must show the same messages,
UIDs, UIDVALIDITY, UIDLs, sizes and flags: on the next access, after a
restart, and after `doveadm force-resync`.  (maildir/sdbox/mdbox fail this by
design; LMBOX_IT_LOCATION can point the test at them to see how.)"""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, Failure

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
N = 30


def snapshot(dc, t, user):
    """Everything a client can see that must survive an index loss."""
    s = {}
    r = dc.raw_pop3(user)
    s["stat"] = r.stat()
    s["list"] = r.list()
    s["uidl"] = r.uidl()
    r.quit()
    m = dc.imap(user)
    try:
        for box in ("INBOX", "Archive"):
            typ, data = m.select(box, readonly=True)
            if typ != "OK":
                raise Failure("SELECT %s: %r" % (box, data))
            typ, uv = m.response("UIDVALIDITY")
            typ, data = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)")
            rows = []
            for d in data:
                if d is None:
                    continue
                line = d.decode() if isinstance(d, bytes) else d[0].decode()
                mm = re.search(r"UID (\d+)", line)
                ff = re.search(r"FLAGS \(([^)]*)\)", line)
                sz = re.search(r"RFC822\.SIZE (\d+)", line)
                if mm:
                    rows.append((int(mm.group(1)), tuple(sorted(f for f in ff.group(1).split() if f != "\\Recent")),
                                 int(sz.group(1))))
            s["imap:" + box] = (uv[0], sorted(rows))
            st = dc.mailbox_status(user, "messages vsize uidvalidity uidnext", box)
            s["status:" + box] = st
    finally:
        m.logout()
    f = dc.doveadm_fetch(user, "uid guid pop3.uidl size.virtual size.physical")
    s["doveadm"] = sorted((d["uid"], d["guid"], d["pop3.uidl"], d["size.virtual"],
                           d["size.physical"]) for d in f)
    return s


def compare(t, before, after, what):
    bad = []
    for k in before:
        if before[k] != after.get(k):
            b, a = repr(before[k]), repr(after.get(k))
            bad.append("%s: %s\n        before %s\n        after  %s" % (what, k, b[:400], a[:400]))
    if bad:
        raise Failure("\n".join(bad))


def main():
    check_environment()
    t = Test("index loss (%s)" % LOCATION)
    with Dovecot(mail_location=LOCATION) as dc:
        with t.case("deliver %d messages (LMTP + doveadm save with bare LFs), set flags, copy 3 to Archive" % N,
                    required=True):
            for i in range(1, N + 1):
                if i % 3 == 0:
                    dc.doveadm("save", "-u", "alice", input=b"Subject: lf %d\n\nbody %d\n.dot\n" % (i, i))
                else:
                    dc.lmtp_deliver("alice", msg(i, body=b"body %d\r\n" % i * (i % 7 + 1)))
            m = dc.imap("alice")
            t.eq(m.create("Archive")[0], "OK", "CREATE Archive")
            m.select("INBOX")
            t.eq(m.store("2:4", "+FLAGS", r"(\Flagged \Answered)")[0], "OK", "STORE flags")
            t.eq(m.store("5", "+FLAGS", r"(\Seen $Label1)")[0], "OK", "STORE keyword")
            t.eq(m.copy("6:8", "Archive")[0], "OK", "COPY to Archive")
            m.logout()
        with t.case("snapshot: POP3 STAT/LIST/UIDL, IMAP UIDs/FLAGS/UIDVALIDITY, doveadm status+fetch",
                    required=True):
            before = snapshot(dc, t, "alice")
            t.eq(before["stat"][0], N, "messages")

        with t.case("delete every Dovecot index file; next access shows the same everything"):
            files = dc.delete_index_files("alice")
            print("      deleted %d files: %s" % (len(files), ", ".join(
                sorted(set(os.path.basename(f) for f in files)))))
            store = [f for f in files if re.search(r"lmbox\.mdb|/seg/", f)]
            t.check(not store, "deleted store files?! %s" % store)
            if not files:
                print("      note: no Dovecot index files were found under the home")
            compare(t, before, snapshot(dc, t, "alice"), "after index loss")

        with t.case("delete index files, restart Dovecot: same everything"):
            dc.delete_index_files("alice")
            dc.restart()
            compare(t, before, snapshot(dc, t, "alice"), "after index loss + restart")

        with t.case("delete index files, doveadm force-resync -u alice '*': same everything"):
            dc.delete_index_files("alice")
            dc.doveadm("force-resync", "-u", "alice", "*")
            compare(t, before, snapshot(dc, t, "alice"), "after force-resync")

        with t.case("force-resync with intact indexes changes nothing"):
            dc.doveadm("force-resync", "-u", "alice", "*")
            compare(t, before, snapshot(dc, t, "alice"), "after 2nd force-resync")

        with t.case("after index loss, POP3 DELE 1..3 + QUIT deletes exactly those, others keep UIDLs"):
            dc.delete_index_files("alice")
            r = dc.raw_pop3("alice")
            for i in (1, 2, 3):
                r.ok("DELE %d" % i)
            t.check(r.quit().startswith(b"+OK"), "QUIT")
            dc.delete_index_files("alice")
            r = dc.raw_pop3("alice")
            uidl = r.uidl()
            lst = r.list()
            r.quit()
            want = [before["uidl"][i] for i in range(4, N + 1)]
            t.eq(sorted(uidl.values()), sorted(want), "UIDLs after DELE+QUIT and a 2nd index loss")
            old = {v: before["list"][k] for k, v in before["uidl"].items()}
            for n, u in uidl.items():
                t.eq(lst[n], old[u], "size of %s" % u)

        with t.case("new delivery after index loss gets a fresh UID above the old ones, UIDVALIDITY kept"):
            dc.delete_index_files("alice")
            dc.lmtp_deliver("alice", msg(999))
            st = dc.mailbox_status("alice")
            t.eq(st["uidvalidity"], before["status:INBOX"]["uidvalidity"], "UIDVALIDITY")
            t.check(int(st["uidnext"]) > int(before["status:INBOX"]["uidnext"]),
                    "UIDNEXT %s not above %s" % (st["uidnext"], before["status:INBOX"]["uidnext"]))
            r = dc.raw_pop3("alice")
            uidl = r.uidl()
            r.quit()
            t.eq(len(uidl), N - 3 + 1, "messages")
            t.check(len(set(uidl.values())) == len(uidl), "UIDLs distinct")
            t.check(not (set(uidl.values()) & set(before["uidl"][i] for i in (1, 2, 3))),
                    "a deleted message's UIDL was reused")

        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


run(main)
