#!/usr/bin/env python3
"""dsync migration into lmbox (issue #3): `doveadm backup -u USER lmbox:...`
from maildir and sdbox users, `doveadm sync` from an mdbox user, whose
messages carry POP3 UIDLs (maildir: P fields in dovecot-uidlist, as left by
a migration from another server; sdbox/mdbox: filled from that maildir by
dsync) and one message without one.  After the migration, the lmbox copy
serves the same folders, bytes (doveadm fetch text, POP3 RETR), sizes, flags
and the POP3 UIDLs the source served.
Then two-way `doveadm sync` carries new mail both ways, and `doveadm backup`
from lmbox back to a fresh maildir gives the same bytes and UIDLs again."""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, crlf, Failure, set_maildir_pop3_uidls

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
DRIVER = LOCATION.split(":", 1)[0]
TARGET_DIR = LOCATION.split(":", 1)[1].split(":", 1)[0].replace("~/", "", 1)
MSGID_RE = re.compile(rb"(?im)^Message-ID: (<[^>]+>)")

SOURCE_MSGS = [
    msg(1),
    msg(2, body=b"bare lf body\nline two\n").replace(b"\r\n", b"\n"),
    msg(3, body=b".leading dot\r\n" + b"w" * 3000 + b"\r\n"),
    msg(4, body=b"to be flagged\r\n"),
    msg(5, body=b"no final newline"),
    msg(6, body=b"in the Archive folder\r\n"),
    msg(7, body=b"no legacy UIDL\r\n"),
]
LEGACY = {1: "legacy-0001", 2: "UID2-ab.cd_ef", 3: "0000000300000001", 4: "x" * 70, 5: "5!~#", 6: "arch-6"}


def store_view(dc, user):
    """{mailbox: {message-id: (flags, size.physical, size.virtual, text)}} via doveadm."""
    boxes = sorted(dc.doveadm("mailbox", "list", "-u", user).stdout.split())
    out = {}
    for b in boxes:
        f = dc.doveadm_fetch(user, "uid flags size.physical size.virtual",
                             query=("mailbox", b, "all"))
        texts = dict(dc.doveadm_fetch_texts(user, query=("mailbox", b, "all")))
        box = {}
        for d in f:
            text = texts[int(d["uid"])]
            mid = MSGID_RE.search(text).group(1)
            flags = tuple(sorted(x for x in d["flags"].split() if x != "\\Recent"))
            box[mid] = (flags, d["size.physical"], d["size.virtual"], text)
        out[b] = box
    return out


def crlf_view(v):
    """store_view with texts in CRLF form and no physical size: Dovecot's
    maildir stores LF (mail_save_crlf = no) whatever it is given."""
    return {box: {k: (f, "-", vs, crlf(text)) for k, (f, ps, vs, text) in msgs.items()}
            for box, msgs in v.items()}


def diff_views(a, b, what):
    bad = []
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            bad.append("%s: %s only in %s" % (what, k, "source" if k in a else "copy"))
            continue
        if isinstance(a[k], dict):
            try:
                diff_views(a[k], b[k], "%s %s" % (what, k))
            except Failure as e:
                bad.append(str(e))
        elif a[k] != b[k]:
            fa = [x if not isinstance(x, bytes) or len(x) < 80 else x[:60] + b"...(%d bytes)" % len(x) for x in a[k]]
            fb = [x if not isinstance(x, bytes) or len(x) < 80 else x[:60] + b"...(%d bytes)" % len(x) for x in b[k]]
            bad.append("%s %s:\n    source %r\n    copy   %r" % (what, k, fa, fb))
    if bad:
        raise Failure("\n".join(bad))


def main():
    check_environment()
    t = Test("dsync migration into %s" % DRIVER)
    # X = source user with the source format; Xlm = same home, lmbox location.
    users = {}
    for src, loc in (("md", "maildir:~/Maildir"), ("sd", "sdbox:~/sdbox"), ("mm", "mdbox:~/mdbox")):
        users[src] = {"mail": loc}
    users["back"] = {"mail": "maildir:~/Maildir"}
    with Dovecot(mail_location=LOCATION, users=users) as dc:
        # the lmbox views ("mdlm" ...) share the source users' homes
        for src in ("md", "sd", "mm"):
            dc.add_user(src + "lm", home=dc.home(src))
        sources = {}
        with t.case("maildir source: 7 messages, Archive folder, flags, POP3 UIDLs in dovecot-uidlist", required=True):
            for m in SOURCE_MSGS:
                dc.doveadm("save", "-u", "md", "-m", "INBOX", input=m)
            dc.doveadm("mailbox", "create", "-u", "md", "Archive")
            dc.doveadm("move", "-u", "md", "Archive", "mailbox", "INBOX", "uid", "6")
            set_maildir_pop3_uidls(dc, "md", LEGACY)
            dc.doveadm("flags", "add", "-u", "md", "\\Flagged $Legacy", "mailbox", "INBOX", "uid", "4")
            dc.doveadm("flags", "add", "-u", "md", "\\Seen \\Answered", "mailbox", "INBOX", "uid", "1")
            pv = dc.pop3_by_message_id("md")
            served = sorted(v[0] for v in pv.values())
            want = sorted(LEGACY[i] for i in (1, 2, 3, 4, 5))
            t.check(set(want) <= set(served), "maildir serves %r, want legacy %r" % (served, want))
        with t.case("sdbox and mdbox sources made from it by doveadm backup (they keep the UIDLs)", required=True):
            for src, loc in (("sd", "sdbox"), ("mm", "mdbox")):
                dc.doveadm("backup", "-u", "md", "%s:%s/%s" % (loc, dc.home(src), loc))
                got = sorted(v[0] for v in dc.pop3_by_message_id(src).values())
                t.eq(got, sorted(v[0] for v in dc.pop3_by_message_id("md").values()), "%s UIDLs" % src)
        for src in ("md", "sd", "mm"):
            with t.case("%s: snapshot source (doveadm fetch per folder, POP3 UIDL/LIST/RETR)" % src, required=True):
                sources[src] = (store_view(dc, src), dc.pop3_by_message_id(src))
            how = "sync" if src == "mm" else "backup"   # both ways to migrate
            with t.case("%s -> %s: doveadm %s -u %s %s:~/%s" % (src, DRIVER, how, src, DRIVER, TARGET_DIR)):
                dc.doveadm(how, "-u", src, "%s:%s/%s" % (DRIVER, dc.home(src), TARGET_DIR))
            with t.case("%s: folders, bytes, sizes, flags identical in the copy" % src):
                diff_views(sources[src][0], store_view(dc, src + "lm"), src)
            with t.case("%s: POP3 on the copy serves the source's UIDLs, sizes and bytes" % src):
                diff_views(sources[src][1], dc.pop3_by_message_id(src + "lm"), src + " pop3")
        with t.case("doveadm sync (two-way): new mail on either side reaches the other"):
            dc.lmtp_deliver("mdlm", msg(50))
            dc.doveadm("save", "-u", "md", input=msg(51))
            dc.doveadm("sync", "-u", "md", "%s:%s/%s" % (DRIVER, dc.home("md"), TARGET_DIR))
            a, b = dc.pop3_by_message_id("md"), dc.pop3_by_message_id("mdlm")
            for u in ("md", "mdlm"):
                f = dc.doveadm_fetch(u, "uid pop3.uidl hdr.message-id")
                print("      %-4s after sync: %s" % (u, ", ".join(
                    "%s:%s:%s" % (d["uid"], d.get("hdr.message-id", "?").split("-")[-1].split("@")[0],
                                  d["pop3.uidl"] or "-") for d in f)))
            t.eq(sorted(a), sorted(b), "message-ids after sync")
            t.eq(len(a), len(sources["md"][1]) + 2, "messages after sync")
            for k in a:
                t.eq(a[k][0], b[k][0], "UIDL of %s" % k)
                t.eq(a[k][2], b[k][2], "bytes of %s" % k)
        with t.case("doveadm backup from lmbox back to a fresh maildir: same text (CRLF form), flags, UIDLs"):
            dc.doveadm("backup", "-u", "mdlm", "maildir:%s/Maildir" % dc.home("back"))
            diff_views(crlf_view(store_view(dc, "mdlm")), crlf_view(store_view(dc, "back")), "back")
            diff_views(dc.pop3_by_message_id("mdlm"), dc.pop3_by_message_id("back"), "back pop3")
        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


run(main)
