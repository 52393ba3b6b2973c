#!/usr/bin/env python3
"""STAT, LIST and UIDL read no message body (DESIGN: sizes and UIDLs are
served from the store's metadata).  Checked twice: by the plugin's own
counter (plugin { lmbox_log_body_opens = yes } logs bodies_opened=N per
session): 0 for STAT/LIST/UIDL and doveadm size/UIDL/GUID fetches, also after
index loss, >= 1 for RETR; and by making every body unreadable:
after delivery the segment files under ~/lmbox/seg/ are chmod 000, then a
fresh POP3 login, and a login after losing every Dovecot index file, must
still answer STAT/LIST/UIDL exactly as before, and doveadm fetch
size.virtual/size.physical/pop3.uidl/guid must too.  RETR of an unreadable
body must fail cleanly (-ERR, no panic); after chmod back, everything reads."""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, uses_lmbox, Failure

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
N = 20


def pop3_meta(dc, user):
    r = dc.raw_pop3(user)
    try:
        return r.stat(), r.list(), r.uidl()
    finally:
        r.quit()


def main():
    check_environment()
    t = Test("STAT/LIST/UIDL read no body (%s)" % LOCATION)
    lmbox = uses_lmbox(LOCATION)
    # lmbox_log_body_opens: the plugin logs "lmbox: user=U bodies_opened=N"
    # when a session's storage is destroyed (plugin/lmbox-storage.c).
    settings = {"lmbox_log_body_opens": "yes"} if lmbox else {}
    with Dovecot(mail_location=LOCATION, plugin_settings=settings) as dc:
        with t.case("deliver %d messages (LMTP, and doveadm save with bare LFs)" % N, required=True):
            for i in range(1, N + 1):
                if i % 4 == 0:
                    dc.doveadm("save", "-u", "alice", input=b"Subject: lf %d\n\n" % i + b"line\n" * (i * 50))
                else:
                    dc.lmtp_deliver("alice", msg(i, body=(b"some text %d\r\n" % i) * (i * 40)))
        with t.case("warm STAT/LIST/UIDL and doveadm fetch of sizes/UIDL/GUID", required=True):
            before = pop3_meta(dc, "alice")
            t.eq(before[0][0], N, "STAT count")
            fields = "uid size.virtual size.physical pop3.uidl guid"
            before_fetch = dc.doveadm_fetch("alice", fields)
            retr_before = {}
            r = dc.raw_pop3("alice")
            for i in range(1, N + 1):
                retr_before[i] = r.retr(i)
            r.quit()
        if lmbox:
            def opened(session):
                """Bodies opened by one POP3 session (plugin's counter), found
                by that session's mail process pid."""
                r = dc.raw_pop3("alice")
                pid = dc.session_pid(r)
                session(r)
                r.quit()
                m = dc.wait_log(r"pop3\(alice\)<%d>.*lmbox: user=alice bodies_opened=(\d+)" % pid,
                                since_mark=False)
                return int(m.group(1))

            def meta_session(r):
                r.stat(); r.list(); r.uidl()

            def retr_session(r):
                r.retr(1)
            with t.case("counter: a fresh POP3 session doing STAT/LIST/UIDL opens 0 bodies"):
                t.eq(opened(meta_session), 0, "bodies_opened")
            with t.case("counter: after losing every Dovecot index file, STAT/LIST/UIDL open 0 bodies"):
                dc.delete_index_files("alice")
                t.eq(opened(meta_session), 0, "bodies_opened")
            with t.case("counter: doveadm fetch size.virtual size.physical pop3.uidl guid opens 0 bodies"):
                dc.delete_index_files("alice")
                r = dc.doveadm("fetch", "-u", "alice", fields, "mailbox", "INBOX", "all")
                m = re.search(r"bodies_opened=(\d+)", r.stderr + r.stdout)
                t.check(m, "no bodies_opened line from doveadm: %r" % r.stderr[-500:])
                t.eq(int(m.group(1)), 0, "bodies_opened")
            with t.case("counter counts: a session with RETR 1 opens >= 1 body"):
                n = opened(retr_session)
                t.check(n >= 1, "bodies_opened=%d after a RETR" % n)
        segs = []
        with t.case("bodies made unreadable: chmod 000 every file under the store's seg/", required=True):
            root = dc.mail_root("alice")
            segdir = os.path.join(root, "seg")
            for dp, dns, fns in os.walk(segdir):
                segs += [os.path.join(dp, f) for f in fns]
            if not segs:
                raise Failure("no segment files under %s (store layout changed? see storage/lmbox.h)" % segdir)
            for f in segs:
                os.chmod(f, 0)
            print("      %d segment file(s) made unreadable" % len(segs))
        try:
            with t.case("fresh login: STAT/LIST/UIDL identical with unreadable bodies"):
                dc.mark_log()
                t.eq(pop3_meta(dc, "alice"), before, "STAT/LIST/UIDL")
                dc.assert_clean_log(since_mark=True)
            with t.case("doveadm fetch size.virtual size.physical pop3.uidl guid identical with unreadable bodies"):
                dc.mark_log()
                t.eq(dc.doveadm_fetch("alice", fields), before_fetch, "doveadm fetch")
                dc.assert_clean_log(since_mark=True)
            with t.case("index files lost + unreadable bodies: STAT/LIST/UIDL and doveadm fetch still identical"):
                files = dc.delete_index_files("alice")
                print("      deleted %d Dovecot index files" % len(files))
                dc.mark_log()
                t.eq(pop3_meta(dc, "alice"), before, "STAT/LIST/UIDL after index loss")
                dc.delete_index_files("alice")
                t.eq(dc.doveadm_fetch("alice", fields), before_fetch, "doveadm fetch after index loss")
                dc.assert_clean_log(since_mark=True)
            with t.case("RETR of an unreadable body fails cleanly (-ERR, log names the cause, no Panic/Fatal)"):
                dc.mark_log()
                r = dc.raw_pop3("alice")
                resp = r.cmd("RETR 1")
                if resp.startswith(b"+OK"):
                    # Some bytes may come before the error; the session must end or stay sane.
                    raise Failure("RETR of an unreadable body answered +OK")
                t.check(resp.startswith(b"-ERR"), "RETR answer %r" % resp)
                r.quit()
                try:
                    dc.wait_log(r"Error:.*(ermission denied|EACCES|seg)")
                except Failure:
                    raise Failure("no Error line naming the unreadable segment:\n" + dc.log_since_mark()[-2000:])
                dc.wait_log(r"pop3\(alice\).*Disconnected")
                text = dc.log_since_mark()
                t.check(not re.search(r"(Panic|Fatal):", text), "Panic/Fatal in log:\n" + text[-2000:])
        finally:
            for f in segs:
                try:
                    os.chmod(f, 0o600)
                except OSError:
                    pass
        with t.case("bodies readable again: every RETR equals what it was"):
            dc.mark_log()
            r = dc.raw_pop3("alice")
            for i in range(1, N + 1):
                t.eq(r.retr(i), retr_before[i], "RETR %d" % i)
            r.quit()
            dc.assert_clean_log(since_mark=True)
        with t.case("no Panic/Fatal anywhere in the log"):
            dc.assert_clean_log(allow=(r"Error:",))
    t.done()


run(main)
