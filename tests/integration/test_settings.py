#!/usr/bin/env python3
"""lmbox_* settings on Dovecot 2.3 and 2.4 (issue 11): the same keys reach the
storage on both (2.3: plugin { }; 2.4: top-level keys, an lmbox { } filter,
the settings module lib20_lmbox_settings.so), a wrong value gets the same
error on both, and on 2.4 `mail_driver = lmbox` alone stores in ~/lmbox."""
import os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, is_dovecot24, Failure


def pop3_count(dc, user):
    r = dc.raw_pop3(user)
    n = r.stat()[0]
    r.quit()
    return n


def main():
    check_environment()
    v24 = is_dovecot24()
    t = Test("lmbox_* settings (Dovecot %s)" % ("2.4" if v24 else "2.3"))
    good = {"lmbox_compress_level": "0", "lmbox_map_initial": "1M", "lmbox_max_readers": "64",
            "lmbox_segment_max": "8M", "lmbox_log_body_opens": "yes"}
    with Dovecot(plugin_settings=good) as dc:
        with t.case("valid values (compress 0, map 1M, readers 64, segment 8M) serve mail; "
                    "lmbox_log_body_opens reaches the storage"):
            dc.lmtp_deliver("alice", msg(1))
            t.eq(pop3_count(dc, "alice"), 1, "POP3 STAT")
            dc.wait_log(r"pop3\(alice\).*lmbox: user=alice bodies_opened=0", since_mark=False)
        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()

    for key, value, want in (("lmbox_compress_level", "12", r"Invalid lmbox_compress_level setting \(expected 0-9\)"),
                             ("lmbox_map_max", "lots", r"Invalid lmbox_map_max setting: ")):
        with Dovecot(plugin_settings={key: value}) as dc:
            with t.case("%s = %s: delivery refused, POP3 login fails, the log names the setting" % (key, value)):
                code, _ = dc.lmtp_deliver_raw("alice", msg(1))
                t.check(code >= 400, "LMTP reply %d with a bad %s" % (code, key))
                try:
                    pop3_count(dc, "alice")
                except Exception:
                    pass
                else:
                    raise Failure("POP3 served alice with %s = %s" % (key, value))
                dc.wait_log(want, since_mark=False)

    if v24:
        extra = "lmbox {\n  lmbox_log_body_opens = yes\n}"
        with Dovecot(mail_location="lmbox", extra_conf=extra) as dc:
            with t.case("2.4: mail_driver = lmbox alone: the store is ~/lmbox (default mail_path)"):
                dc.lmtp_deliver("alice", msg(1))
                t.eq(pop3_count(dc, "alice"), 1, "POP3 STAT")
                root = os.path.join(dc.home("alice"), "lmbox")
                t.check(os.path.isdir(os.path.join(root, "mailboxes")),
                        "no %s/mailboxes after delivery: %r" % (root, os.listdir(dc.home("alice"))))
            with t.case("2.4: an lmbox { } filter reaches the storage"):
                dc.wait_log(r"pop3\(alice\).*lmbox: user=alice bodies_opened=0", since_mark=False)
            with t.case("2.4: no Error/Panic/Fatal in Dovecot's log"):
                dc.assert_clean_log()
    t.done()


run(main)
