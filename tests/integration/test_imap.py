#!/usr/bin/env python3
"""IMAP on lmbox (issue #3) via imaplib: APPEND (flags, internal date, bare
LF, NUL, 1 MB), SELECT, FETCH BODY[]/RFC822.SIZE/FLAGS/INTERNALDATE (equal to
what Dovecot's maildir serves for the same APPENDs), STORE, SEARCH, EXPUNGE,
COPY, MOVE, CREATE/RENAME/DELETE folders, STATUS; and that POP3 and IMAP see
the same mailbox."""
import os, re, sys, imaplib
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, Failure

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
imaplib._MAXLINE = 4 << 20

APPENDS = [
    (r"(\Seen)", '"01-Jan-2020 10:00:00 +0000"', b"Subject: one\r\n\r\nfirst\r\n"),
    (r"(\Flagged $Work)", '"15-Jun-2021 12:30:45 +0200"', b"Subject: two\nX-LF: yes\n\nbare lf body\n.dot\n"),
    ("()", '"31-Dec-2022 23:59:59 -0500"', b"Subject: three\r\n\r\nnul\0byte and 8bit \xe9\r\n"),
    (r"(\Answered)", '"02-Feb-2023 02:02:02 +0000"', b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 1051),
    ("()", '"03-Mar-2024 03:03:03 +0000"', b"Subject: nonl\r\n\r\nno final newline"),
]


def fetch(m, uidset, items):
    """UID FETCH -> {uid: {item: value}} with BODY[] as bytes."""
    typ, data = m.uid("FETCH", uidset, items)
    if typ != "OK":
        raise Failure("UID FETCH %s %s: %r" % (uidset, items, data))
    out = {}
    for d in data:
        if d is None or d == b")":
            continue
        if isinstance(d, tuple):
            head, lit = d
        else:
            head, lit = d, None
        head = head.decode(errors="replace")
        mu = re.search(r"UID (\d+)", head)
        if not mu:
            continue
        rec = out.setdefault(int(mu.group(1)), {})
        mf = re.search(r"FLAGS \(([^)]*)\)", head)
        if mf:
            rec["FLAGS"] = tuple(sorted(f for f in mf.group(1).split() if f != "\\Recent"))
        ms = re.search(r"RFC822\.SIZE (\d+)", head)
        if ms:
            rec["SIZE"] = int(ms.group(1))
        mi = re.search(r'INTERNALDATE "([^"]+)"', head)
        if mi:
            rec["INTERNALDATE"] = mi.group(1)
        if lit is not None:
            rec["BODY"] = lit
    return out


def uids(m, criteria="ALL"):
    typ, data = m.uid("SEARCH", None, criteria)
    if typ != "OK":
        raise Failure("SEARCH %s: %r" % (criteria, data))
    return [int(x) for x in data[0].split()]


def ok(t, res, what):
    typ, data = res
    if typ != "OK":
        raise Failure("%s: %s %r" % (what, typ, data))
    return data


def main():
    check_environment()
    t = Test("imap (%s)" % LOCATION)
    users = {"alice": {}, "ref": {"mail": "maildir:~/Maildir"}}
    with Dovecot(mail_location=LOCATION, users=users) as dc:
        m = ref = None
        try:
            with t.case("APPEND %d messages (flags, dates, bare LF, NUL, 1 MB, no final newline) + reference" % len(APPENDS),
                        required=True):
                m = dc.imap("alice")
                ref = dc.imap("ref")
                for flags, date, data in APPENDS:
                    ok(t, m.append("INBOX", flags, date, data), "APPEND")
                    ok(t, ref.append("INBOX", flags, date, data), "APPEND ref")
            with t.case("SELECT: EXISTS, UIDVALIDITY, UIDNEXT", required=True):
                data = ok(t, m.select("INBOX"), "SELECT")
                t.eq(int(data[0]), len(APPENDS), "EXISTS")
                uv = m.response("UIDVALIDITY")[1][0]
                t.check(uv and int(uv) > 0, "UIDVALIDITY %r" % uv)
                ok(t, ref.select("INBOX"), "SELECT ref")
            with t.case("FETCH BODY[] RFC822.SIZE FLAGS INTERNALDATE equal maildir's; SIZE = len(BODY[])"):
                got = fetch(m, "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])")
                want = fetch(ref, "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])")
                t.eq(sorted(got), list(range(1, len(APPENDS) + 1)), "UIDs 1..n")
                for u in got:
                    for k in ("FLAGS", "SIZE", "INTERNALDATE", "BODY"):
                        t.eq(got[u].get(k), want[u].get(k), "UID %d %s" % (u, k))
                    t.eq(got[u]["SIZE"], len(got[u]["BODY"]), "UID %d RFC822.SIZE vs BODY[]" % u)
            with t.case("FETCH BODY[HEADER], BODY[TEXT], BODY[]<0.10> partials equal maildir's"):
                for part in ("BODY.PEEK[HEADER]", "BODY.PEEK[TEXT]", "BODY.PEEK[]<0.10>", "BODY.PEEK[1]"):
                    got = fetch(m, "1:*", "(UID %s)" % part)
                    want = fetch(ref, "1:*", "(UID %s)" % part)
                    for u in want:
                        t.eq(got.get(u, {}).get("BODY"), want[u].get("BODY"), "UID %d %s" % (u, part))
            with t.case("STORE +FLAGS/-FLAGS/keywords; persists across logout"):
                ok(t, m.uid("STORE", "1", "+FLAGS", r"(\Flagged $Label1)"), "STORE +")
                ok(t, m.uid("STORE", "2", "-FLAGS", r"(\Flagged)"), "STORE -")
                ok(t, m.uid("STORE", "3", "FLAGS", r"(\Draft)"), "STORE =")
                m.logout()
                m = dc.imap("alice")
                ok(t, m.select("INBOX"), "SELECT")
                f = fetch(m, "1:3", "(UID FLAGS)")
                t.eq(f[1]["FLAGS"], ("$Label1", "\\Flagged", "\\Seen"), "flags of 1")
                t.eq(f[2]["FLAGS"], ("$Work",), "flags of 2")
                t.eq(f[3]["FLAGS"], ("\\Draft",), "flags of 3")
            with t.case("SEARCH FLAGGED / SUBJECT / BODY / LARGER"):
                t.eq(uids(m, "FLAGGED"), [1], "SEARCH FLAGGED")
                t.eq(uids(m, 'SUBJECT "three"'), [3], "SEARCH SUBJECT")
                t.eq(uids(m, 'BODY "bare lf body"'), [2], "SEARCH BODY")
                t.eq(uids(m, "LARGER 100000"), [4], "SEARCH LARGER")
            with t.case("CREATE Work, Work/Sub; LIST; STATUS of an empty folder"):
                ok(t, m.create("Work"), "CREATE Work")
                ok(t, m.create("Work/Sub"), "CREATE Work/Sub")
                data = ok(t, m.list(), "LIST")
                names = [d.decode().rsplit(" ", 1)[-1].strip('"') for d in data]
                for n in ("INBOX", "Work", "Work/Sub"):
                    t.check(n in names, "LIST lacks %s: %r" % (n, names))
                t.check(m.create("Work")[0] == "NO", "CREATE of an existing folder must be NO")
                data = ok(t, m.status("Work", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"), "STATUS")
                t.check(re.search(rb"MESSAGES 0\b", data[0]), "STATUS Work %r" % data)
            with t.case("COPY 1:2 to Work: bytes, flags, internal date kept; COPYUID; source unchanged"):
                src = fetch(m, "1:2", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
                typ, data = m.uid("COPY", "1:2", "Work")
                t.eq(typ, "OK", "COPY")
                ok(t, m.select("Work"), "SELECT Work")
                dst = fetch(m, "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
                t.eq(len(dst), 2, "messages in Work")
                for (su, s), (du, d) in zip(sorted(src.items()), sorted(dst.items())):
                    for k in ("FLAGS", "INTERNALDATE", "BODY"):
                        t.eq(d[k], s[k], "copy of UID %d %s" % (su, k))
                ok(t, m.select("INBOX"), "SELECT INBOX")
                t.eq(uids(m), [1, 2, 3, 4, 5], "INBOX after COPY")
            with t.case("MOVE UID 3 to Work/Sub: gone from INBOX, same bytes there"):
                body3 = fetch(m, "3", "(UID BODY.PEEK[])")[3]["BODY"]
                typ, data = m.uid("MOVE", "3", "Work/Sub")
                t.eq(typ, "OK", "MOVE: %r" % data)
                t.eq(uids(m), [1, 2, 4, 5], "INBOX after MOVE")
                ok(t, m.select("Work/Sub"), "SELECT Work/Sub")
                got = fetch(m, "1:*", "(UID BODY.PEEK[])")
                t.eq([g["BODY"] for g in got.values()], [body3], "moved message")
                ok(t, m.select("INBOX"), "SELECT INBOX")
            with t.case("STORE \\Deleted + EXPUNGE removes exactly UID 2; other UIDs unchanged"):
                ok(t, m.uid("STORE", "2", "+FLAGS", r"(\Deleted)"), "STORE \\Deleted")
                ok(t, m.expunge(), "EXPUNGE")
                t.eq(uids(m), [1, 4, 5], "UIDs after EXPUNGE")
                m.logout()
                m = dc.imap("alice")
                ok(t, m.select("INBOX"), "SELECT")
                t.eq(uids(m), [1, 4, 5], "UIDs after re-login")
            with t.case("RENAME Work -> Projects (child follows), DELETE Projects/Sub, STATUS counts"):
                ok(t, m.rename("Work", "Projects"), "RENAME")
                data = ok(t, m.list(), "LIST")
                names = [d.decode().rsplit(" ", 1)[-1].strip('"') for d in data]
                t.check("Projects" in names and "Projects/Sub" in names and "Work" not in names,
                        "LIST after RENAME: %r" % names)
                data = ok(t, m.status("Projects", "(MESSAGES)"), "STATUS Projects")
                t.check(re.search(rb"MESSAGES 2\b", data[0]), "STATUS Projects %r" % data)
                data = ok(t, m.status("Projects/Sub", "(MESSAGES)"), "STATUS Projects/Sub")
                t.check(re.search(rb"MESSAGES 1\b", data[0]), "STATUS Projects/Sub %r" % data)
                ok(t, m.delete("Projects/Sub"), "DELETE Projects/Sub")
                data = ok(t, m.list(), "LIST")
                names = [d.decode().rsplit(" ", 1)[-1].strip('"') for d in data]
                t.check("Projects/Sub" not in names, "LIST after DELETE: %r" % names)
                data = ok(t, m.status("INBOX", "(MESSAGES UIDNEXT UNSEEN)"), "STATUS INBOX")
                t.check(re.search(rb"MESSAGES 3\b", data[0]) and re.search(rb"UIDNEXT 6\b", data[0]),
                        "STATUS INBOX %r" % data)
            with t.case("POP3 sees the IMAP mailbox: 3 messages, sizes = RFC822.SIZE"):
                sizes = fetch(m, "1:*", "(UID RFC822.SIZE)")
                r = dc.raw_pop3("alice")
                lst = r.list()
                r.quit()
                t.eq(sorted(lst.values()), sorted(v["SIZE"] for v in sizes.values()), "POP3 LIST vs IMAP sizes")
            with t.case("LMTP delivery shows up in an open IMAP session (NOOP -> EXISTS)"):
                dc.lmtp_deliver("alice", msg(7))
                typ, data = m.noop()
                t.eq(uids(m), [1, 4, 5, 6], "UIDs after delivery")
        finally:
            for c in (m, ref):
                if c is not None:
                    try:
                        c.logout()
                    except (imaplib.IMAP4.error, OSError):
                        pass
        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


run(main)
