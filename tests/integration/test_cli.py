#!/usr/bin/env python3
"""The `lmbox` admin CLI and Dovecot agree about a store Dovecot wrote
(README/DESIGN: the store is the authority; the CLI needs no Dovecot):
`lmbox ls` folder counts/vsizes/UIDVALIDITY/next UID = doveadm mailbox
status, per-message sizes and flags = POP3 LIST / IMAP FLAGS, UIDLs = what
POP3 serves, `lmbox uidl` finds a message by the UIDL a client reports,
`lmbox cat` = doveadm fetch text, `lmbox check [--bodies]` finds no problem
after deliveries, flag changes, copies and a POP3 QUIT.  And the migration
path `lmbox import-maildir`: Dovecot then serves the imported store with
the maildir's UIDLs (P fields and default ones), sizes, bytes and flags."""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import (Dovecot, Test, run, check_environment, msg, Skip, uses_lmbox,
                       set_maildir_pop3_uidls)

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}


def cli_ls(dc, root, folder=None):
    args = ["ls", root] + ([folder] if folder else [])
    out = dc.lmbox_cli(*args).stdout.decode(errors="replace").splitlines()
    rows = [l.split() for l in out[1:] if l.strip()]
    if folder is None:   # FOLDER COUNT VSIZE UIDVALIDITY NEXT_UID
        return {r[0]: {"count": int(r[1]), "vsize": int(r[2]), "uidvalidity": r[3], "next": int(r[4])}
                for r in rows}
    out = {}             # UID UIDL VSIZE PSIZE STORED FLAGS RECEIVED SAVED [KEYWORDS...]
    for r in rows:
        out[int(r[0])] = {"uidl": r[1], "vsize": int(r[2]), "psize": int(r[3]),
                          "flags": "" if r[5] == "-" else r[5], "keywords": sorted(r[8:])}
    return out


def main():
    check_environment()
    if not uses_lmbox(LOCATION):
        raise Skip("the lmbox CLI only reads lmbox stores (LMBOX_IT_LOCATION=%s)" % LOCATION)
    t = Test("lmbox CLI vs Dovecot")
    users = {"alice": {}, "md": {"mail": "maildir:~/Maildir"}, "imp": {}}
    with Dovecot(mail_location=LOCATION, users=users) as dc:
        root = dc.mail_root("alice")
        with t.case("Dovecot writes: 6 LMTP deliveries, IMAP flags/keyword, COPY to Archive, POP3 DELE 1+QUIT",
                    required=True):
            for i in range(1, 7):
                dc.lmtp_deliver("alice", msg(i, body=b"line\n" * (i * 30)))
            m = dc.imap("alice")
            m.select("INBOX")
            m.store("2", "+FLAGS", r"(\Flagged \Seen $Work)")
            m.store("3", "+FLAGS", r"(\Answered \Draft)")
            m.create("Archive")
            m.copy("2:3", "Archive")
            m.logout()
            r = dc.raw_pop3("alice")
            r.ok("DELE 1")
            t.check(r.quit().startswith(b"+OK"), "QUIT")
        with t.case("lmbox ls DIR = doveadm mailbox status (messages, vsize, uidvalidity, uidnext)"):
            ls = cli_ls(dc, root)
            t.eq(sorted(ls), ["Archive", "INBOX"], "folders")
            for box in ls:
                st = dc.mailbox_status("alice", "messages vsize uidvalidity uidnext", box)
                t.eq(ls[box]["count"], int(st["messages"]), "%s count" % box)
                t.eq(ls[box]["vsize"], int(st["vsize"]), "%s vsize" % box)
                t.eq(ls[box]["uidvalidity"], st["uidvalidity"], "%s uidvalidity" % box)
                t.eq(ls[box]["next"], int(st["uidnext"]), "%s next uid" % box)
        with t.case("lmbox ls DIR INBOX: sizes = doveadm size.virtual/physical, flags+keywords = IMAP's"):
            rows = cli_ls(dc, root, "INBOX")
            f = {int(d["uid"]): d for d in dc.doveadm_fetch("alice", "uid size.virtual size.physical flags")}
            t.eq(sorted(rows), sorted(f), "UIDs")
            for uid, row in rows.items():
                t.eq(row["vsize"], int(f[uid]["size.virtual"]), "UID %d vsize" % uid)
                t.eq(row["psize"], int(f[uid]["size.physical"]), "UID %d psize" % uid)
                fl = [x for x in f[uid]["flags"].split() if x != "\\Recent"]
                t.eq("".join(sorted(LETTERS[x] for x in fl if x in LETTERS)), "".join(sorted(row["flags"])),
                     "UID %d flags" % uid)
                t.eq(row["keywords"], sorted(x for x in fl if not x.startswith("\\")), "UID %d keywords" % uid)
        with t.case("lmbox ls UIDL column = the UIDL POP3 serves; lmbox uidl finds it"):
            rows = cli_ls(dc, root, "INBOX")
            r = dc.raw_pop3("alice")
            uidl = r.uidl()
            r.quit()
            by_uid = sorted(rows)   # POP3 order is UID order here
            served = [uidl[n] for n in sorted(uidl)]
            t.eq([rows[u]["uidl"] for u in by_uid], served, "UIDLs (lmbox ls vs POP3 UIDL)")
            for u, s in zip(by_uid, served):
                res = dc.lmbox_cli("uidl", root, "INBOX", s, check=False)
                t.check(res.returncode == 0, "lmbox uidl %s (as POP3 serves it) exited %d: %s"
                        % (s, res.returncode, res.stderr.decode(errors="replace").strip()))
                t.check(re.search(rb"(?im)^uid\s+%d\b" % u, res.stdout), "lmbox uidl %s: %r" % (s, res.stdout))
        with t.case("lmbox cat DIR FOLDER UID = doveadm fetch text, every message of both folders"):
            for box in ("INBOX", "Archive"):
                for uid, text in dc.doveadm_fetch_texts("alice", query=("mailbox", box, "all")):
                    t.eq(dc.lmbox_cli("cat", root, box, str(uid)).stdout, text, "%s UID %d" % (box, uid))
        with t.case("lmbox check DIR and check --bodies: no problem"):
            for extra in ([], ["--bodies"]):
                r = dc.lmbox_cli("check", root, *extra, check=False)
                t.check(r.returncode == 0, "lmbox check %s exited %d:\n%s%s" % (
                    " ".join(extra), r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")))
        legacy = {1: "legacy-0001", 2: "UID2-ab.cd", 4: "y" * 70}
        with t.case("maildir source with Archive folder, flags, POP3 UIDLs (P fields) for 3 of 5", required=True):
            for i in range(1, 6):
                dc.doveadm("save", "-u", "md", input=msg(i, body=b"maildir body %d\n" % i))
            set_maildir_pop3_uidls(dc, "md", legacy)
            dc.doveadm("mailbox", "create", "-u", "md", "Archive")
            dc.doveadm("copy", "-u", "md", "Archive", "mailbox", "INBOX", "uid", "5")
            dc.doveadm("flags", "add", "-u", "md", "\\Flagged \\Seen", "mailbox", "INBOX", "uid", "2")
            src = dc.pop3_by_message_id("md")
            t.check({v[0] for v in src.values()} >= set(legacy.values()), "maildir serves %r" % src)
        with t.case("lmbox import-maildir, then POP3 on the store = POP3 on the maildir (UIDLs, sizes, bytes)"):
            r = dc.lmbox_cli("import-maildir", os.path.join(dc.home("md"), "Maildir"), dc.mail_root("imp"),
                             check=False)
            t.check(r.returncode == 0, "import-maildir exited %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))
            got = dc.pop3_by_message_id("imp")
            t.eq(sorted(got), sorted(src), "messages")
            for k in src:
                t.eq(got[k][0], src[k][0], "UIDL of %s" % k)
                t.eq(got[k][1], src[k][1], "size of %s" % k)
                t.eq(got[k][2], src[k][2], "RETR bytes of %s" % k)
        with t.case("imported store: folders, flags, UIDVALIDITY as in the maildir"):
            for box in ("INBOX", "Archive"):
                a = dc.mailbox_status("md", "messages uidvalidity uidnext", box)
                b = dc.mailbox_status("imp", "messages uidvalidity uidnext", box)
                t.eq(b, a, "%s status" % box)
                fa = [(d["uid"], d["flags"].replace("\\Recent", "").strip())
                      for d in dc.doveadm_fetch("md", "uid flags", query=("mailbox", box, "all"))]
                fb = [(d["uid"], d["flags"].replace("\\Recent", "").strip())
                      for d in dc.doveadm_fetch("imp", "uid flags", query=("mailbox", box, "all"))]
                t.eq(fb, fa, "%s flags" % box)
        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


run(main)
