#!/usr/bin/env python3
"""What the QUIT of POP3 DELEs tells the rest of Dovecot, and the searches
of one sequence set (docs/plugin.md, "QUIT"): lmbox walks a set's ranges
itself (POP3's QUIT searches the DELEted messages, IMAP FETCH/SEARCH of
"2,5:7") and reports the expunges with one reused "mail_expunged" event.

Checked against a private Dovecot with the quota plugin's dict backend,
which counts only what it is told (saves at delivery, expunges through the
mailbox's sync_notify; Dovecot 2.4 has no dict backend, so there the count
backend, which counts the mailbox), and mail_debug for the per-UID debug
line:
- IMAP FETCH and SEARCH of multi-range sequence sets return exactly the
  set's messages (and UID FETCH/SEARCH agree);
- POP3 DELE of a scattered set + QUIT removes exactly those messages;
  the quota follows (messages and bytes) without a recalc; the log has
  "UID n: Mail expunged" for each of them;
- a session that DELEs and drops the connection changes neither.

Env LMBOX_IT_LOCATION overrides the mail location (default lmbox:~/lmbox)."""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, check_environment, is_dovecot24, msg, uses_lmbox

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
N = 14


def quota(dc, user):
    if is_dovecot24():
        # the count backend answers from its last count
        dc.doveadm("quota", "recalc", "-u", user)
    q = dc.doveadm("-f", "tab", "quota", "get", "-u", user).stdout.splitlines()
    hdr = q[0].lower().split("\t")
    rows = [dict(zip(hdr, ln.split("\t"))) for ln in q[1:]]
    return {r["type"]: int(r["value"]) for r in rows}


def main():
    check_environment()
    t = Test("expunge notify (%s)" % LOCATION)
    plugins = (["lmbox"] if uses_lmbox(LOCATION) else []) + ["quota"]
    driver = "count:User quota" if is_dovecot24() else "dict:User quota::file:%h/dovecot-quota"
    # 2.4's mail_debug is log_debug = category=mail, which the mailbox's
    # mail_expunged events (category mailbox) do not match
    extra = "log_debug = category=mail OR event=mail_expunged\n" if is_dovecot24() else ""
    with Dovecot(mail_location=LOCATION, users=["alice"], mail_plugins=plugins, mail_debug=True,
                 extra_conf=extra,
                 plugin_settings={"quota": driver,
                                  "quota_vsizes": "yes", "quota_rule": "*:storage=100M"}) as dc:
        with t.case("deliver %d messages over LMTP; the quota (%s) counts them" % (N, driver.split(":")[0]),
                    required=True):
            for i in range(N):
                dc.lmtp_deliver("alice", msg(i, body=b"body %d\r\n" % i * (40 * (i + 1))))
            q = quota(dc, "alice")
            t.eq(q["MESSAGE"], N, "quota MESSAGE after delivery")
            r = dc.raw_pop3("alice")
            sizes = r.list()
            uidls = r.uidl()
            r.quit()
            t.eq(len(sizes), N, "POP3 LIST count")

        with t.case("IMAP FETCH/SEARCH of multi-range sequence sets return exactly the set", required=True):
            m = dc.imap("alice")
            m.select("INBOX", readonly=True)
            typ, data = m.fetch("1:*", "(UID)")
            t.eq(typ, "OK", "FETCH 1:*")
            uid_of = {}
            for ln in data:
                mm = re.match(rb"(\d+) \(UID (\d+)\)", ln)
                uid_of[int(mm.group(1))] = int(mm.group(2))
            t.eq(sorted(uid_of), list(range(1, N + 1)), "sequences of FETCH 1:*")
            for spec, want in (("2,5:7,11", [2, 5, 6, 7, 11]), ("1", [1]), ("%d" % N, [N]),
                               ("3:4,%d:*" % (N - 1), [3, 4, N - 1, N]), ("1:2,4,6,8,10,12,14", [1, 2, 4, 6, 8, 10, 12, 14])):
                typ, data = m.fetch(spec, "(UID RFC822.SIZE)")
                got = [int(re.match(rb"(\d+) ", ln).group(1)) for ln in data]
                t.eq(got, want, "FETCH %s sequences" % spec)
                for ln in data:
                    mm = re.match(rb"(\d+) \(UID (\d+) RFC822.SIZE (\d+)\)", ln)
                    t.eq(int(mm.group(2)), uid_of[int(mm.group(1))], "FETCH %s UID of %s" % (spec, mm.group(1)))
                typ, data = m.search(None, spec)
                t.eq([int(x) for x in data[0].split()], want, "SEARCH %s" % spec)
                typ, data = m.search(None, "NOT", spec)
                t.eq([int(x) for x in data[0].split()], [s for s in range(1, N + 1) if s not in want],
                     "SEARCH NOT %s" % spec)
            m.logout()

        dele = [2, 5, 6, 7, 11]
        with t.case("DELE of %r and a dropped connection change nothing" % dele):
            r = dc.raw_pop3("alice")
            for s in dele:
                r.ok("DELE %d" % s)
            r.drop()
            r = dc.raw_pop3("alice")
            t.eq(r.uidl(), uidls, "UIDLs after the drop")
            r.quit()
            t.eq(quota(dc, "alice")["MESSAGE"], N, "quota MESSAGE after the drop")

        with t.case("DELE of %r + QUIT: exactly those go; quota and log follow" % dele, required=True):
            dc.mark_log()
            r = dc.raw_pop3("alice")
            for s in dele:
                r.ok("DELE %d" % s)
            r.quit()
            r = dc.raw_pop3("alice")
            after = r.uidl()
            r.quit()
            keep = [uidls[s] for s in sorted(uidls) if s not in dele]
            t.eq([after[k] for k in sorted(after)], keep, "remaining UIDLs in order")
            q = quota(dc, "alice")
            t.eq(q["MESSAGE"], N - len(dele), "quota MESSAGE after QUIT (told by sync_notify)")
            want_kb = sum(sizes[s] for s in sorted(sizes) if s not in dele) // 1024
            t.check(abs(q["STORAGE"] - want_kb) <= 1,
                    "quota STORAGE %d KB vs %d KB left" % (q["STORAGE"], want_kb))
            log = dc.log_since_mark()
            got = sorted(int(u) for u in re.findall(r"UID (\d+): Mail expunged", log))
            t.eq(got, sorted(uid_of[s] for s in dele), "UIDs in 'Mail expunged' debug lines")

        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


if __name__ == "__main__":
    main()
