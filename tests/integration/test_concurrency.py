#!/usr/bin/env python3
"""Concurrency (issue #3): 4 LMTP delivery threads and 1 dovecot-lda thread
deliver to one user while one POP3 session loop reads everything and deletes
some (DELE + QUIT) and another only reads (STAT/LIST/UIDL).  Afterwards:
every delivered message is there exactly once unless a committed QUIT
deleted it, a UIDL always names the same message, no errors in the log."""
import os, re, sys, threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, Failure

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
LMTP_THREADS = 4
PER_THREAD = 50
LDA_MSGS = 10
SEQ_RE = re.compile(rb"\r\nX-Seq: (\S+)\r\n")


def message(tag):
    return (b"From: load@example.org\r\nTo: alice@example.org\r\nSubject: load %s\r\n"
            b"Message-ID: <%s@lmboxtest>\r\nX-Seq: %s\r\n\r\n" % (tag, tag, tag) +
            (b"payload of %s\r\n" % tag) * (5 + len(tag) * 3))


def main():
    check_environment()
    t = Test("concurrency (%s)" % LOCATION)
    with Dovecot(mail_location=LOCATION) as dc:
        errors = []
        delivered = set()
        deleted = set()
        uidl_of = {}           # uidl -> seq, must never change
        lock = threading.Lock()
        stop = threading.Event()
        stats = {"pop3_sessions": 0, "ro_sessions": 0}

        def deliverer(k):
            try:
                for i in range(PER_THREAD):
                    tag = b"t%d-%d" % (k, i)
                    dc.lmtp_deliver("alice", message(tag))
                    with lock:
                        delivered.add(tag)
            except Exception as e:
                errors.append("LMTP thread %d: %s" % (k, e))

        def lda():
            try:
                for i in range(LDA_MSGS):
                    tag = b"lda-%d" % i
                    dc.lda_deliver("alice", message(tag))
                    with lock:
                        delivered.add(tag)
            except Exception as e:
                errors.append("LDA thread: %s" % e)

        def note_uidl(u, seq, where):
            with lock:
                old = uidl_of.setdefault(u, seq)
            if old != seq:
                errors.append("%s: UIDL %s was %s, now %s" % (where, u, old, seq))

        def deleter():
            n = 0
            try:
                while n < 200:
                    n += 1
                    done = stop.is_set()
                    r = dc.raw_pop3("alice")
                    uidl = r.uidl()
                    seqs, dele = [], []
                    for num, u in sorted(uidl.items()):
                        body = r.retr(num)
                        m = SEQ_RE.search(body)
                        if not m:
                            errors.append("POP3: message %d has no X-Seq" % num)
                            continue
                        seq = m.group(1)
                        seqs.append(seq)
                        note_uidl(u, seq, "deleter")
                        if int(seq.split(b"-")[1]) % 3 == 0:
                            r.ok("DELE %d" % num)
                            dele.append(seq)
                    if len(seqs) != len(set(seqs)):
                        errors.append("POP3 session sees duplicates: %r" % sorted(seqs))
                    q = r.quit()
                    if q.startswith(b"+OK"):
                        with lock:
                            deleted.update(dele)
                    else:
                        errors.append("QUIT: %r" % q)
                    stats["pop3_sessions"] += 1
                    if done:
                        break
            except Exception as e:
                errors.append("POP3 deleter: %s" % e)

        def reader():
            n = 0
            try:
                while not stop.is_set() and n < 500:
                    n += 1
                    r = dc.raw_pop3("alice")
                    cnt, size = r.stat()
                    lst = r.list()
                    uidl = r.uidl()
                    r.quit()
                    if len(uidl) != len(set(uidl.values())):
                        errors.append("reader: duplicate UIDLs in one session")
                    if set(lst) != set(uidl):
                        errors.append("reader: LIST and UIDL disagree in one session")
                    stats["ro_sessions"] += 1
            except Exception as e:
                errors.append("POP3 reader: %s" % e)

        with t.case("%d LMTP threads x %d + LDA x %d while POP3 reads/deletes and reads concurrently"
                    % (LMTP_THREADS, PER_THREAD, LDA_MSGS)):
            feeders = [threading.Thread(target=deliverer, args=(k,)) for k in range(LMTP_THREADS)]
            feeders.append(threading.Thread(target=lda))
            pops = [threading.Thread(target=deleter), threading.Thread(target=reader)]
            for th in feeders + pops:
                th.daemon = True
                th.start()
            for th in feeders:
                th.join(240)
            stop.set()
            for th in pops:
                th.join(240)
            alive = [th for th in feeders + pops if th.is_alive()]
            t.check(not alive, "%d threads still running after the deadline" % len(alive))
            print("      delivered %d, deleted %d, %d deleting and %d read-only POP3 sessions" % (
                len(delivered), len(deleted), stats["pop3_sessions"], stats["ro_sessions"]))
            if errors:
                raise Failure("\n".join(errors[:20]))
            t.eq(len(delivered), LMTP_THREADS * PER_THREAD + LDA_MSGS, "deliveries that succeeded")

        with t.case("final mailbox = delivered - deleted, each message exactly once, UIDLs stable"):
            r = dc.raw_pop3("alice")
            uidl = r.uidl()
            seqs = []
            for num, u in sorted(uidl.items()):
                seq = SEQ_RE.search(r.retr(num)).group(1)
                seqs.append(seq)
                note_uidl(u, seq, "final")
            r.quit()
            t.eq(len(seqs), len(set(seqs)), "no duplicates")
            missing = (delivered - deleted) - set(seqs)
            extra = set(seqs) - (delivered - deleted)
            t.check(not missing, "lost messages: %r" % sorted(missing)[:20])
            t.check(not extra, "deleted messages came back: %r" % sorted(extra)[:20])
            if errors:
                raise Failure("\n".join(errors[:20]))

        with t.case("IMAP and doveadm agree with POP3's count"):
            want = len(delivered - deleted)
            m = dc.imap("alice")
            typ, data = m.select("INBOX", readonly=True)
            m.logout()
            t.eq(int(data[0]), want, "IMAP EXISTS")
            t.eq(int(dc.mailbox_status("alice")["messages"]), want, "doveadm messages")

        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


run(main)
