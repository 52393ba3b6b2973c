#!/usr/bin/env python3
"""Upgrade Dovecot 2.3 -> 2.4 -> 2.3 on one lmbox store (issue 11).

Three phases on one directory, each run by the Dovecot it names (the 2.3
phases on a Debian 12 host, the 2.4 phase in the Debian 13 chroot of
build-aux/check-dovecot24.sh, which runs them in turn):

    test_upgrade24.py write23 DIR   2.3 build: a store with folders, flags,
                                    deleted and kept messages, and POP3 UIDLs
                                    imported by dsync from a maildir; snapshot
    test_upgrade24.py open24 DIR    2.4 build: the same folders, messages,
                                    UIDs, UIDLs, sizes, flags and bytes; then
                                    LMTP delivery, POP3 DELE+QUIT, doveadm
                                    expunge and flag changes; snapshot
    test_upgrade24.py back23 DIR    2.3 again: the 2.4 snapshot, and delivery
                                    and deletion still work

The snapshot (DIR/snap-<phase>.json) is doveadm fetch of every folder (uid,
flags, sizes, pop3.uidl, guid, a hash of the text), folder status
(uidvalidity, uidnext) and POP3 UIDL/LIST of the INBOX.  Without a phase
argument (plain `make check`) the script skips.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import (Dovecot, Test, run, check_environment, msg, Skip, Failure,
                       set_maildir_pop3_uidls, dovecot_version)

USERS = {"alice": {}, "md": {"mail": "maildir:~/Maildir"}}
LEGACY = {1: "legacy-0001", 2: "UID2-ab.cd_ef", 3: "x" * 70}


def snapshot(dc, user="alice"):
    boxes = sorted(dc.doveadm("mailbox", "list", "-u", user).stdout.split())
    out = {"boxes": {}}
    for b in boxes:
        q = ("mailbox", b, "all")
        f = dc.doveadm_fetch(user, "uid flags size.physical size.virtual pop3.uidl guid", query=q)
        texts = dict(dc.doveadm_fetch_texts(user, query=q))
        st = dc.mailbox_status(user, "messages uidvalidity uidnext", mailbox=b)
        out["boxes"][b] = {
            "status": st,
            "msgs": [{"uid": d["uid"],
                      "flags": " ".join(sorted(x for x in d["flags"].split() if x != "\\Recent")),
                      "size.physical": d["size.physical"], "size.virtual": d["size.virtual"],
                      "pop3.uidl": d["pop3.uidl"], "guid": d["guid"],
                      "text": hashlib.sha256(texts[int(d["uid"])]).hexdigest()} for d in f],
        }
    r = dc.raw_pop3(user)
    lst, uidl = r.list(), r.uidl()
    r.quit()
    out["pop3"] = [[n, uidl[n], lst[n]] for n in sorted(lst)]
    return out


def compare(t, got, want, what):
    bad = []
    for b in sorted(set(got["boxes"]) | set(want["boxes"])):
        g, w = got["boxes"].get(b), want["boxes"].get(b)
        if g is None or w is None:
            bad.append("folder %s only in %s" % (b, "the new view" if w is None else "the old one"))
        elif g != w:
            for k in ("status", "msgs"):
                if g[k] != w[k]:
                    bad.append("folder %s %s:\n  now    %r\n  before %r" % (b, k, g[k], w[k]))
    if got["pop3"] != want["pop3"]:
        bad.append("POP3 UIDL/LIST:\n  now    %r\n  before %r" % (got["pop3"], want["pop3"]))
    if bad:
        raise Failure("%s:\n%s" % (what, "\n".join(bad)))


def instance(d):
    """A Dovecot on the kept directory D, whose files the mail uid of this
    host owns (the 2.3 host and the 2.4 chroot have their own lmboxtest)."""
    for sub in ("modules", "run", "state"):
        shutil.rmtree(os.path.join(d, sub), ignore_errors=True)
    dc = Dovecot(users={u: dict(i) for u, i in USERS.items()}, keep_dir=d)
    dc.setup()
    subprocess.run(["chown", "-R", "%d:%d" % (dc.uid, dc.gid), os.path.join(d, "home")], check=True)
    return dc


def save(d, name, snap):
    with open(os.path.join(d, "snap-%s.json" % name), "w") as f:
        json.dump(snap, f, indent=1, sort_keys=True)


def load(d, name):
    with open(os.path.join(d, "snap-%s.json" % name)) as f:
        return json.load(f)


def uidl_of(snap, n):
    return snap["pop3"][n - 1][1]


def write23(t, d):
    with instance(d) as dc:
        with t.case("2.3: maildir user with POP3 UIDLs, doveadm backup into lmbox", required=True):
            for i in range(1, 5):
                dc.doveadm("save", "-u", "md", "-m", "INBOX", input=msg(i))
            set_maildir_pop3_uidls(dc, "md", LEGACY)
            dc.doveadm("backup", "-u", "md", "lmbox:%s/lmbox" % dc.home("alice"))
        with t.case("2.3: LMTP, folders Work and Archive/2024, flags, POP3 DELE, expunge", required=True):
            for i in range(10, 14):
                dc.lmtp_deliver("alice", msg(i, body=b"delivered by 2.3 %d\r\n" % i))
            dc.doveadm("mailbox", "create", "-u", "alice", "Work", "Archive", "Archive/2024")
            for i in range(20, 24):
                dc.doveadm("save", "-u", "alice", "-m", "Work", input=msg(i))
            dc.doveadm("save", "-u", "alice", "-m", "Archive/2024", input=msg(30, body=b"y" * 5000))
            dc.doveadm("flags", "add", "-u", "alice", "\\Seen \\Flagged $Label1", "mailbox", "INBOX", "uid", "1")
            dc.doveadm("flags", "add", "-u", "alice", "\\Answered", "mailbox", "Work", "uid", "2")
            dc.doveadm("expunge", "-u", "alice", "mailbox", "Work", "uid", "3")
            r = dc.raw_pop3("alice")
            r.ok("DELE 5")
            r.quit()
        with t.case("2.3: snapshot (INBOX keeps the imported UIDLs)", required=True):
            s = snapshot(dc)
            t.eq([uidl_of(s, n) for n in (1, 2, 3)], [LEGACY[1], LEGACY[2], LEGACY[3]], "imported UIDLs")
            t.eq(len(s["pop3"]), 7, "INBOX messages")
            save(d, "write23", s)
        with t.case("2.3: no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()


def open24(t, d, before, after, label):
    with instance(d) as dc:
        with t.case("%s opens the store: same folders, UIDs, flags, sizes, UIDLs, bytes" % label,
                    required=True):
            compare(t, snapshot(dc), load(d, before), "%s vs %s" % (label, before))
        with t.case("%s: LMTP delivery, POP3 DELE+QUIT, doveadm expunge and flags" % label, required=True):
            n0 = len(load(d, before)["pop3"])
            dc.lmtp_deliver("alice", msg(40 + n0, body=b"delivered by %s\r\n" % label.encode()))
            dc.doveadm("save", "-u", "alice", "-m", "Work", input=msg(60 + n0))
            r = dc.raw_pop3("alice")
            gone = r.uidl()[2]
            r.ok("DELE 2")
            r.quit()
            dc.doveadm("flags", "add", "-u", "alice", "$Label2", "mailbox", "Work", "all")
            dc.doveadm("expunge", "-u", "alice", "mailbox", "Archive/2024", "all")
            s = snapshot(dc)
            t.eq(len(s["pop3"]), n0, "INBOX messages (one in, one out)")
            t.check(gone not in [u for _, u, _ in s["pop3"]], "deleted UIDL %s still served" % gone)
            t.eq(s["boxes"]["Archive/2024"]["status"]["messages"], "0", "Archive/2024 after expunge")
            save(d, after, s)
        with t.case("%s: restart, same view" % label):
            dc.restart()
            compare(t, snapshot(dc), load(d, after), "%s after restart" % label)
        with t.case("%s: no Error/Panic/Fatal in Dovecot's log" % label):
            dc.assert_clean_log()


def main():
    check_environment()
    if len(sys.argv) < 3 or sys.argv[1] not in ("write23", "open24", "back23"):
        raise Skip("run by build-aux/check-dovecot24.sh (phases write23, open24, back23)")
    phase, d = sys.argv[1], os.path.abspath(sys.argv[2])
    want = (2, 4) if phase == "open24" else (2, 3)
    if dovecot_version() != want:
        raise Skip("phase %s needs Dovecot %d.%d, this is %r" % ((phase,) + want + (dovecot_version(),)))
    t = Test("upgrade %s (Dovecot %d.%d, %s)" % ((phase,) + dovecot_version() + (d,)))
    if phase == "write23":
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        write23(t, d)
    elif phase == "open24":
        open24(t, d, "write23", "open24", "2.4")
    else:
        open24(t, d, "open24", "back23", "2.3 again")
    t.done()


run(main)
