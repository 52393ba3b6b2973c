#!/usr/bin/env python3
"""The POP3 session module pop3_lmbox (DESIGN "The POP3 session module"),
loaded with protocol pop3 { mail_plugins = $mail_plugins pop3_lmbox }, on a
test clock (lmbox_pop3_test_clock_file):
- LOGIN-DELAY: a login sooner than lmbox_pop3_login_delay after the last
  successful one gets -ERR [LOGIN-DELAY] and sees nothing; later ones pass;
- leave-on-server expiry (lmbox_pop3_expire): at QUIT, messages first
  retrieved more than N days ago are deleted together with the session's
  DELEs; messages never retrieved, or retrieved recently, stay; a dropped
  session expires nothing; the other UIDLs never change;
- users whose sessions do not use the module are unaffected."""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, Skip, uses_lmbox

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
DAY = 86400
T0 = 1800000000


def main():
    check_environment()
    if not uses_lmbox(LOCATION):
        raise Skip("pop3_lmbox needs an lmbox INBOX (LMBOX_IT_LOCATION=%s)" % LOCATION)
    t = Test("pop3_lmbox session module: LOGIN-DELAY and expiry")
    settings = {"lmbox_pop3_login_delay": "60", "lmbox_pop3_expire": "7"}
    dc = Dovecot(mail_location=LOCATION, users=("alice", "bob"), pop3_plugins=["pop3_lmbox"],
                 plugin_settings=settings)
    try:
        dc.setup()
    except BaseException:
        dc.stop()
        raise
    clock = os.path.join(dc.tmp, "clock")
    dc.plugin_settings["lmbox_pop3_test_clock_file"] = clock
    dc.write_config()

    def set_clock(now):
        with open(clock + ".new", "w") as f:
            f.write("%d\n" % now)
        os.chmod(clock + ".new", 0o644)
        os.replace(clock + ".new", clock)
    set_clock(T0)
    with dc:
        with t.case("deliver 4 messages to alice", required=True):
            for i in range(1, 5):
                dc.lmtp_deliver("alice", msg(i))
        with t.case("first login at T0 passes; a login at T0+10s gets -ERR [LOGIN-DELAY]"):
            resp, r = dc.pop3_login("alice")
            t.check(r is not None, "first login: %r" % resp)
            uidl0 = r.uidl()
            r.quit()
            set_clock(T0 + 10)
            resp, r = dc.pop3_login("alice")
            t.check(r is None and resp.startswith(b"-ERR [LOGIN-DELAY]"), "second login answered %r" % resp)
        with t.case("LOGIN-DELAY is per user: bob logs in at T0+10s"):
            resp, r = dc.pop3_login("bob")
            t.check(r is not None, "bob: %r" % resp)
            r.quit()
        with t.case("a login at T0+61s passes; RETR 1 and 2 (first retrieval at T0+61s), QUIT"):
            set_clock(T0 + 61)
            resp, r = dc.pop3_login("alice")
            t.check(r is not None, "login: %r" % resp)
            r.retr(1)
            r.retr(2)
            t.check(r.quit().startswith(b"+OK"), "QUIT")
        with t.case("3 days later: RETR 3, QUIT: nothing expires (7 days)"):
            set_clock(T0 + 61 + 3 * DAY)
            resp, r = dc.pop3_login("alice")
            t.check(r is not None, "login: %r" % resp)
            r.retr(3)
            r.quit()
            set_clock(T0 + 61 + 3 * DAY + 120)
            resp, r = dc.pop3_login("alice")
            t.eq(r.uidl(), uidl0, "UIDLs")
            r.quit()
        with t.case("8 days after the first RETR, a dropped session expires nothing"):
            set_clock(T0 + 61 + 8 * DAY)
            resp, r = dc.pop3_login("alice")
            t.check(r is not None, "login: %r" % resp)
            dc.mark_log()
            r.drop()
            dc.wait_log(r"pop3\(alice\).*Disconnected")
            set_clock(T0 + 61 + 8 * DAY + 120)
            resp, r = dc.pop3_login("alice")
            t.eq(r.uidl(), uidl0, "UIDLs after a dropped session")
            r.close()
        with t.case("a session's QUIT 8 days later expires messages 1 and 2 together with DELE 4"):
            set_clock(T0 + 61 + 8 * DAY + 240)
            resp, r = dc.pop3_login("alice")
            t.check(r is not None, "login: %r" % resp)
            r.ok("DELE 4")
            t.check(r.quit().startswith(b"+OK"), "QUIT")
            set_clock(T0 + 61 + 8 * DAY + 360)
            resp, r = dc.pop3_login("alice")
            t.check(r is not None, "login: %r" % resp)
            t.eq(list(r.uidl().values()), [uidl0[3]], "remaining UIDLs (only message 3)")
            r.quit()
        with t.case("the module logged what it did; no Error/Panic/Fatal"):
            text = dc.log_text()
            t.check(re.search(r"pop3_lmbox: LOGIN-DELAY: login refused", text), "no LOGIN-DELAY log line")
            t.check(re.search(r"pop3_lmbox: expire: 2 message", text), "no expire log line for 2 messages")
            dc.assert_clean_log()
    t.done()


run(main)
