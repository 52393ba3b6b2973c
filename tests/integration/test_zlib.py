#!/usr/bin/env python3
"""lmbox with Dovecot's zlib plugin loaded alongside (zlib_save = gz): the
plugin compresses by itself and must not be wrapped, so reads stay exact:
POP3 LIST = RETR octets, RETR/IMAP BODY[]/doveadm text equal the delivered
bytes, and the store holds no gzip stream (lmbox cat shows plain text)."""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, crlf, uses_lmbox

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")


def main():
    check_environment()
    t = Test("zlib plugin alongside (%s)" % LOCATION)
    plugins = ["zlib"] + (["lmbox"] if uses_lmbox(LOCATION) else [])
    msgs = [msg(1), msg(2, body=b"bare lf\nbody\n").replace(b"\r\n", b"\n"),
            msg(3, body=b"".join(b"line %d of a compressible message\r\n" % i for i in range(30000)))]
    with Dovecot(mail_location=LOCATION, mail_plugins=plugins,
                 plugin_settings={"zlib_save": "gz", "zlib_save_level": "6"}) as dc:
        with t.case("deliver over LMTP and doveadm save with zlib loaded", required=True):
            dc.lmtp_deliver("alice", msgs[0])
            dc.doveadm("save", "-u", "alice", input=msgs[1])
            dc.lmtp_deliver("alice", msgs[2])
        with t.case("POP3: LIST = RETR octets, RETR ends with the delivered bytes (CRLF form)"):
            r = dc.raw_pop3("alice")
            lst = r.list()
            for i, m in enumerate(msgs, 1):
                body = r.retr(i)
                t.eq(lst[i], len(body), "LIST %d vs RETR octets" % i)
                t.check(body.endswith(crlf(m)), "RETR %d content differs" % i)
            r.quit()
        with t.case("IMAP BODY[] and RFC822.SIZE agree; doveadm fetch text equals"):
            m = dc.imap("alice")
            m.select("INBOX", readonly=True)
            for i, src in enumerate(msgs, 1):
                typ, data = m.fetch(str(i), "(RFC822.SIZE BODY.PEEK[])")
                head, body = data[0]
                t.check(b"RFC822.SIZE %d " % len(body) in head + b" ", "RFC822.SIZE %d: %r" % (i, head))
                t.check(body.endswith(crlf(src)), "BODY[] %d content" % i)
            m.logout()
            texts = dict(dc.doveadm_fetch_texts("alice"))
            t.check(crlf(texts[2]) == crlf(msgs[1]), "doveadm text of the saved message")
        if uses_lmbox(LOCATION):
            with t.case("store holds no gzip stream: lmbox cat shows the plain message"):
                out = dc.lmbox_cli("cat", dc.mail_root("alice"), "INBOX", "2").stdout
                t.check(not out.startswith(b"\x1f\x8b"), "lmbox cat shows a gzip stream: zlib wrapped lmbox")
                t.eq(crlf(out), crlf(msgs[1]), "lmbox cat 2")
        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


run(main)
