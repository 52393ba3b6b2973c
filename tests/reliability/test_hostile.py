#!/usr/bin/env python3
"""Hostile input through Dovecot (issue 5).  Each case: a clear log line and
a clean -ERR / NO / LMTP 4xx, never a crash (no Panic, Fatal, signal, core,
ASan report), and other users and other messages keep working.

Messages (LMTP in, POP3 RETR out byte-exact, LIST = octets, IMAP
BODYSTRUCTURE/FETCH answered): NUL bytes, 8-bit headers, a 1 MB single line,
malformed MIME (unterminated boundaries, 200 nested multiparts, broken
encodings and header folding), a 50 MB body.

Damaged stores (each its own user, mail delivered first, Dovecot's index
files removed so the store is read): bytes flipped inside a segment's
compressed body; a message record in lmbox.mdb damaged in place; the store's
format version set above this build's (mdb_dump/mdb_load); lmbox.mdb
truncated; the mail root owned by another uid (root only).

(test_pop3.py covers the POP3 octet rules of odd messages and
test_errors.py an unwritable home; this script goes through LMTP and adds
the damaged stores.)"""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reltest import pop3_view, bad_log_lines, cores  # noqa: E402
from lmboxtest import Dovecot, Test, run, check_environment, Failure, msg  # noqa: E402

BIG_MB = int(os.environ.get("RELIABILITY_BIG_MB", "50"))
SYS_ERR = re.compile(rb"^-ERR( \[(SYS/TEMP|SYS/PERM|IN-USE)\])?")
DAMAGED = ("seg", "meta", "newer", "trunc", "owner")


def hostile_messages():
    out = []
    base = b"From: hostile@example.org\r\nTo: alice@example.org\r\n"
    out.append(("NUL bytes", base + b"Subject: nul\r\nMessage-ID: <h-nul@reltest>\r\n\r\nab\0cd\r\n\0\0\0\r\nend\0\r\n"))
    out.append(("8-bit headers", base + b"Subject: \xe4\xf6\xfc \xff\xfe caf\xc3\xa9\r\nX-Bin: \x80\x81\x82\x9b[31m\r\n"
                b"Message-ID: <h-8bit@reltest>\r\nFrom: \xd0\x9f\xd1\x80\xd0\xb8 <x@example.org>\r\n\r\nbody \xa0\xa1\r\n"))
    out.append(("1 MB single line", base + b"Subject: long line\r\nMessage-ID: <h-longline@reltest>\r\n\r\n"
                + b"x" * (1 << 20) + b"\r\n"))
    out.append(("1 MB header line", base + b"Message-ID: <h-longhdr@reltest>\r\nSubject: " + b"y" * (1 << 20)
                + b"\r\n\r\nbody\r\n"))
    nested = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n" % (i, i + 1) for i in range(200))
    out.append(("malformed MIME", base + b"Subject: mime\r\nMessage-ID: <h-mime@reltest>\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\npreamble\r\n" + nested +
                b"--b200\r\nContent-Transfer-Encoding: base64\r\nContent-Type: text/plain; charset=\"\r\n\r\n"
                b"!!!not base64===\r\n--b200\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=\r\n"
                b"--b7--\r\n--nonexistent--\r\n"))
    out.append(("broken headers", b"Message-ID: <h-hdr@reltest>\r\n: empty name\r\n folded without header\r\n"
                b"No-Colon-Here\r\nSubject: =?utf-8?B?////?= =?x?Q?\r\n\r\n\r\n\r\n"))
    return out


def big_message():
    head = b"From: big@example.org\r\nSubject: big\r\nMessage-ID: <h-big@reltest>\r\n\r\n"
    line = os.urandom(BIG_MB * (1 << 20) // 2).hex().encode()
    body = b"\r\n".join(line[i:i + 76] for i in range(0, len(line), 76)) + b"\r\n"
    return head + body


def ends_with_sent(served, sent):
    """LMTP prepends trace headers: served = those + exactly what was sent."""
    if not served.endswith(sent):
        return False
    return re.fullmatch(rb"((Return-Path|Delivered-To|Received): [^\r\n]*\r\n([ \t][^\r\n]*\r\n)*)*",
                        served[:len(served) - len(sent)]) is not None


def session(dc, user):
    """Log in and walk the mailbox: returns (what happened, details) with
    every answer a +OK or a clean -ERR; raises on anything else."""
    r = dc.raw_pop3()
    r.ok("USER " + user)
    resp = r.cmd("PASS " + dc.password(user))
    if not resp.startswith(b"+OK"):
        r.close()
        return "login -ERR", resp
    try:
        st = r.cmd("STAT")
    except (OSError, Failure) as e:
        return "closed at STAT", str(e)
    if not st.startswith(b"+OK"):
        r.close()
        if not SYS_ERR.match(st):
            raise Failure("STAT answered %r" % st)
        return "STAT -ERR", st
    n = int(st.split()[1])
    got = {}
    for i in range(1, n + 1):
        try:
            a = r.cmd("RETR %d" % i)
        except (OSError, Failure) as e:
            got[i] = "closed"
            break
        if a.startswith(b"+OK"):
            try:
                got[i] = r.multiline()
            except (OSError, Failure):
                got[i] = "closed mid-RETR"
                break
        elif SYS_ERR.match(a):
            got[i] = a.decode(errors="replace")[:60]
        else:
            raise Failure("RETR %d answered %r" % (i, a))
    r.close()
    return "session", (st, got)


def flip_segment(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        b = f.read(32)
        f.seek(size // 2)
        f.write(bytes(x ^ 0x5A for x in b))


def damage_msg_record(mdb, uidl):
    """Overwrite fields of the message record whose UIDL is uidl, wherever a
    copy of it lies in lmbox.mdb (LMDB pages are copy-on-write)."""
    data = bytearray(open(mdb, "rb").read())
    n = 0
    for mo in re.finditer(re.escape(uidl.encode()) + b"\0", bytes(data)):
        p = mo.start() - 92
        if p >= 0 and data[p] == 1 and data[p + 3] == len(uidl):
            data[p + 2] = 0x77                           # codec: unknown
            data[p + 32:p + 40] = b"\xff" * 8            # phys_size: huge
            data[p + 64:p + 72] = b"\x00\x00\x00\x7f" * 2  # seg_offset: beyond any segment
            n += 1
    if not n:
        raise Failure("message record of UIDL %s not found in %s" % (uidl, mdb))
    with open(mdb, "r+b") as f:
        f.write(bytes(data))
    return n


def set_format(dc, mdb, version):
    """Set the meta key "format" with mdb_dump/mdb_load (lmdb-utils)."""
    if not shutil.which("mdb_dump") or not shutil.which("mdb_load"):
        raise Failure("mdb_dump/mdb_load (lmdb-utils) not installed")
    d = dc.run_as_mail_user(["mdb_dump", "-n", "-s", "meta", mdb])
    if d.returncode != 0:
        raise Failure("mdb_dump: %s" % d.stderr.decode(errors="replace"))
    lines = d.stdout.decode().split("\n")
    key = " " + b"format".hex()
    i = lines.index(key)
    lines[i + 1] = " " + version.to_bytes(4, "little").hex()
    ld = dc.run_as_mail_user(["mdb_load", "-n", "-s", "meta", mdb], input="\n".join(lines).encode())
    if ld.returncode != 0:
        raise Failure("mdb_load: %s" % ld.stderr.decode(errors="replace"))


def main():
    check_environment()
    t = Test("hostile input (%d MB body)" % BIG_MB)
    users = ("alice", "bob") + DAMAGED
    with Dovecot(users=users) as dc:
        sent = {}
        with t.case("hostile messages over LMTP: 250 each; POP3 RETR byte-exact, LIST = octets"):
            for what, data in hostile_messages():
                code, txt = dc.lmtp_deliver_raw("alice", data)
                t.eq(code, 250, "LMTP of %s (%r)" % (what, txt))
                sent[re.search(rb"Message-ID: (<[^>]+>)", data).group(1)] = (what, data)
            view = pop3_view(dc, "alice")
            for mid, (what, data) in sent.items():
                t.check(mid in view, "%s missing" % what)
                uidl, size, body = view[mid][0]
                t.check(ends_with_sent(body, data), "%s: RETR differs from what was sent" % what)
                t.eq(size, len(body), "%s: LIST vs RETR octets" % what)
        with t.case("hostile messages over IMAP: FETCH BODYSTRUCTURE/BODY[] answered, BODY[] exact"):
            m = dc.imap("alice")
            typ, data = m.select("INBOX")
            t.eq(typ, "OK", "SELECT")
            typ, data = m.fetch("1:*", "(BODYSTRUCTURE RFC822.SIZE)")
            t.eq(typ, "OK", "FETCH BODYSTRUCTURE")
            typ, data = m.fetch("1:*", "(BODY.PEEK[])")
            t.eq(typ, "OK", "FETCH BODY[]")
            bodies = [x[1] for x in data if isinstance(x, tuple)]
            t.eq(len(bodies), len(sent), "bodies fetched")
            for mid, (what, sdata) in sent.items():
                # Dovecot's imap sends NUL as 0x80 outside BINARY/literal8 (maildir too)
                t.check(any(ends_with_sent(b, sdata.replace(b"\0", b"\x80")) for b in bodies),
                        "IMAP BODY[] of %s differs" % what)
            m.logout()
        with t.case("a %d MB message over LMTP: 250; POP3 LIST = RETR octets, byte-exact; doveadm size agrees" % BIG_MB):
            data = big_message()
            code, txt = dc.lmtp_deliver_raw("bob", data, timeout=300)
            t.eq(code, 250, "LMTP of %d bytes (%r)" % (len(data), txt))
            r = dc.raw_pop3("bob")
            lst = r.list()
            body = r.retr(1)
            r.quit()
            t.eq(lst[1], len(body), "LIST vs RETR octets")
            t.check(ends_with_sent(body, data), "RETR of the big message differs (%d vs %d bytes)" % (len(body), len(data)))
            row = dc.doveadm_fetch("bob", "size.virtual")
            t.eq(int(row[0]["size.virtual"]), len(body), "doveadm size.virtual")
            del data, body

        # the damaged stores: 3 messages each, then damage, then index files gone
        originals = {}
        for u in DAMAGED:
            for i in range(3):
                body = b"".join(b"%s line %d %s\r\n" % (u.encode(), k, os.urandom(24).hex().encode())
                                for k in range(300))
                dc.lmtp_deliver(u, msg(100 + i, body=body))
            originals[u] = pop3_view(dc, u)

        def check_damaged(u, what, want_errors, cause_re):
            dc.delete_index_files(u)
            dc.mark_log()
            how, details = session(dc, u)
            code, txt = dc.lmtp_deliver_raw(u, msg(900))
            imap_ok = None
            try:
                m = dc.imap(u)
                typ, _ = m.select("INBOX")
                if typ == "OK":
                    typ, _ = m.fetch("1:*", "(UID RFC822.SIZE BODY.PEEK[])")
                imap_ok = typ
                m.logout()
            except Exception as e:   # a clean NO / BYE
                imap_ok = "error: %s" % str(e)[:120]
            dv = dc.doveadm("fetch", "-u", u, "uid text", "mailbox", "INBOX", "all", check=False)
            text = dc.log_since_mark()
            print("      %s: POP3 %s %s; LMTP %d %s; IMAP %s; doveadm fetch exit %d" % (
                what, how, repr(details)[:160], code, txt.decode(errors="replace")[:80], imap_ok, dv.returncode))
            errs = [l for l in text.splitlines() if "Error:" in l]
            if errs:
                print("      log: " + errs[0][:300])
            bad = bad_log_lines(text)
            t.check(not bad, "crash in the log:\n  " + "\n  ".join(bad[:5]))
            t.check(code == 250 or 400 <= code < 500, "LMTP answered %d %r" % (code, txt))
            if want_errors:
                t.check(errs and any(re.search(cause_re, l) for l in errs),
                        "no Error line matching /%s/:\n%s" % (cause_re, text[-1500:]))
            return how, details, code

        with t.case("segment bytes flipped: the damaged message(s) -ERR/closed, the others byte-exact, log names it"):
            segs = sorted(os.listdir(os.path.join(dc.mail_root("seg"), "seg")))
            flip_segment(os.path.join(dc.mail_root("seg"), "seg", segs[0]))
            how, details, code = check_damaged("seg", "segment", True, r"(?i)(checksum|corrupt|inflate|zlib|damaged)")
            t.eq(how, "session", "the mailbox itself still opens")
            st, got = details
            t.check(st.startswith(b"+OK 3 ") or st.startswith(b"+OK 4 "), "STAT %r" % st)
            orig = sorted(originals["seg"].values(), key=lambda v: v[0][0])
            good = [i for i, v in got.items() if isinstance(v, bytes) and i <= 3 and v == orig[i - 1][0][2]]
            failed = [i for i in got if i not in good]
            print("      RETR results: %s" % {k: (("%d bytes" % len(v)) if isinstance(v, bytes) else v)
                                             for k, v in got.items()})
            t.check(failed, "no RETR failed although segment bytes were flipped: %r" % got.keys())
            t.check(good or failed == [1], "no undamaged message was served: %r" % {k: (v if not isinstance(v, bytes) else len(v)) for k, v in got.items()})
            r = dc.lmbox_cli("check", "--bodies", dc.mail_root("seg"), check=False)
            t.check(r.returncode == 1, "lmbox check --bodies should report the damage (exit %d)" % r.returncode)
        with t.case("message record damaged in lmbox.mdb: clean errors, log names it, no crash"):
            uidl = sorted(v[0][0] for v in originals["meta"].values())[1]
            n = damage_msg_record(os.path.join(dc.mail_root("meta"), "lmbox.mdb"), uidl)
            print("      damaged %d copies of the record of UIDL %s" % (n, uidl))
            how, details, code = check_damaged("meta", "metadata record", True, r"(?i)(corrupt|invalid|damaged|malformed)")
            # one damaged record hides that message only: the folder's
            # other messages are still served, byte-exact
            t.eq(how, "session", "the mailbox still opens with one damaged record")
            st, got = details
            orig = {v[0][2] for v in originals["meta"].values()}
            served = [v for v in got.values() if isinstance(v, bytes)]
            t.check(st.startswith(b"+OK "), "STAT %r" % st)
            t.check(len(served) >= len(originals["meta"]) - 1,
                    "only %d of %d messages served" % (len(served), len(originals["meta"])))
            t.check(all(v in orig or b"900" in v[:400] for v in served),
                    "a served message differs from what was delivered")
            r = dc.lmbox_cli("check", dc.mail_root("meta"), check=False)
            t.check(r.returncode == 1, "lmbox check should report the damaged record (exit %d)" % r.returncode)
            r = dc.lmbox_cli("check", "--repair", dc.mail_root("meta"), check=False)
            print("      lmbox check --repair: exit %d: %s" % (r.returncode, (r.stdout + r.stderr).decode(errors="replace").strip()[-300:]))
            dc.delete_index_files("meta")
            how, details = session(dc, "meta")
            print("      after --repair: POP3 %s %r" % (how, repr(details)[:100]))
            t.eq(how, "session", "the mailbox opens after lmbox check --repair")
        with t.case("store format version set above this build's: POP3 -ERR, LMTP 4xx, log says newer"):
            set_format(dc, os.path.join(dc.mail_root("newer"), "lmbox.mdb"), 99)
            how, details, code = check_damaged("newer", "newer format", True, r"(?i)newer")
            t.check(how != "session" or not details[1], "POP3 served a store of a newer format: %r" % (details,))
            t.check(400 <= code < 500, "LMTP into a newer-format store answered %d" % code)
        with t.case("lmbox.mdb truncated: clean errors, log names it, no crash (SIGBUS)"):
            mdb = os.path.join(dc.mail_root("trunc"), "lmbox.mdb")
            with open(mdb, "r+b") as f:
                f.truncate(min(os.path.getsize(mdb) // 2, 3 * 4096))
            check_damaged("trunc", "truncated LMDB", True, r"(?i)(truncat|corrupt|invalid|short|size|MDB_)")
        with t.case("mail root owned by another uid: POP3 -ERR [SYS/...], LMTP 4xx, Permission denied logged"):
            if os.geteuid() != 0:
                print("      (skipped: needs root to chown)")
            else:
                root = dc.mail_root("owner")
                for dp, dns, fns in os.walk(root):
                    for n in dns + fns:
                        os.lchown(os.path.join(dp, n), 65534, 65534)
                os.chown(root, 65534, 65534)
                os.chmod(root, 0o700)
                how, details, code = check_damaged("owner", "foreign owner", True, r"(?i)(permission denied|EACCES|owned by)")
                t.check(how in ("login -ERR", "STAT -ERR"), "POP3 on a foreign mail root: %s %r" % (how, details))
                t.check(400 <= code < 500, "LMTP answered %d" % code)
        with t.case("everyone else unaffected: alice and bob served, a new delivery to alice works"):
            dc.lmtp_deliver("alice", msg(7))
            view = pop3_view(dc, "alice")
            t.eq(len(view), len(sent) + 1, "alice's messages")
            r = dc.raw_pop3("bob")
            t.eq(r.stat()[0], 1, "bob STAT")
            r.quit()
        with t.case("log: no Panic/Fatal/signal anywhere, no core files"):
            bad = bad_log_lines(dc.log_text())
            t.check(not bad, "bad log lines:\n  " + "\n  ".join(bad[:10]))
            t.check(not cores(dc.tmp), "core files: %r" % cores(dc.tmp))
    t.done()


run(main)
