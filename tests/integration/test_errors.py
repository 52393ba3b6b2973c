#!/usr/bin/env python3
"""Errors are reported, not crashed on (issue #3, DESIGN "Dovecot
conventions"): an unwritable mail root gives the POP3 client -ERR [SYS/TEMP]
or [SYS/PERM], LMTP a 4xx/5xx, the admin a clear Error line naming the
cause; a read-only existing store either serves reads or fails the same clean
way, and a QUIT that cannot commit says -ERR and deletes nothing; never a
Panic, Fatal or core file."""
import imaplib, os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, Failure

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
SYS_ERR = re.compile(rb"^-ERR \[SYS/(TEMP|PERM)\]")
CAUSE = re.compile(r"Error:.*(Permission denied|EACCES|read-only|Read-only|EROFS|not writable)")


def cores(dc):
    out = []
    for dp, dns, fns in os.walk(dc.tmp):
        out += [os.path.join(dp, f) for f in fns if f == "core" or f.startswith("core.")]
    return out


def chmod_tree(root, dmode, fmode):
    for dp, dns, fns in os.walk(root):
        for f in fns:
            os.chmod(os.path.join(dp, f), fmode)
        os.chmod(dp, dmode)


def main():
    check_environment()
    t = Test("error handling (%s)" % LOCATION)
    with Dovecot(mail_location=LOCATION, users=("alice", "noroot", "rostore")) as dc:
        with t.case("home not writable (mail root cannot be created): POP3 -> -ERR [SYS/TEMP|PERM] + Error line with the cause"):
            os.chmod(dc.home("noroot"), 0o500)
            dc.mark_log()
            resp, r = dc.pop3_login("noroot")
            if r is not None:
                r.close()
            t.check(SYS_ERR.match(resp), "login answered %r" % resp)
            try:
                dc.wait_log(CAUSE.pattern)
            except Failure:
                raise Failure("no Error line naming the cause in the log:\n" + dc.log_since_mark()[-1500:])
            text = dc.log_since_mark()
            t.check(not re.search(r"(Panic|Fatal):", text), "Panic/Fatal:\n" + text[-1500:])
        with t.case("same user over LMTP: 4xx/5xx reply, no Panic/Fatal"):
            dc.mark_log()
            code, txt = dc.lmtp_deliver_raw("noroot", msg(1))
            t.check(400 <= code < 600, "LMTP answered %d %r" % (code, txt))
            text = dc.log_since_mark()
            t.check(not re.search(r"(Panic|Fatal):", text), "Panic/Fatal:\n" + text[-1500:])
        with t.case("same user via IMAP SELECT and doveadm: clean NO / non-zero exit"):
            dc.mark_log()
            try:
                m = dc.imap("noroot")
                typ, data = m.select("INBOX")
                m.logout()
            except (imaplib.IMAP4.error, OSError) as e:   # a refused login or BYE: also clean
                typ = None
                t.check(any(x in str(e) for x in ("SYS/", "NO", "UNAVAILABLE", "SERVERBUG", "Internal error")),
                        "IMAP failed oddly: %s" % e)
            t.check(typ != "OK", "SELECT INBOX answered OK on an unwritable mail root")
            r = dc.doveadm("mailbox", "status", "-u", "noroot", "messages", "INBOX", check=False)
            t.check(r.returncode != 0, "doveadm mailbox status succeeded on an unwritable mail root")
            text = dc.log_since_mark()
            t.check(not re.search(r"(Panic|Fatal):", text), "Panic/Fatal:\n" + text[-1500:])
        with t.case("read-only existing store: POP3 reads work or fail [SYS/...]; QUIT after DELE is truthful"):
            for i in range(3):
                dc.lmtp_deliver("rostore", msg(i))
            r = dc.raw_pop3("rostore")
            uidl_before = r.uidl()
            r.quit()
            chmod_tree(dc.home("rostore"), 0o500, 0o400)
            dc.mark_log()
            quit_ok = None
            try:
                r = dc.raw_pop3()
                r.ok("USER rostore")
                resp = r.cmd("PASS " + dc.password("rostore"))
                if resp.startswith(b"+OK"):
                    try:
                        st = r.cmd("STAT")
                    except (OSError, Failure):
                        st = b"(connection closed)"
                    t.check(st.startswith(b"+OK 3 ") or SYS_ERR.match(st), "STAT %r" % st)
                    if st.startswith(b"+OK"):
                        rr = r.cmd("RETR 1")
                        t.check(rr.startswith(b"+OK") or SYS_ERR.match(rr), "RETR %r" % rr)
                        if rr.startswith(b"+OK"):
                            r.multiline()
                        d = r.cmd("DELE 1")
                        q = r.cmd("QUIT")
                        quit_ok = q.startswith(b"+OK") and d.startswith(b"+OK")
                        t.check(q.startswith(b"+OK") or q.startswith(b"-ERR"), "QUIT %r" % q)
                else:
                    t.check(SYS_ERR.match(resp), "PASS answered %r" % resp)
                r.close()
            finally:
                chmod_tree(dc.home("rostore"), 0o700, 0o600)
            text = dc.log_since_mark()
            t.check(not re.search(r"(Panic|Fatal):", text), "Panic/Fatal:\n" + text[-1500:])
            r = dc.raw_pop3("rostore")
            uidl_after = r.uidl()
            r.quit()
            if quit_ok:
                t.eq(len(uidl_after), 2, "QUIT said +OK: message 1 must be gone")
                t.check(uidl_before[1] not in uidl_after.values(), "QUIT +OK but message 1 still there")
            else:
                t.eq(uidl_after, uidl_before, "QUIT failed or never sent: nothing may be deleted")
            print("      read-only store: QUIT %s" % ("committed" if quit_ok else "refused / not reached"))
        with t.case("unknown LMTP recipient -> 550, wrong POP3 password -> -ERR, Dovecot still serves alice"):
            code, txt = dc.lmtp_deliver_raw("nosuchuser", msg(9))
            t.check(500 <= code < 600, "LMTP unknown user: %d %r" % (code, txt))
            dc.lmtp_deliver("alice", msg(10))
            r = dc.raw_pop3("alice")
            t.eq(r.stat()[0], 1, "alice STAT")
            r.quit()
        with t.case("no Panic/Fatal anywhere, no core files"):
            dc.assert_clean_log(allow=(r"Error:",))
            t.check(not cores(dc), "core files: %r" % cores(dc))
    t.done()


run(main)
