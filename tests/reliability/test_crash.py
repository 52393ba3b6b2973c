#!/usr/bin/env python3
"""Crash consistency through Dovecot (issue 5): LMTP deliveries, POP3
DELE+QUIT sessions, doveadm save/expunge, each with a SIGKILL of the serving
process (lmtp, pop3 found under the private master by /proc scanning;
doveadm our own child) at a random point chosen by a seeded RNG: after a
random number of message bytes sent, or after the process made a random
number of read/write system calls since the command that commits (progress,
not time).  IMAP UID EXPUNGE sessions are killed the same way.  Some rounds kill -9 the whole Dovecot (master and all children)
mid-delivery and mid-QUIT, then restart it.

After every kill:
  - every delivery that got 250 (doveadm save: exit 0) is there once,
    byte-exact (POP3 RETR), LIST size = octets;
  - a delivery killed before its final dot is absent; one killed after it
    is there byte-exact or absent;
  - a QUIT that got +OK (doveadm expunge: exit 0, IMAP UID EXPUNGE: OK)
    removed exactly its messages; one killed after QUIT was sent removed all or none of its
    DELEs; one killed before QUIT removed none;
  - no other message is gone, none is duplicated, nothing deleted returns;
  - the UIDL of every survivor is unchanged;
  - `lmbox check` (as the mail user) passes; bob's control mailbox is intact.

RELIABILITY_KILLS (default 40; `make soak`: 200) kill points,
RELIABILITY_SEED (default 5) seeds the RNG.

A second pass of RELIABILITY_PENDING_KILLS (default 24) kill points runs on a
fresh Dovecot with LMBOX_TEST_PENDING_MIN=1 imported into its processes (and
set for doveadm): every expunge commit of the plugin (POP3 QUIT, IMAP UID
EXPUNGE, doveadm expunge) then takes the pending-expunge path (records
deleted later by the purge, docs/design.md "Pending expunges") that the 1-4
DELEs of the first pass never reach (>= 32 expunges); the same checks
apply after every kill, and `lmbox stat` is asked how many pending expunges
a kill left before the next session purges them."""
import os
import random
import re
import select
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reltest  # noqa: E402
from reltest import (RawLMTP, server_pid, kill_after_progress, kill_dovecot_tree,  # noqa: E402
                     pop3_view, bad_log_lines, cores, wait_gone)
from lmboxtest import Dovecot, Test, run, check_environment, Failure, DOVEADM  # noqa: E402
from lmboxtest import is_dovecot24 as reltest_is_dovecot24  # noqa: E402

KILLS = int(os.environ.get("RELIABILITY_KILLS", "40"))
PENDING_KILLS = int(os.environ.get("RELIABILITY_PENDING_KILLS", "24"))
SEED = int(os.environ.get("RELIABILITY_SEED", "5"))
USER = "alice"
MAX_MSGS = 24


class Model:
    def __init__(self):
        self.committed = {}   # mid -> bytes: must be there
        self.maybe = {}       # mid -> bytes: outcome unknown (killed after the final dot)
        self.absent = set()   # mids that must not be there (deleted, or never completed)
        self.uidl = {}        # mid -> UIDL first seen
        self.groups = []      # (mode, [mids]) deletions to judge: "all" | "none" | "allornone"
        self.n = 0
        self.outcomes = {}
        self.seen = {}        # mid -> bytes as first served (with LMTP's trace headers)
        self.count_pending = False  # the pending pass: ask lmbox stat before each check
        self.pending_left = 0       # kills after which pending expunges were left

    def new_message(self, rng, big=False):
        self.n += 1
        mid = b"<crash-%d-%d@reltest>" % (SEED, self.n)
        size = rng.choice((300, 2000, 9000, 40000)) if not big else rng.randint(200000, 600000)
        lines = []
        total = 0
        while total < size:
            ln = rng.randbytes(rng.randint(20, 57)).hex().encode()[:76]
            lines.append(ln)
            total += len(ln) + 2
        hdr = (b"From: crash@example.org\r\nTo: alice@example.org\r\nSubject: crash %d\r\n"
               b"Message-ID: " + mid + b"\r\n\r\n")
        return mid, hdr + b"\r\n".join(lines) + b"\r\n"


TRACE_RE = re.compile(rb"\A((Return-Path|Delivered-To|Received): [^\r\n]*\r\n([ \t][^\r\n]*\r\n)*)*\Z")


def deliver_committed(dc, m, rng, n):
    """Deliver n new messages of the model to alice over LMTP; each is
    committed once its delivery is answered."""
    for _ in range(n):
        mid, data = m.new_message(rng)
        dc.lmtp_deliver(USER, data)
        m.committed[mid] = data


def same(m, mid, data, body):
    """LMTP prepends trace headers (Return-Path, Delivered-To, Received):
    the first time a message is seen its bytes must be those headers plus
    exactly what was sent; from then on exactly the bytes first seen."""
    if mid in m.seen:
        return body == m.seen[mid]
    if body.endswith(data) and TRACE_RE.match(body[:len(body) - len(data)]):
        m.seen[mid] = body
        return True
    return False


def pending_expunges(dc):
    """`lmbox stat`'s "pending expunges" count of alice's store."""
    r = dc.lmbox_cli("stat", dc.mail_root(USER), check=False)
    found = re.search(rb"^pending expunges +([0-9]+)$", r.stdout, re.M)
    if r.returncode != 0 or not found:
        raise Failure("lmbox stat exit %d without a pending expunges line: %s%s" % (
            r.returncode, r.stdout.decode(errors="replace")[-800:], r.stderr.decode(errors="replace")[-800:]))
    return int(found.group(1))


def verify(t, dc, m, what):
    if m.count_pending:
        # before pop3_view's session purges them
        if pending_expunges(dc) > 0:
            m.pending_left += 1
    view = pop3_view(dc, USER)
    problems = []
    for mid, copies in view.items():
        if len(copies) > 1:
            problems.append("%s is there %d times" % (mid, len(copies)))
    # judge deletion groups first (they decide what "committed" means)
    for mode, mids in m.groups:
        present = [x for x in mids if x in view]
        if mode == "all" and present:
            problems.append("QUIT/expunge reported success but %r survive" % present)
        elif mode == "none" and len(present) != len(mids):
            problems.append("no commit, yet %r are gone" % sorted(set(mids) - set(present)))
        elif mode == "allornone" and present and len(present) != len(mids):
            problems.append("killed mid-commit: partial deletion, %r of %r remain" % (present, mids))
        if mode == "allornone":
            k = "killed QUIT/expunge: " + ("none deleted" if present else "all deleted")
            m.outcomes[k] = m.outcomes.get(k, 0) + 1
        if not present:
            for x in mids:
                m.committed.pop(x, None)
                m.maybe.pop(x, None)
                m.absent.add(x)
    m.groups = []
    for mid, data in m.committed.items():
        if mid not in view:
            problems.append("committed %s is missing" % mid)
            continue
        uidl, size, body = view[mid][0]
        if not same(m, mid, data, body):
            problems.append("committed %s: bytes differ (%d vs %d)" % (mid, len(body), len(data)))
        if size != len(body):
            problems.append("%s: LIST %d != RETR octets %d" % (mid, size, len(body)))
        if m.uidl.setdefault(mid, uidl) != uidl:
            problems.append("%s: UIDL changed %s -> %s" % (mid, m.uidl[mid], uidl))
    for mid, data in list(m.maybe.items()):
        if mid in view:
            if not same(m, mid, data, view[mid][0][2]):
                problems.append("half-delivered %s is there with other bytes" % mid)
            m.committed[mid] = data
            m.uidl.setdefault(mid, view[mid][0][0])
        else:
            m.absent.add(mid)
        k = "killed delivery after final dot: " + ("kept" if mid in view else "absent")
        m.outcomes[k] = m.outcomes.get(k, 0) + 1
        del m.maybe[mid]
    for mid in view:
        if mid in m.absent:
            problems.append("%s is there but must not be (deleted or never completed)" % mid)
        elif mid not in m.committed:
            problems.append("unknown message %s" % mid)
    r = dc.lmbox_cli("check", dc.mail_root(USER), check=False)
    if r.returncode != 0:
        problems.append("lmbox check exit %d: %s%s" % (r.returncode, r.stdout.decode(errors="replace")[-800:],
                                                        r.stderr.decode(errors="replace")[-800:]))
    if problems:
        raise Failure("after %s:\n  %s" % (what, "\n  ".join(problems)))


# ---- the actions: each ends with one SIGKILL ------------------------------

def act_lmtp(dc, m, rng, stats):
    c = RawLMTP(dc)
    try:
        for _ in range(rng.randint(0, 2)):   # complete deliveries first, same session
            mid, data = m.new_message(rng)
            c.start(USER)
            c.sock.sendall(RawLMTP.wire(data))
            code, txt = c.reply()
            if code != 250:
                raise Failure("LMTP DATA: %r" % txt)
            m.committed[mid] = data
        mid, data = m.new_message(rng, big=rng.random() < 0.15)
        c.start(USER)
        pid = server_pid(dc.master_pid, dc.ports["lmtp"], c.sock, "lmtp")
        wire = RawLMTP.wire(data)
        if rng.random() < 0.3:
            cut = rng.randint(0, len(wire) - 4)   # never the whole final dot
            c.sock.sendall(wire[:cut])
            kill_after_progress(pid, 0)
            stats["lmtp mid-DATA"] += 1
            m.absent.add(mid)
            return "lmtp killed after %d of %d DATA bytes" % (cut, len(wire))
        c.sock.sendall(wire)
        n = rng.randint(0, 30)
        seen = kill_after_progress(pid, n, sock=c.sock)
        rep = c.late_reply()
        if rep and rep[0] == 250:
            m.committed[mid] = data
            stats["lmtp after 250"] += 1
            how = "after its 250"
        else:
            m.maybe[mid] = data
            stats["lmtp in commit"] += 1
            how = "before its reply"
        return "lmtp killed %s (%s syscalls after the final dot, target %d)" % (how, seen, n)
    finally:
        c.close()


def pick_victims(rng, view_ids, k):
    ids = sorted(view_ids)
    return rng.sample(ids, min(k, len(ids)))


def act_pop3(dc, m, rng, stats):
    r = dc.raw_pop3(USER)
    pid = server_pid(dc.master_pid, dc.ports["pop3"], r.sock, "pop3")
    try:
        lst = r.list()
        uidl = r.uidl()
        by_uidl = {v: k for k, v in m.uidl.items()}
        seqs = [n for n in sorted(lst) if uidl[n] in by_uidl]
        if not seqs:
            kill_after_progress(pid, 0)
            stats["pop3 idle"] += 1
            return "pop3 killed with nothing to delete"
        chosen = rng.sample(seqs, min(len(seqs), rng.randint(1, 4)))
        mids = [by_uidl[uidl[n]] for n in chosen]
        for n in chosen:
            r.ok("DELE %d" % n)
        p = rng.random()
        if p < 0.15:
            big = max(seqs, key=lambda n: lst[n])
            r.sock.sendall(b"RETR %d\r\n" % big)
            r._fill()
            kill_after_progress(pid, 0)
            m.groups.append(("none", mids))
            stats["pop3 mid-RETR"] += 1
            return "pop3 killed mid-RETR after %d DELEs" % len(mids)
        if p < 0.25:
            kill_after_progress(pid, 0)
            m.groups.append(("none", mids))
            stats["pop3 before QUIT"] += 1
            return "pop3 killed before QUIT (%d DELEs)" % len(mids)
        r.sock.sendall(b"QUIT\r\n")
        n = rng.randint(0, 25)
        seen = kill_after_progress(pid, n, sock=r.sock)
        r.sock.settimeout(2.0)
        try:
            reply = r.line()
        except (OSError, Failure):
            reply = b""
        if reply.startswith(b"+OK"):
            m.groups.append(("all", mids))
            stats["pop3 after +OK"] += 1
            how = "after +OK"
        else:
            if reply.startswith(b"-ERR"):
                raise Failure("QUIT answered %r" % reply)
            m.groups.append(("allornone", mids))
            stats["pop3 in commit"] += 1
            how = "before its reply"
        return "pop3 killed %s of QUIT with %d DELEs (%s syscalls, target %d)" % (how, len(mids), seen, n)
    finally:
        r.close()


def doveadm_kill(dc, rng, argv, stdin_data, stats, key):
    p = subprocess.Popen([DOVEADM, "-c", dc.conf_path] + argv, stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if stdin_data is not None:
        p.stdin.write(stdin_data)
    p.stdin.close()
    n = rng.randint(0, 160)
    seen = kill_after_progress(p.pid, n)
    rc = p.wait(60)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    stats[key + (" killed" if rc == -9 else " finished")] += 1
    return rc, err, seen, n


def act_doveadm(dc, m, rng, stats):
    if rng.random() < 0.5 or not m.committed:
        mid, data = m.new_message(rng)
        rc, err, seen, n = doveadm_kill(dc, rng, ["save", "-u", USER], data, stats, "doveadm save")
        if rc == 0:
            m.committed[mid] = data
        elif rc == -9:
            m.maybe[mid] = data
        else:
            raise Failure("doveadm save exit %d: %s" % (rc, err))
        return "doveadm save, rc %d (%s syscalls, target %d)" % (rc, seen, n)
    rows = dc.doveadm_fetch(USER, "uid pop3.uidl")
    by_uidl = {v: k for k, v in m.uidl.items()}
    known = [(row["uid"], by_uidl[row["pop3.uidl"]]) for row in rows if row["pop3.uidl"] in by_uidl]
    if not known:
        return "doveadm: nothing to expunge"
    chosen = rng.sample(known, min(len(known), rng.randint(1, 3)))
    uids = ",".join(u for u, _ in chosen)
    mids = [x for _, x in chosen]
    rc, err, seen, n = doveadm_kill(dc, rng, ["expunge", "-u", USER, "mailbox", "INBOX", "uid", uids],
                                    None, stats, "doveadm expunge")
    if rc == 0:
        m.groups.append(("all", mids))
    elif rc == -9:
        m.groups.append(("allornone", mids))
    else:
        raise Failure("doveadm expunge exit %d: %s" % (rc, err))
    return "doveadm expunge of %d, rc %d (%s syscalls, target %d)" % (len(mids), rc, seen, n)


def act_imap(dc, m, rng, stats):
    """IMAP: UID STORE +FLAGS (\\Deleted) then UID EXPUNGE of 1-3 known
    messages, the imap process killed after 0-15 of its system calls once
    UID EXPUNGE was sent (or at its reply)."""
    rows = dc.doveadm_fetch(USER, "uid pop3.uidl")
    by_uidl = {v: k for k, v in m.uidl.items()}
    known = [(row["uid"], by_uidl[row["pop3.uidl"]]) for row in rows if row["pop3.uidl"] in by_uidl]
    if not known:
        return "imap: nothing to expunge"
    chosen = rng.sample(known, min(len(known), rng.randint(1, 3)))
    uids = ",".join(u for u, _ in chosen)
    mids = [x for _, x in chosen]
    sock = socket.create_connection((dc.host, dc.ports["imap"]), timeout=30)
    f = sock.makefile("rb")
    try:
        f.readline()

        def cmd(tag, text):
            sock.sendall(("%s %s\r\n" % (tag, text)).encode())
            for _ in range(10000):
                ln = f.readline()
                if not ln:
                    raise Failure("IMAP closed at %s" % text)
                if ln.startswith(tag.encode() + b" "):
                    if not ln.startswith(tag.encode() + b" OK"):
                        raise Failure("IMAP %s: %r" % (text, ln))
                    return
            raise Failure("IMAP: no tagged reply")
        cmd("a1", "LOGIN %s %s" % (USER, dc.password(USER)))
        pid = server_pid(dc.master_pid, dc.ports["imap"], sock, "imap")
        cmd("a2", "SELECT INBOX")
        cmd("a3", "UID STORE %s +FLAGS.SILENT (\\Deleted)" % uids)
        sock.sendall(b"a4 UID EXPUNGE " + uids.encode() + b"\r\n")
        n = rng.randint(0, 15)
        seen = kill_after_progress(pid, n, sock=sock)
        sock.settimeout(2.0)
        done = False
        try:
            for _ in range(1000):
                ln = f.readline()
                if not ln:
                    break
                if ln.startswith(b"a4 "):
                    done = ln.startswith(b"a4 OK")
                    break
        except OSError:
            pass
        m.groups.append(("all" if done else "allornone", mids))
        stats["imap expunge " + ("after OK" if done else "in commit")] += 1
        return "imap killed %s UID EXPUNGE of %d (%s syscalls, target %d)" % (
            "after the OK of" if done else "during", len(mids), seen, n)
    finally:
        f.close()
        sock.close()


def act_whole(dc, m, rng, stats):
    """kill -9 of master and all children while an LMTP delivery and a QUIT
    are in flight; then restart."""
    r = dc.raw_pop3(USER)
    lst, uidl = r.list(), r.uidl()
    by_uidl = {v: k for k, v in m.uidl.items()}
    seqs = [n for n in sorted(lst) if uidl[n] in by_uidl]
    chosen = rng.sample(seqs, min(len(seqs), rng.randint(1, 3))) if seqs else []
    for n in chosen:
        r.ok("DELE %d" % n)
    mids = [by_uidl[uidl[n]] for n in chosen]
    c = RawLMTP(dc)
    mid, data = m.new_message(rng, big=rng.random() < 0.3)
    c.start(USER)
    lpid = server_pid(dc.master_pid, dc.ports["lmtp"], c.sock, "lmtp")
    c.sock.sendall(RawLMTP.wire(data))
    r.sock.sendall(b"QUIT\r\n")
    n = rng.randint(0, 30)
    seen = reltest.syscalls(lpid)
    t_end = time.monotonic() + 5
    while seen is not None and time.monotonic() < t_end:
        s = reltest.syscalls(lpid)
        if s is None or s - seen >= n or select.select([c.sock, r.sock], [], [], 0)[0]:
            break
    victims = kill_dovecot_tree(dc)
    rep = c.late_reply()
    c.close()
    r.sock.settimeout(2.0)
    try:
        q = r.line()
    except (OSError, Failure):
        q = b""
    r.close()
    m.committed[mid] = data if rep and rep[0] == 250 else None
    if m.committed[mid] is None:
        del m.committed[mid]
        m.maybe[mid] = data
    m.groups.append(("all" if q.startswith(b"+OK") else "allornone", mids))
    stats["whole dovecot"] += 1
    try:
        os.unlink(os.path.join(dc.tmp, "run", "master.pid"))   # stale: its master is dead
    except OSError:
        pass
    dc._start_once()
    return "whole Dovecot killed (%d processes; LMTP reply %s, QUIT reply %r), restarted" % (
        victims, rep[0] if rep else None, q[:20])


def main():
    check_environment()
    t = Test("crash consistency: %d kill points, seed %d" % (KILLS, SEED))
    rng = random.Random(SEED)
    stats = {k: 0 for k in ("lmtp mid-DATA", "lmtp in commit", "lmtp after 250", "pop3 mid-RETR",
                            "pop3 before QUIT", "pop3 in commit", "pop3 after +OK", "pop3 idle",
                            "doveadm save killed", "doveadm save finished", "doveadm expunge killed",
                            "doveadm expunge finished", "imap expunge in commit", "imap expunge after OK",
                            "whole dovecot")}
    m = Model()
    with Dovecot(users=(USER, "bob")) as dc:
        dc.expected_fatal = (reltest.KILLED9,)
        with t.case("setup: 8 messages to alice, 3 to bob (control)", required=True):
            deliver_committed(dc, m, rng, 8)
            control = {}
            bm = Model()
            for i in range(3):
                mid, data = bm.new_message(random.Random(i))
                mid, data = mid.replace(b"crash-", b"bob-"), data.replace(b"crash-", b"bob-")
                dc.lmtp_deliver("bob", data)
                control[mid] = data
            verify(t, dc, m, "setup")
        n_whole = max(2, KILLS // 12)
        whole_at = set(rng.sample(range(3, KILLS), min(n_whole, KILLS - 3))) if KILLS > 4 else set()
        survived = 0
        t0 = time.monotonic()
        for i in range(KILLS):
            what = "?"
            with t.case("kill point %d" % (i + 1), required=True):
                if i in whole_at:
                    what = act_whole(dc, m, rng, stats)
                else:
                    count = len(m.committed) + len(m.maybe)
                    weights = (4, 2 if count < MAX_MSGS else 6, 2, 1 if count < MAX_MSGS else 2) \
                        if count > 2 else (1, 0, 0, 0)
                    act = rng.choices((act_lmtp, act_pop3, act_doveadm, act_imap), weights=weights)[0]
                    what = act(dc, m, rng, stats)
                verify(t, dc, m, what)
                survived += 1
                print("      %s; %d messages" % (what, len(m.committed)), flush=True)
        dt = time.monotonic() - t0
        with t.case("bob's control mailbox untouched, Dovecot still serves after all kills"):
            view = pop3_view(dc, "bob")
            t.eq(sorted(view), sorted(control), "bob's messages")
            for k, v in view.items():
                t.check(v[0][2].endswith(control[k]), "bob's %s changed" % k)
            mid, data = m.new_message(rng)
            dc.lmtp_deliver(USER, data)
            m.committed[mid] = data
            verify(t, dc, m, "final delivery")
        with t.case("log: no Panic, Fatal, core, or signal other than our SIGKILLs"):
            bad = bad_log_lines(dc.log_text())
            t.check(not bad, "bad log lines:\n  " + "\n  ".join(bad[:10]))
            t.check(not cores(dc.tmp), "core files: %r" % cores(dc.tmp))
            errs = [l for l in dc.log_text().splitlines() if "Error:" in l
                    and "killed with signal 9" not in l]
            print("      %d other Error lines in the log (e.g. %s)" % (len(errs), errs[:3]))
        print("figure: crash kill points survived: %d of %d (seed %d, %.0fs)" % (survived, KILLS, SEED, dt))
        print("figure: crash kill kinds: " + ", ".join("%s %d" % kv for kv in stats.items() if kv[1]))
        print("figure: crash outcomes: " + ", ".join("%s %d" % kv for kv in sorted(m.outcomes.items())))
        # the whole-Dovecot kills leave Dovecot's own "killed" lines; the
        # harness's after-stop Panic/Fatal check still applies
    if PENDING_KILLS > 0:
        pending_pass(t, random.Random(SEED + 1000))
    t.done()


def pending_pass(t, rng):
    """PENDING_KILLS kill points with every expunge commit pending."""
    stats = {}
    m = Model()
    m.count_pending = True
    if reltest_is_dovecot24():
        conf = "import_environment {\n  LMBOX_TEST_PENDING_MIN = 1\n}\n"
    else:
        conf = "import_environment = $import_environment LMBOX_TEST_PENDING_MIN=1\n"
    saved = os.environ.get("LMBOX_TEST_PENDING_MIN")
    os.environ["LMBOX_TEST_PENDING_MIN"] = "1"   # doveadm is our child
    try:
        with Dovecot(users=(USER,), extra_conf=conf) as dc:
            dc.expected_fatal = (reltest.KILLED9,)
            with t.case("pending pass setup: 8 messages to alice", required=True):
                deliver_committed(dc, m, rng, 8)
                verify(t, dc, m, "pending pass setup")
            t0 = time.monotonic()
            for i in range(PENDING_KILLS):
                with t.case("pending pass kill point %d" % (i + 1), required=True):
                    count = len(m.committed) + len(m.maybe)
                    # mostly deletions: that is what this pass is for
                    weights = (2, 4, 2, 2) if count > 4 else (4, 1, 1, 1)
                    act = rng.choices((act_lmtp, act_pop3, act_doveadm, act_imap), weights=weights)[0]
                    for k in ("pop3 mid-RETR", "pop3 before QUIT", "pop3 in commit", "pop3 after +OK",
                              "pop3 idle", "lmtp mid-DATA", "lmtp in commit", "lmtp after 250",
                              "doveadm save killed", "doveadm save finished", "doveadm expunge killed",
                              "doveadm expunge finished", "imap expunge in commit", "imap expunge after OK"):
                        stats.setdefault(k, 0)
                    what = act(dc, m, rng, stats)
                    verify(t, dc, m, what)
                    print("      %s; %d messages" % (what, len(m.committed)), flush=True)
            with t.case("pending pass: Dovecot still delivers; log clean"):
                mid, data = m.new_message(rng)
                dc.lmtp_deliver(USER, data)
                m.committed[mid] = data
                # its write transaction purged whatever a kill left pending
                t.eq(pending_expunges(dc), 0, "pending expunges after a delivery")
                verify(t, dc, m, "final delivery")
                bad = bad_log_lines(dc.log_text())
                t.check(not bad, "bad log lines:\n  " + "\n  ".join(bad[:10]))
            print("figure: crash pending pass: %d kill points (LMBOX_TEST_PENDING_MIN=1, %.0fs), "
                  "pending expunges left by %d of them" % (PENDING_KILLS, time.monotonic() - t0,
                                                           m.pending_left))
            print("figure: crash pending kill kinds: " + ", ".join(
                "%s %d" % kv for kv in stats.items() if kv[1]))
    finally:
        if saved is None:
            del os.environ["LMBOX_TEST_PENDING_MIN"]
        else:
            os.environ["LMBOX_TEST_PENDING_MIN"] = saved


run(main)
