#!/usr/bin/env python3
"""The POP3 session module pop3_lmbox (issue #6, DESIGN "The POP3 session
module"), loaded with protocol pop3 { mail_plugins = $mail_plugins pop3_lmbox },
mostly on a test clock (lmbox_pop3_test_clock_file, a test-only setting: the
module reads "now" from that file, so days pass instantly).

- A linear story: LOGIN-DELAY per user, RETRs, expiry after 7 days together
  with a DELE, a dropped session expiring nothing, UIDLs never changing.
- LOGIN-DELAY (lmbox_pop3_login_delay): the refused login gets
  "-ERR [LOGIN-DELAY] ..." instead of "+OK Logged in.", the connection is
  closed, no command sent on it runs, nothing in the mailbox or the store
  changes (messages, flags, UIDLs, pop3.last_login, first RETRs); a second
  login while a session is open is refused and the open one goes on; per user
  as a userdb field; poplib sees an error_proto; with the real clock (2 s
  delay, bounded polling) too.
- Retention (lmbox_pop3_expire = N days): first RETR times in the store (the
  CLI shows them), kept at the first; TOP is no retrieval; the boundary (exactly
  N days stays); a dropped session deletes nothing but its RETRs count; N = 0
  deletes every retrieved message and the DELEd ones at QUIT; two concurrent
  sessions (one after the other, and QUIT at once).
- pop3.last_login is written at login with LOGIN-DELAY, else when the session
  ends (QUIT or dropped).
- Without the lmbox plugin the module refuses to load (Dovecot's clear line,
  -ERR to the client, no crash); with an INBOX that is not lmbox it warns and
  pop3 works without it."""
import os, re, shutil, socket, sys, tempfile, threading, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import (Dovecot, Test, run, check_environment, msg, Failure, Skip, uses_lmbox,
                       wait_until)

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
DAY = 86400
T0 = 1800000000
MODULE = ["pop3_lmbox"]


def test_story(t):
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


class Clock:
    """A fake clock file outside the Dovecot directory (needed before setup)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="lmbox-clock.")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "now")
        self.set(T0)

    def set(self, now):
        with open(self.path + ".new", "w") as f:
            f.write("%d\n" % now)
        os.chmod(self.path + ".new", 0o644)
        os.replace(self.path + ".new", self.path)
        self.now = now

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def pass_reply(dc, user):
    """Connect, USER/PASS; (connection, the reply to PASS: pop3's first line)."""
    r = dc.raw_pop3()
    r.ok("USER " + user)
    return r, r.cmd("PASS " + dc.password(user))


def closed_by_server(r, timeout=10.0):
    """True once the server closed the connection without sending more."""
    r.sock.settimeout(timeout)
    extra = r.buf
    try:
        while True:
            chunk = r.sock.recv(4096)
            if not chunk:
                break
            extra += chunk
    except socket.timeout:
        return False
    except OSError:
        pass
    r.close()
    if extra:
        raise Failure("server sent more after the refusal: %r" % extra)
    return True


def cli(dc, *args):
    out = dc.lmbox_cli(*args).stdout
    return out.decode() if isinstance(out, bytes) else out


def store_value(dc, user, name):
    out = cli(dc, "stat", "--value", name, dc.mail_root(user))
    m = re.search(r"^%s\s+(\d+)" % re.escape(name), out, re.M)
    return int(m.group(1)) if m else None


def first_retr(dc, user, uidl):
    """pop3_first_retr of the message with this UIDL, as the CLI prints it."""
    try:
        out = cli(dc, "uidl", dc.mail_root(user), "INBOX", uidl)
    except Failure:
        # the store's default UIDLs are upper case; pop3 serves them lower case
        out = cli(dc, "uidl", dc.mail_root(user), "INBOX", uidl.upper())
    m = re.search(r"^pop3_first_retr\s+(\S+)", out, re.M)
    if not m:
        raise Failure("lmbox uidl printed no pop3_first_retr:\n" + out)
    return m.group(1)


def iso(now):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def snapshot(dc, user):
    """Everything a refused login must leave alone."""
    rows = dc.doveadm_fetch(user, "uid flags pop3.uidl size.virtual")
    return (sorted((r["uid"], r["flags"], r["pop3.uidl"], r["size.virtual"]) for r in rows),
            store_value(dc, user, "pop3.last_login"),
            [first_retr(dc, user, r["pop3.uidl"]) for r in rows])


def subjects(dc, user):
    return sorted(re.search(rb"Subject: (\S+)", body).group(1).decode()
                  for uid, body in dc.doveadm_fetch_texts(user))


def deliver(dc, user, names):
    for i, n in enumerate(names):
        dc.lmtp_deliver(user, msg(i, subject=n, body=b"body of %s\r\n" % n.encode()))


def uidl_of(r):
    """{subject: (msgnum, uidl)} of a logged-in session (TOP n 0 each)."""
    out = {}
    for n, u in r.uidl().items():
        hdr = r.top(n, 0)
        out[re.search(rb"Subject: (\S+)", hdr).group(1).decode()] = (n, u)
    return out


def test_login_delay(t):
    clock = Clock()
    users = {"alice": {}, "bob": {},
             "carol": {"extra": "userdb_lmbox_pop3_login_delay=5m"}}
    try:
        with Dovecot(mail_location=LOCATION, users=users, pop3_plugins=MODULE,
                     plugin_settings={"lmbox_pop3_login_delay": "60s",
                                      "lmbox_pop3_test_clock_file": clock.path}) as dc:
            deliver(dc, "alice", ["a1", "a2", "a3"])

            with t.case("first login passes; the store records pop3.last_login, lmbox stat shows it",
                        required=True):
                r, resp = pass_reply(dc, "alice")
                t.eq(resp, b"+OK Logged in.", "PASS reply")
                t.eq(r.stat()[0], 3, "STAT count")
                t.eq(r.quit(), b"+OK Logging out.", "QUIT")
                t.eq(store_value(dc, "alice", "pop3.last_login"), T0, "pop3.last_login")
                out = cli(dc, "stat", dc.mail_root("alice"))
                t.check(re.search(r"^pop3\.last_login\s+%d \(%s\)" % (T0, iso(T0)), out, re.M),
                        "lmbox stat shows pop3.last_login:\n" + out)

            with t.case("login inside the delay: -ERR [LOGIN-DELAY], closed, its commands never run, "
                        "nothing changes"):
                clock.set(T0 + 59)
                before = snapshot(dc, "alice")
                dc.mark_log()
                r, resp = pass_reply(dc, "alice")
                t.check(resp.startswith(b"-ERR [LOGIN-DELAY] "), "PASS reply %r" % resp)
                t.check(b" 60 seconds" in resp and b"in 1 seconds" in resp,
                        "reply names delay and wait: %r" % resp)
                try:  # DELE+QUIT would delete if they ran
                    r.sock.sendall(b"DELE 1\r\nQUIT\r\n")
                except OSError:
                    pass
                t.check(closed_by_server(r), "server did not close the refused connection")
                dc.wait_log(r"Disconnected: Login refused: LOGIN-DELAY")
                t.check(re.search(r"pop3_lmbox: LOGIN-DELAY: login refused, last login 59 s ago",
                                  dc.log_since_mark()), "refusal logged")
                t.eq(snapshot(dc, "alice"), before, "messages, flags, UIDLs, last_login, first RETRs")
                dc.assert_clean_log(since_mark=True)

            with t.case("while a session is open a second login inside the delay is refused; "
                        "the first goes on"):
                clock.set(T0 + 60)
                a, resp = pass_reply(dc, "alice")
                t.eq(resp, b"+OK Logged in.", "login at the delay")
                # the login time is written right after "+OK", before any command
                t.eq(a.stat()[0], 3, "first session STAT")
                t.eq(store_value(dc, "alice", "pop3.last_login"), T0 + 60, "pop3.last_login")
                clock.set(T0 + 61)
                b, resp = pass_reply(dc, "alice")
                t.check(resp.startswith(b"-ERR [LOGIN-DELAY]"), "second session: %r" % resp)
                t.check(closed_by_server(b), "refused session closed")
                t.eq(len(a.list()), 3, "first session LIST still works")
                t.eq(a.quit(), b"+OK Logging out.", "first session QUIT")

            with t.case("userdb field lmbox_pop3_login_delay overrides the plugin setting (carol: 5m)"):
                r, resp = pass_reply(dc, "carol")
                t.eq(resp, b"+OK Logged in.", "carol first login")
                r.quit()
                clock.set(clock.now + 120)
                r, resp = pass_reply(dc, "carol")
                t.check(resp.startswith(b"-ERR [LOGIN-DELAY] Minimum time between logins is 300 seconds"),
                        "carol inside 5m: %r" % resp)
                closed_by_server(r)
                clock.set(clock.now + 180)
                r, resp = pass_reply(dc, "carol")
                t.eq(resp, b"+OK Logged in.", "carol after 5m")
                r.quit()

            with t.case("poplib sees the refusal as error_proto with [LOGIN-DELAY]"):
                import poplib
                p = poplib.POP3("127.0.0.1", dc.ports["pop3"], timeout=10)
                p.user("carol")
                try:
                    p.pass_(dc.password("carol"))
                    raise Failure("login accepted")
                except poplib.error_proto as e:
                    t.check(b"[LOGIN-DELAY]" in e.args[0], "error %r" % (e.args,))
                finally:
                    p.close()

            with t.case("log: no errors"):
                dc.assert_clean_log()
    finally:
        clock.remove()

    clock = Clock()
    try:
        with Dovecot(mail_location=LOCATION, pop3_plugins=MODULE, extra_conf="pop3_lock_session = yes\n",
                     plugin_settings={"lmbox_pop3_login_delay": "60",
                                      "lmbox_pop3_test_clock_file": clock.path}) as dc:
            with t.case("pop3_lock_session = yes (namespaces before +OK): the same refusal, "
                        "the session lock is released"):
                dc.lmtp_deliver("alice", msg(1, subject="x"))
                r, resp = pass_reply(dc, "alice")
                t.eq(resp, b"+OK Logged in.", "first login")
                t.eq(r.stat()[0], 1, "STAT")
                r.quit()
                clock.set(T0 + 30)
                r, resp = pass_reply(dc, "alice")
                t.check(resp.startswith(b"-ERR [LOGIN-DELAY]"), "inside the delay: %r" % resp)
                t.check(closed_by_server(r), "refused session closed")
                clock.set(T0 + 60)
                r, resp = pass_reply(dc, "alice")
                t.eq(resp, b"+OK Logged in.", "at the delay (the refused one's lock is gone)")
                r.quit()
                dc.assert_clean_log()
    finally:
        clock.remove()

    with Dovecot(mail_location=LOCATION, pop3_plugins=MODULE,
                 plugin_settings={"lmbox_pop3_login_delay": "2s"}) as dc:
        with t.case("real clock, delay 2s: refused at once, accepted again 1-4.5 s later "
                    "(second granularity; bounded polling)"):
            dc.lmtp_deliver("alice", msg(1, subject="x"))
            r, resp = pass_reply(dc, "alice")
            t0 = time.monotonic()
            t.eq(resp, b"+OK Logged in.", "first login")
            r.quit()
            r, resp = pass_reply(dc, "alice")
            t.check(resp.startswith(b"-ERR [LOGIN-DELAY]"), "immediate second login: %r" % resp)
            closed_by_server(r)
            accepted = None
            for _ in range(60):
                r, resp = pass_reply(dc, "alice")
                if resp == b"+OK Logged in.":
                    accepted = time.monotonic() - t0
                    r.quit()
                    break
                closed_by_server(r)
                time.sleep(0.1)
            t.check(accepted is not None, "never accepted again")
            t.check(1.0 <= accepted <= 4.5, "accepted after %.2f s" % accepted)
            dc.assert_clean_log()


def test_expire_days(t):
    clock = Clock()
    try:
        with Dovecot(mail_location=LOCATION, pop3_plugins=MODULE,
                     plugin_settings={"lmbox_pop3_expire": "7",
                                      "lmbox_pop3_test_clock_file": clock.path}) as dc:
            deliver(dc, "alice", ["m1", "m2", "m3", "m4", "m5", "m6"])
            with t.case("day 0: RETR m1 m2, TOP m3, DELE m4, QUIT: only m4 goes; "
                        "m1, m2 get their first RETR time", required=True):
                r, resp = pass_reply(dc, "alice")
                ids = uidl_of(r)
                r.retr(ids["m1"][0]); r.retr(ids["m2"][0]); r.top(ids["m3"][0], 5)
                r.ok("DELE %d" % ids["m4"][0])
                t.eq(r.quit(), b"+OK Logging out, messages deleted.", "QUIT")
                t.eq(subjects(dc, "alice"), ["m1", "m2", "m3", "m5", "m6"], "left")
                t.eq(first_retr(dc, "alice", ids["m1"][1]), iso(T0), "m1 first RETR")
                t.eq(first_retr(dc, "alice", ids["m2"][1]), iso(T0), "m2 first RETR")
                t.eq(first_retr(dc, "alice", ids["m3"][1]), "-", "m3 (TOP only)")
                out = cli(dc, "stat", dc.mail_root("alice"))
                t.check(re.search(r"^pop3 retrieved\s+2 \(first RETR of the oldest: %s\)$" % iso(T0),
                                  out, re.M), "lmbox stat counts the retrieved messages:\n" + out)

            with t.case("day 3: RETR m1 again (its first RETR stays day 0), RETR m3: nothing expires"):
                clock.set(T0 + 3 * DAY)
                r, resp = pass_reply(dc, "alice")
                now_ids = uidl_of(r)
                r.retr(now_ids["m1"][0]); r.retr(now_ids["m3"][0])
                r.quit()
                t.eq(subjects(dc, "alice"), ["m1", "m2", "m3", "m5", "m6"], "left")
                t.eq(first_retr(dc, "alice", ids["m1"][1]), iso(T0), "m1 first RETR unchanged")
                t.eq(first_retr(dc, "alice", ids["m3"][1]), iso(T0 + 3 * DAY), "m3 first RETR")

            with t.case("day 7 exactly: not more than 7 days, nothing expires"):
                clock.set(T0 + 7 * DAY)
                r, resp = pass_reply(dc, "alice")
                r.quit()
                t.eq(subjects(dc, "alice"), ["m1", "m2", "m3", "m5", "m6"], "left")

            with t.case("day 8, dropped session (RETR m5, DELE m6, no QUIT): nothing deleted, "
                        "m5's RETR recorded"):
                clock.set(T0 + 8 * DAY)
                r, resp = pass_reply(dc, "alice")
                ids = uidl_of(r)
                dc.mark_log()
                r.retr(ids["m5"][0])
                r.ok("DELE %d" % ids["m6"][0])
                r.drop()
                dc.wait_log(r"pop3\(alice\).*Disconnected: ")
                t.eq(subjects(dc, "alice"), ["m1", "m2", "m3", "m5", "m6"], "left")
                wait_until(lambda: first_retr(dc, "alice", ids["m5"][1]) != "-", 10, "m5's first RETR")
                t.eq(first_retr(dc, "alice", ids["m5"][1]), iso(T0 + 8 * DAY), "m5 first RETR")

            with t.case("day 8, QUIT with DELE m6: m1, m2 (day 0) expire with the DELE; "
                        "m3 (day 3), m5 (day 8) stay"):
                r, resp = pass_reply(dc, "alice")
                dc.mark_log()
                ids = uidl_of(r)
                r.ok("DELE %d" % ids["m6"][0])
                t.eq(r.quit(), b"+OK Logging out, messages deleted.", "QUIT")
                t.eq(subjects(dc, "alice"), ["m3", "m5"], "left")
                t.check(re.search(r"pop3_lmbox: expire: 2 message\(s\) first retrieved more than 7 day",
                                  dc.log_since_mark()), "expiry logged")
                t.eq(store_value(dc, "alice", "pop3.last_expire"), T0 + 8 * DAY, "pop3.last_expire")

            with t.case("day 11: m3 expires at QUIT (not before); m5 stays"):
                clock.set(T0 + 11 * DAY)
                r, resp = pass_reply(dc, "alice")
                t.eq(r.stat()[0], 2, "STAT before QUIT")
                r.quit()
                t.eq(subjects(dc, "alice"), ["m5"], "left")

            with t.case("log: no errors"):
                dc.assert_clean_log()
    finally:
        clock.remove()


def test_expire_zero(t):
    with Dovecot(mail_location=LOCATION, users=("alice", "bob", "carol"), pop3_plugins=MODULE,
                 plugin_settings={"lmbox_pop3_expire": "0"}) as dc:
        deliver(dc, "alice", ["r1", "r2", "k1", "t1", "d1"])
        with t.case("expire 0, dropped session with RETRs: nothing deleted"):
            r, resp = pass_reply(dc, "alice")
            ids = uidl_of(r)
            dc.mark_log()
            r.retr(ids["r1"][0])
            r.drop()
            dc.wait_log(r"pop3\(alice\).*Disconnected: ")
            t.eq(subjects(dc, "alice"), ["d1", "k1", "r1", "r2", "t1"], "left")

        with t.case("expire 0: QUIT deletes the RETRed (this and earlier sessions) and the DELEd, "
                    "keeps TOPed and untouched ones with their UIDLs"):
            r, resp = pass_reply(dc, "alice")
            ids = uidl_of(r)
            r.retr(ids["r2"][0]); r.top(ids["t1"][0], 1)
            r.ok("DELE %d" % ids["d1"][0])
            t.eq(r.quit(), b"+OK Logging out, messages deleted.", "QUIT")
            t.eq(subjects(dc, "alice"), ["k1", "t1"], "left")
            r, resp = pass_reply(dc, "alice")
            left = uidl_of(r)
            r.quit()
            t.eq({k: v[1] for k, v in left.items()}, {k: ids[k][1] for k in ("k1", "t1")}, "UIDLs")

        with t.case("two concurrent sessions: each QUIT deletes what it retrieved and DELEd, "
                    "nothing twice, no errors"):
            deliver(dc, "bob", ["b1", "b2", "b3", "b4"])
            a, _ = pass_reply(dc, "bob")
            b, _ = pass_reply(dc, "bob")
            ia, ib = uidl_of(a), uidl_of(b)
            a.retr(ia["b1"][0]); a.retr(ia["b3"][0])
            b.retr(ib["b2"][0]); b.retr(ib["b3"][0])
            b.ok("DELE %d" % ib["b1"][0])
            t.eq(b.quit(), b"+OK Logging out, messages deleted.", "b QUIT")
            t.eq(subjects(dc, "bob"), ["b4"], "after b's QUIT")
            t.eq(a.quit()[:3], b"+OK", "a QUIT (its messages are gone already)")
            t.eq(subjects(dc, "bob"), ["b4"], "after a's QUIT")

        with t.case("two concurrent sessions QUIT at once (threads): no errors, every retrieved one gone"):
            deliver(dc, "bob", ["c1", "c2", "c3"])
            a, _ = pass_reply(dc, "bob")
            b, _ = pass_reply(dc, "bob")
            ia, ib = uidl_of(a), uidl_of(b)
            a.retr(ia["c1"][0]); b.retr(ib["c2"][0]); a.retr(ia["c2"][0])
            res = {}
            ths = [threading.Thread(target=lambda k, c: res.__setitem__(k, c.quit()), args=(k, c))
                   for k, c in (("a", a), ("b", b))]
            for th in ths:
                th.start()
            for th in ths:
                th.join(30)
            t.check(len(res) == 2 and all(v.startswith(b"+OK") for v in res.values()), "QUITs: %r" % res)
            t.eq(subjects(dc, "bob"), ["b4", "c3"], "left")

        with t.case("without LOGIN-DELAY, pop3.last_login is written when the session ends "
                    "(QUIT or dropped)"):
            t0 = int(time.time())
            r, resp = pass_reply(dc, "carol")
            r.quit()
            v = wait_until(lambda: store_value(dc, "carol", "pop3.last_login"), 10, "carol's last_login")
            t.check(t0 <= v <= int(time.time()), "last_login %d is not the login time (%d..)" % (v, t0))
            time.sleep(1.1)  # the next login falls in a later second
            r, resp = pass_reply(dc, "carol")
            r.stat()
            r.drop()
            wait_until(lambda: (store_value(dc, "carol", "pop3.last_login") or 0) > v, 10,
                       "last_login after a dropped session")

        with t.case("log: no errors"):
            dc.assert_clean_log()


def test_refusals(t):
    with Dovecot(mail_location="maildir:~/Maildir", mail_plugins=[], require_plugin=False,
                 pop3_plugins=MODULE) as dc:
        with t.case("module without the lmbox plugin: refused to load with Dovecot's clear line, "
                    "-ERR to the client, no crash"):
            dc.mark_log()
            r, resp = pass_reply(dc, "alice")
            r.close()
            t.check(resp.startswith(b"-ERR"), "login answered %r" % resp)
            dc.wait_log(r"Plugin lmbox must be loaded also \(you must set: mail_plugins=\$mail_plugins lmbox\)")
            t.check(not re.search(r"Panic|Fatal|core dumped|signal 11", dc.log_text()), "crash in log")

    with Dovecot(mail_location="maildir:~/Maildir", mail_plugins=["lmbox"], require_plugin=True,
                 pop3_plugins=MODULE, plugin_settings={"lmbox_pop3_login_delay": "1h"}) as dc:
        with t.case("INBOX not lmbox (maildir): warning, module inactive, POP3 works (no LOGIN-DELAY)"):
            dc.lmtp_deliver("alice", msg(1, subject="x"))
            dc.mark_log()
            for i in range(2):
                r, resp = pass_reply(dc, "alice")
                t.eq(resp, b"+OK Logged in.", "login %d" % i)
                t.eq(r.stat()[0], 1, "STAT")
                r.quit()
            dc.wait_log(r"Warning: pop3_lmbox: INBOX is not an lmbox mailbox \(storage maildir\)")
            dc.assert_clean_log()


def main():
    check_environment()
    if not uses_lmbox(LOCATION):
        raise Skip("pop3_lmbox needs an lmbox INBOX (LMBOX_IT_LOCATION=%s)" % LOCATION)
    t = Test("pop3_lmbox session module")
    test_story(t)
    test_login_delay(t)
    test_expire_days(t)
    test_expire_zero(t)
    test_refusals(t)
    t.done()


if __name__ == "__main__":
    run(main)
