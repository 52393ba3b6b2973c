#!/usr/bin/env python3
"""doveadm on lmbox (issue #3): fetch (text, size.physical, size.virtual,
pop3.uidl, guid) consistent with POP3; search; expunge; move; mailbox
status (messages, vsize, uidvalidity) consistent with POP3/IMAP; mailbox
create/rename/delete/list; force-resync; quota recalc/get with the quota
plugin's count backend, and quota enforcement at delivery."""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, crlf, uses_lmbox

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")

SAVED = [
    b"Subject: one\r\n\r\ncrlf body\r\n",
    b"Subject: two\n\nbare lf body\nsecond line\n",
    b"Subject: three\r\n\r\nno final newline",
    b"Subject: four\r\n\r\n" + b"long line " * 2000 + b"\r\n",
]


def main():
    check_environment()
    t = Test("doveadm (%s)" % LOCATION)
    plugins = (["lmbox"] if uses_lmbox(LOCATION) else []) + ["quota"]
    with Dovecot(mail_location=LOCATION, mail_plugins=plugins,
                 plugin_settings={"quota": "count:User quota", "quota_vsizes": "yes",
                                  "quota_rule": "*:storage=100M:messages=12"}) as dc:
        with t.case("doveadm save x%d, LMTP x2, dovecot-lda x1" % len(SAVED), required=True):
            for data in SAVED:
                dc.doveadm("save", "-u", "alice", "-m", "INBOX", input=data)
            dc.lmtp_deliver("alice", msg(5))
            dc.lmtp_deliver("alice", msg(6, body=b"x" * 70000 + b"\r\n"))
            dc.lda_deliver("alice", msg(7, body=b"via lda\n").replace(b"\r\n", b"\n"))
        n = len(SAVED) + 3
        with t.case("fetch uid size.physical size.virtual pop3.uidl guid: agree with POP3 LIST/UIDL", required=True):
            f = dc.doveadm_fetch("alice", "uid size.physical size.virtual pop3.uidl guid flags")
            t.eq(len(f), n, "messages fetched")
            r = dc.raw_pop3("alice")
            lst, uidl = r.list(), r.uidl()
            r.quit()
            for i, d in enumerate(f, 1):
                t.eq(int(d["size.virtual"]), lst[i], "size.virtual of uid %s vs POP3 LIST %d" % (d["uid"], i))
                t.check(int(d["size.physical"]) <= int(d["size.virtual"]), "physical > virtual: %r" % d)
                t.check(d["guid"], "empty guid for uid %s" % d["uid"])
                if uses_lmbox(LOCATION):
                    t.eq(d["pop3.uidl"], uidl[i], "pop3.uidl of uid %s vs POP3 UIDL" % d["uid"])
            t.eq(len(set(d["guid"] for d in f)), n, "distinct GUIDs")
            fetched = f
        with t.case("fetch text: len = size.physical, CRLF form = saved bytes' CRLF form"):
            texts = dict(dc.doveadm_fetch_texts("alice"))
            for d in fetched:
                u = int(d["uid"])
                t.eq(len(texts[u]), int(d["size.physical"]), "uid %d text length vs size.physical" % u)
                t.eq(len(crlf(texts[u])), int(d["size.virtual"]), "uid %d CRLF text vs size.virtual" % u)
            for i, data in enumerate(SAVED, 1):
                t.eq(crlf(texts[i]), crlf(data), "uid %d text" % i)
        with t.case("mailbox status messages/vsize/uidvalidity/uidnext vs POP3 STAT and IMAP"):
            st = dc.mailbox_status("alice", "messages vsize uidvalidity uidnext guid")
            r = dc.raw_pop3("alice")
            cnt, size = r.stat()
            r.quit()
            t.eq(int(st["messages"]), cnt, "messages")
            t.eq(int(st["vsize"]), size, "vsize vs STAT octets")
            m = dc.imap("alice")
            m.select("INBOX", readonly=True)
            uv = m.response("UIDVALIDITY")[1][0]
            m.logout()
            t.eq(st["uidvalidity"], uv.decode(), "uidvalidity vs IMAP")
            t.eq(int(st["uidnext"]), n + 1, "uidnext")
        with t.case("search: subject, larger, all"):
            r = dc.doveadm("search", "-u", "alice", "mailbox", "INBOX", "subject", "three")
            t.eq([l.split()[1] for l in r.stdout.splitlines()], ["3"], "search subject three")
            r = dc.doveadm("search", "-u", "alice", "mailbox", "INBOX", "larger", "60000")
            t.eq([l.split()[1] for l in r.stdout.splitlines()], ["6"], "search larger")
            r = dc.doveadm("search", "-u", "alice", "mailbox", "INBOX", "all")
            t.eq(len(r.stdout.splitlines()), n, "search all")
        with t.case("quota recalc + quota get (count backend) = messages and vsize"):
            dc.doveadm("quota", "recalc", "-u", "alice")
            q = dc.doveadm("-f", "tab", "quota", "get", "-u", "alice").stdout.splitlines()
            hdr = q[0].lower().split("\t")
            rows = [dict(zip(hdr, l.split("\t"))) for l in q[1:]]
            st = dc.mailbox_status("alice", "messages vsize", "*")
            storage = [x for x in rows if x["type"] == "STORAGE"][0]
            msgs = [x for x in rows if x["type"] == "MESSAGE"][0]
            t.eq(int(msgs["value"]), n, "quota MESSAGE value")
            want_kb = int(dc.mailbox_status("alice", "vsize")["vsize"]) // 1024
            t.check(abs(int(storage["value"]) - want_kb) <= 1,
                    "quota STORAGE %s KB vs vsize %d KB" % (storage["value"], want_kb))
        with t.case("expunge uid 2 via doveadm: gone from POP3, other UIDLs unchanged; quota follows"):
            r = dc.raw_pop3("alice")
            before = r.uidl()
            r.quit()
            dc.doveadm("expunge", "-u", "alice", "mailbox", "INBOX", "uid", "2")
            r = dc.raw_pop3("alice")
            after = r.uidl()
            r.quit()
            t.eq(sorted(after.values()), sorted(v for k, v in before.items() if k != 2), "UIDLs")
            q = dc.doveadm("-f", "tab", "quota", "get", "-u", "alice").stdout.splitlines()
            hdr = q[0].lower().split("\t")
            msgs = [dict(zip(hdr, l.split("\t"))) for l in q[1:] if "\tMESSAGE\t" in l][0]
            t.eq(int(msgs["value"]), n - 1, "quota MESSAGE after expunge")
        with t.case("quota enforcement: deliveries beyond messages=12 are refused, nothing half-stored"):
            codes = []
            for i in range(12 - (n - 1) + 1):
                code, text = dc.lmtp_deliver_raw("alice", msg(100 + i))
                codes.append(code)
            t.check(all(c == 250 for c in codes[:-1]), "deliveries under quota: %r" % codes)
            t.check(codes[-1] >= 400, "over-quota delivery accepted: %r" % codes)
            t.eq(int(dc.mailbox_status("alice", "messages")["messages"]), 12, "messages at quota")
        with t.case("mailbox create/list/rename/delete; move uid 1 to a folder"):
            dc.doveadm("mailbox", "create", "-u", "alice", "Archive")
            dc.doveadm("move", "-u", "alice", "Archive", "mailbox", "INBOX", "uid", "1")
            t.eq(dc.mailbox_status("alice", "messages", "Archive")["messages"], "1", "Archive messages")
            dc.doveadm("mailbox", "rename", "-u", "alice", "Archive", "Old")
            names = dc.doveadm("mailbox", "list", "-u", "alice").stdout.split()
            t.check("Old" in names and "Archive" not in names, "mailbox list %r" % names)
            t.eq(dc.mailbox_status("alice", "messages", "Old")["messages"], "1", "Old messages")
            dc.doveadm("expunge", "-u", "alice", "mailbox", "Old", "all")
            dc.doveadm("mailbox", "delete", "-u", "alice", "Old")
            names = dc.doveadm("mailbox", "list", "-u", "alice").stdout.split()
            t.check("Old" not in names, "mailbox list after delete %r" % names)
        with t.case("force-resync changes nothing visible"):
            def fetch_norecent():
                out = dc.doveadm_fetch("alice", "uid guid pop3.uidl size.virtual flags")
                for d in out:   # \Recent is session state, not stored
                    d["flags"] = " ".join(sorted(f for f in d["flags"].split() if f != "\\Recent"))
                return out
            f1 = fetch_norecent()
            s1 = dc.mailbox_status("alice", "messages vsize uidvalidity uidnext")
            dc.doveadm("force-resync", "-u", "alice", "*")
            t.eq(fetch_norecent(), f1, "fetch")
            t.eq(dc.mailbox_status("alice", "messages vsize uidvalidity uidnext"), s1, "status")
        with t.case("no Error/Panic/Fatal in Dovecot's log (except the quota refusal)"):
            dc.assert_clean_log(allow=(r"[Qq]uota exceeded",))
    t.done()


run(main)
