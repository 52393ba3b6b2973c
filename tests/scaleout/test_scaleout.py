#!/usr/bin/env python3
"""Scale-out on loopback (issue 10, docs/scale-out.md).

Three lmbox backends (private Dovecots on 127.0.0.11, .12, .13, the same
ports each) behind one Dovecot proxy on 127.0.0.10 (pop3, imap, lmtp with
lmtp_proxy = yes, doveadm proxying), whose passdb is a passwd-file per
service written by this test: `proxy=y host=<backend> port=<port>`.

  1. sharding: 300 users over the backends; LMTP through the proxy lands each
     user's mail on its backend only; POP3 through the proxy shows every
     message with the right size and UIDL; concurrent LMTP + POP3 load
     through the proxy ends with nothing lost or duplicated.
  2. user move (b1 -> b2): bulk `doveadm backup` over tcp, the user blocked at
     the proxy (LMTP 451, POP3 -ERR [SYS/TEMP]), a final incremental
     backup, the proxy entry flipped, unblocked.  Leave-on-server clients
     (poplib with its own UIDL list, mpop `keep on`) fetch nothing new;
     UIDLs, sizes and bytes are identical; the delivery refused during the
     move is retried and lands on the new backend.
  3. a backend down: its users get LMTP 451 and POP3 -ERR [SYS/TEMP] through
     the proxy, the others are unaffected, service returns by itself.
  4. replication: b2 and b3 pair up (notify + replication plugins,
     replicator, aggregator, doveadm server, mail_replica = tcp:...):
     delivery and DELE on the primary appear on the replica; the primary
     stops, the proxy points at the replica, POP3 shows the same messages and
     UIDLs; the primary returns and the pair converges.

Only 127.x addresses; every wait is bounded in time and count.
"""
import os, re, sys, time, shutil, socket, poplib, imaplib, smtplib, subprocess, tempfile, threading, random
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
if os.environ.get("LMBOX_TOP_SRCDIR"):
    sys.path.insert(0, os.path.join(os.environ["LMBOX_TOP_SRCDIR"], "tests", "integration"))
from lmboxtest import (Dovecot, Test, run, check_environment, msg, crlf, Failure, Skip,
                       wait_until, RawPOP3, DEFAULT_PASSWORD)

PROXY_IP = "127.0.0.10"
BACKENDS = {"b1": "127.0.0.11", "b2": "127.0.0.12", "b3": "127.0.0.13"}
N_USERS = int(os.environ.get("LMBOX_SCALEOUT_USERS", "300"))
LOAD_LMTP_CLIENTS, LOAD_POP3_CLIENTS = 4, 3
LOAD_MESSAGES = int(os.environ.get("LMBOX_SCALEOUT_MESSAGES", "2000"))
LOAD_USERS = 60                      # the load's recipients (spread over all backends)
MSGID_RE = re.compile(rb"(?im)^Message-ID: (<[^>]+>)")
T0 = time.monotonic()


def users_list():
    return ["u%03d" % i for i in range(N_USERS)]


def shard(user):
    """The initial placement: round robin on the user's number."""
    return ("b1", "b2", "b3")[int(user[1:]) % 3]


def ports_free_everywhere(ips, tries=50):
    """4 ports free on every address (bind test), bounded attempts."""
    for _ in range(tries):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        cand = []
        socks = [s]
        try:
            cand.append(s.getsockname()[1])
            for _ in range(3):
                x = socket.socket()
                x.bind(("127.0.0.1", 0))
                socks.append(x)
                cand.append(x.getsockname()[1])
        finally:
            for x in socks:
                x.close()
        ok = True
        for ip in ips:
            for p in cand:
                x = socket.socket()
                try:
                    x.bind((ip, p))
                except OSError:
                    ok = False
                finally:
                    x.close()
        if ok:
            return {"pop3": cand[0], "imap": cand[1], "lmtp": cand[2], "doveadm": cand[3]}
    raise Failure("no 4 ports free on all of %s" % ips)


# --------------------------------------------------------------------------
# the proxy's passdb: one passwd-file per service (pop3, imap, lmtp, doveadm)

class ProxyMap:
    """user -> backend name, written as passwd-files the proxy's passdb
    reads (path proxy-passwd.%s: Dovecot expands the service name), plus
    the list of users being moved, which the checkpassword fallback passdb
    answers with a temporary failure."""

    def __init__(self, d, ports):
        self.dir = d
        self.ports = ports
        self.where = {}
        self.moving = set()

    def write(self):
        for svc in ("pop3", "imap", "lmtp", "doveadm"):
            lines = []
            for u, b in sorted(self.where.items()):
                if u in self.moving:
                    continue
                lines.append("%s:{PLAIN}%s::::::proxy=y host=%s port=%d" % (
                    u, DEFAULT_PASSWORD, BACKENDS[b], self.ports[svc]))
            path = os.path.join(self.dir, "proxy-passwd.%s" % svc)
            with open(path + ".new", "w") as f:
                f.write("\n".join(lines) + "\n")
            os.chmod(path + ".new", 0o644)
            # Dovecot notices a changed passwd-file by its mtime in whole
            # seconds or its size: a same-size change within the second of
            # the previous one (a host flipped .13 -> .12) would go unseen
            try:
                prev = int(os.stat(path).st_mtime)
            except FileNotFoundError:
                prev = None
            if prev is not None and int(os.stat(path + ".new").st_mtime) <= prev:
                os.utime(path + ".new", (prev + 1, prev + 1))
            os.rename(path + ".new", path)    # atomic: auth sees old or new
        path = os.path.join(self.dir, "moving")
        with open(path + ".new", "w") as f:
            f.write("".join(u + "\n" for u in sorted(self.moving)))
        os.chmod(path + ".new", 0o644)
        os.rename(path + ".new", path)

    def set(self, user, backend):
        self.where[user] = backend
        self.write()

    def wait_seen(self, proxy, user, timeout=10):
        """Dovecot's passwd-file passdb re-reads a changed file at most once
        a second: poll (bounded) until the proxy's auth answers this user
        as the map now says, for every service."""
        want = None if user in self.moving else BACKENDS[self.where[user]]

        def seen():
            for svc in ("pop3", "imap", "lmtp", "doveadm"):
                r = proxy.doveadm("auth", "lookup", "-x", "service=" + svc, user, check=False)
                m = re.search(r"(?m)^\s*host\s*:\s*(\S+)", r.stdout)
                if (m.group(1) if m else None) != want:
                    return False
            return True
        wait_until(seen, timeout, "the proxy to see %s -> %s" % (user, want or "moving"), interval=0.2)


TEMPFAIL_SCRIPT = """#!/bin/sh
# checkpassword fallback of the proxy: a user being moved (listed in
# MOVING) gets a temporary failure (111): LMTP answers 451, POP3/IMAP
# -ERR [SYS/TEMP] / NO [UNAVAILABLE].  Anyone else is unknown: 3 for a
# lookup without password (LMTP, doveadm: AUTHORIZED is set), 1 for a login.
grep -qxF -- "$AUTH_USERNAME" %s && exit 111
[ -n "$AUTHORIZED" ] && exit 3
exit 1
"""


def proxy_conf(pm, script):
    return """
lmtp_proxy = yes
doveadm_port = %(dport)d
login_trusted_networks = 127.0.0.0/8
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%n %(dir)s/proxy-passwd.%%s
}
passdb {
  driver = checkpassword
  args = %(script)s
}
""" % {"dport": pm.ports["doveadm"], "dir": pm.dir, "script": script}


def backend_conf():
    # proxied logins keep the client's address in the backend's log
    return "login_trusted_networks = 127.0.0.0/8\nauth_username_format = %n\n"


def replication_conf(dc, peer_ip):
    return """
doveadm_port = %(dport)d
replication_max_conns = 4
replication_full_sync_interval = 1h
service replicator {
  # started on demand (first change or doveadm replicator command), not with
  # the master: two replicators starting together full-sync the same users
  # against each other and deadlock on the mailbox sync locks (30 s timeout)
  unix_listener replicator-doveadm {
    mode = 0600
    user = %(mail)s
  }
}
service aggregator {
  fifo_listener replication-notify-fifo {
    mode = 0600
    user = %(mail)s
  }
  unix_listener replication-notify {
    mode = 0600
    user = %(mail)s
  }
}
plugin {
  mail_replica = tcp:%(peer)s:%(dport)d
}
""" % {"dport": dc.ports["doveadm"], "mail": dc.mail_user, "peer": peer_ip}


# --------------------------------------------------------------------------
# clients through the proxy

def lmtp_session(host, port, timeout=60):
    s = smtplib.LMTP(host, port, timeout=timeout)
    s.ehlo("scaleout")
    return s


def lmtp_send(s, user, data):
    """One transaction on an open LMTP connection: (code, text) of the
    recipient's final reply (RCPT refusal or DATA reply)."""
    code, txt = s.mail("sender@example.org")
    if code != 250:
        return code, txt
    code, txt = s.rcpt(user + "@example.org")
    if code not in (250, 251):
        s.rset()
        return code, txt
    try:
        return s.data(data)
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error


def deliver(host, port, user, data):
    s = lmtp_session(host, port)
    try:
        return lmtp_send(s, user, data)
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()


def pop3_view(host, port, user, retr=True):
    """[(uidl, size, bytes)] in POP3 order; no QUIT (nothing changes)."""
    r = RawPOP3(port, host)
    try:
        r.login(user, DEFAULT_PASSWORD)
        lst, uidl = r.list(), r.uidl()
        return [(uidl[n], lst[n], r.retr(n) if retr else None) for n in sorted(lst)]
    finally:
        r.drop()


def pop3_login_reply(host, port, user):
    """The reply to PASS (bytes), for a login expected to fail."""
    r = RawPOP3(port, host)
    try:
        r.ok("USER " + user)
        return r.cmd("PASS " + DEFAULT_PASSWORD)
    finally:
        r.drop()


class LeaveOnServer:
    """A leave-on-server POP3 client: keeps its own UIDL list and fetches
    (RETR) only messages whose UIDL it has not seen; never deletes."""

    def __init__(self, user):
        self.user = user
        self.seen = {}      # uidl -> bytes

    def fetch(self, host, port):
        p = poplib.POP3(host, port, timeout=60)
        try:
            p.user(self.user)
            p.pass_(DEFAULT_PASSWORD)
            new = []
            for line in p.uidl()[1]:
                n, u = line.decode().split(None, 1)
                if u not in self.seen:
                    resp, lines, octets = p.retr(int(n))
                    self.seen[u] = b"\r\n".join(lines) + b"\r\n"
                    new.append(u)
            p.quit()
            return new
        finally:
            try:
                p.close()
            except OSError:
                pass


def mpop_fetch(workdir, host, port, user):
    """mpop with `keep on` and its own UIDLs file; returns the number of
    messages it delivered to its maildir in this run."""
    mpop = shutil.which("mpop")
    md = os.path.join(workdir, "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    rc = os.path.join(workdir, "mpoprc")
    with open(rc, "w") as f:
        f.write("defaults\nkeep on\ntls off\nauth user\nuidls_file %s/uidls\n"
                "account mv\nhost %s\nport %d\nuser %s\npassword %s\ndelivery maildir %s\n"
                "timeout 60\n" % (workdir, host, port, user, DEFAULT_PASSWORD, md))
    os.chmod(rc, 0o600)
    before = len(os.listdir(os.path.join(md, "new")))
    r = subprocess.run([mpop, "-C", rc, "-q", "mv"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    if r.returncode != 0:
        raise Failure("mpop exited %d: %s" % (r.returncode, r.stdout.decode(errors="replace")))
    return len(os.listdir(os.path.join(md, "new"))) - before


# --------------------------------------------------------------------------

def store_has_mail(dc, user):
    """True if the user's lmbox store exists on this backend (files in it)."""
    root = dc.mail_root(user)
    return os.path.isdir(root) and any(os.scandir(root))


def fetch_state(dc, user):
    """[(uid, guid, pop3.uidl, size.virtual)] of INBOX via doveadm on that backend."""
    return [(d["uid"], d["guid"], d["pop3.uidl"], d["size.virtual"])
            for d in dc.doveadm_fetch(user, "uid guid pop3.uidl size.virtual")]


def main():
    check_environment()
    t = Test("scale-out on loopback: proxy 127.0.0.10 + lmbox backends 127.0.0.11-13")
    users = users_list()
    for ip in [PROXY_IP] + list(BACKENDS.values()):
        try:
            s = socket.socket()
            s.bind((ip, 0))
            s.close()
        except OSError as e:
            raise Skip("cannot bind %s (%s): no 127/8 loopback routing here" % (ip, e))
    ports = ports_free_everywhere([PROXY_IP] + list(BACKENDS.values()))
    work = tempfile.mkdtemp(prefix="lmbox-scaleout.")
    os.chmod(work, 0o755)
    pm = ProxyMap(work, ports)
    for u in users:
        pm.where[u] = shard(u)
    MOVER = "mover"
    REP = ["rep1", "rep2"]
    pm.where[MOVER] = "b1"
    for u in REP:
        pm.where[u] = "b2"
    pm.write()
    script = os.path.join(work, "tempfail-moving.sh")
    with open(script, "w") as f:
        f.write(TEMPFAIL_SCRIPT % os.path.join(work, "moving"))
    os.chmod(script, 0o755)

    all_users = users + [MOVER] + REP
    be = {}
    try:
        for name, ip in sorted(BACKENDS.items()):
            be[name] = Dovecot(users={u: {} for u in all_users}, host=ip, ports=ports,
                               extra_conf=backend_conf())
        proxy = Dovecot(mail_location="maildir:~/Maildir", users={}, mail_plugins=[],
                        host=PROXY_IP, ports=ports, extra_conf=proxy_conf(pm, script))
        with t.case("start 3 lmbox backends (127.0.0.11-13) and the proxy (127.0.0.10), same ports",
                    required=True):
            for name in sorted(be):
                be[name].start()
            proxy.start()
            for name, dc in sorted(be.items()):
                t.eq(dc.host, BACKENDS[name], "backend address")
            for dc in list(be.values()) + [proxy]:   # each is stopped through this pid
                with open(os.path.join(dc.tmp, "run", "master.pid")) as f:
                    t.eq(int(f.read().split()[0]), dc.master_pid, "master.pid of %s" % dc.host)
        P = (PROXY_IP, ports)

        # ---------------- 1. sharding -----------------------------------
        sent = {}   # user -> [bytes]
        with t.case("LMTP through the proxy: %d users, one multi-recipient transaction per 50 users"
                    % len(users), required=True):
            for i in range(0, len(users), 50):
                batch = users[i:i + 50]
                data = msg(i, body=b"for users %d..%d\r\n" % (i, i + len(batch) - 1) + b"y" * (i * 7) + b"\r\n")
                res = proxy.lmtp_deliver_multi(batch, data)
                for u, (code, txt) in zip(batch, res):
                    t.check(code == 250, "%s: %d %r" % (u, code, txt))
                    sent.setdefault(u, []).append(data)
            for u in users:   # and one message of its own each, one transaction per user
                data = msg(1000 + int(u[1:]), body=(u.encode() + b" ") * (1 + int(u[1:]) % 37) + b"\r\n")
                code, txt = deliver(PROXY_IP, ports["lmtp"], u, data)
                t.check(code == 250, "%s: %d %r" % (u, code, txt))
                sent[u].append(data)
        with t.case("each user's mail is in its own backend's mail root only"):
            bad = []
            for u in users:
                for name, dc in be.items():
                    if store_has_mail(dc, u) != (name == shard(u)):
                        bad.append("%s on %s: %s" % (u, name, store_has_mail(dc, u)))
            t.check(not bad, "misplaced: %s" % bad[:10])
            counts = {n: sum(1 for u in users if shard(u) == n) for n in be}
            t.check(min(counts.values()) >= len(users) // 3 - 1, "spread %r" % counts)
        with t.case("POP3 through the proxy: every user sees its messages, sizes and UIDLs as on its backend"):
            bad = []
            for u in users:
                via = pop3_view(PROXY_IP, ports["pop3"], u)
                direct = pop3_view(BACKENDS[shard(u)], ports["pop3"], u, retr=False)
                want = [crlf(m) for m in sent[u]]
                # the backend's LMTP prepends Return-Path/Delivered-To/Received
                if len(via) != len(want) or not all(b.endswith(w) for (_, _, b), w in zip(via, want)):
                    bad.append("%s: bodies differ" % u)
                if [(x, s) for x, s, _ in via] != [(x, s) for x, s, _ in direct]:
                    bad.append("%s: UIDL/size via proxy %r != backend %r" % (u, via, direct))
                if [s for _, s, _ in via] != [len(b) for _, _, b in via]:
                    bad.append("%s: sizes %r" % (u, [s for _, s, _ in via]))
                if len(set(x for x, _, _ in via)) != len(want):
                    bad.append("%s: UIDLs not distinct" % u)
            t.check(not bad, "; ".join(bad[:5]))

        with t.case("doveadm on the proxy is proxied to the user's backend (doveadm_port, doveadm_password)"):
            for name in sorted(be):
                u = [x for x in users if shard(x) == name][0]
                via = proxy.mailbox_status(u, "messages vsize uidvalidity")
                t.eq(via, be[name].mailbox_status(u, "messages vsize uidvalidity"), "%s on %s" % (u, name))
                t.eq(via["messages"], str(len(sent[u])), "messages of %s" % u)
            t.check(not os.path.exists(os.path.join(proxy.tmp, "home")) or not os.listdir(os.path.join(proxy.tmp, "home")),
                    "the proxy created mail of its own")

        with t.case("concurrent load through the proxy: %d LMTP + %d POP3 clients, %d messages: "
                    "nothing lost or duplicated" % (LOAD_LMTP_CLIENTS, LOAD_POP3_CLIENTS, LOAD_MESSAGES)):
            load_users = users[:LOAD_USERS]
            # start from empty mailboxes: remove the sharding messages
            for u in load_users:
                be[shard(u)].doveadm("expunge", "-u", u, "mailbox", "INBOX", "all")
            delivered, popped = [], []   # (user, message-id)
            errors = []
            lock = threading.Lock()
            stop_pop = threading.Event()
            deadline = time.monotonic() + 120

            def lmtp_worker(k):
                rnd = random.Random(k)
                n_each = LOAD_MESSAGES // LOAD_LMTP_CLIENTS
                s = None
                try:
                    for j in range(n_each):
                        if time.monotonic() > deadline:
                            errors.append("lmtp %d: deadline" % k)
                            return
                        if s is None or j % 100 == 0:
                            if s is not None:
                                s.quit()
                            s = lmtp_session(PROXY_IP, ports["lmtp"])
                        u = rnd.choice(load_users)
                        mid = "<load-%d-%d@scaleout>" % (k, j)
                        data = (b"From: load@example.org\r\nTo: %s@example.org\r\nMessage-ID: %s\r\n"
                                b"Subject: load %d %d\r\n\r\n" % (u.encode(), mid.encode(), k, j) +
                                b"z" * rnd.randint(10, 3000) + b"\r\n")
                        code, txt = lmtp_send(s, u, data)
                        if code != 250:
                            errors.append("lmtp %s: %d %r" % (u, code, txt))
                            continue
                        with lock:
                            delivered.append((u, mid))
                    s.quit()
                except Exception as e:   # recorded, judged below
                    errors.append("lmtp worker %d: %r" % (k, e))

            def pop3_worker(k):
                mine = load_users[k::LOAD_POP3_CLIENTS]   # disjoint: one session per user at a time
                rounds = 0
                try:
                    while rounds < 400 and time.monotonic() < deadline:
                        rounds += 1
                        last = stop_pop.is_set()
                        for u in mine:
                            r = RawPOP3(ports["pop3"], PROXY_IP)
                            r.login(u, DEFAULT_PASSWORD)
                            got = []
                            for n in sorted(r.list()):
                                m = MSGID_RE.search(r.retr(n))
                                got.append(m.group(1).decode())
                                r.ok("DELE %d" % n)
                            if r.quit().startswith(b"+OK"):
                                with lock:
                                    popped.extend((u, x) for x in got)
                        if last:
                            return
                except Exception as e:
                    errors.append("pop3 worker %d: %r" % (k, e))

            lw = [threading.Thread(target=lmtp_worker, args=(k,)) for k in range(LOAD_LMTP_CLIENTS)]
            pw = [threading.Thread(target=pop3_worker, args=(k,)) for k in range(LOAD_POP3_CLIENTS)]
            t_load = time.monotonic()
            for th in lw + pw:
                th.start()
            for th in lw:
                th.join(150)
            stop_pop.set()    # one more full round after the last delivery, then stop
            for th in pw:
                th.join(150)
            dt = time.monotonic() - t_load
            t.check(not any(th.is_alive() for th in lw + pw), "a load client hangs")
            t.check(not errors, "errors: %s" % errors[:5])
            left = []
            for u in load_users:
                for _, _, b in pop3_view(PROXY_IP, ports["pop3"], u):
                    left.append((u, MSGID_RE.search(b).group(1).decode()))
            got = popped + left
            t.eq(len(delivered), LOAD_MESSAGES // LOAD_LMTP_CLIENTS * LOAD_LMTP_CLIENTS, "delivered")
            dups = len(got) - len(set(got))
            t.check(dups == 0, "%d duplicates" % dups)
            t.check(set(got) == set(delivered), "lost %d, unexpected %d" % (
                len(set(delivered) - set(got)), len(set(got) - set(delivered))))
            print("      %d messages in %.1fs (%.0f/s) through the proxy; %d popped during the load, %d after"
                  % (len(delivered), dt, len(delivered) / dt, len(popped), len(left)), flush=True)

        # ---------------- 2. user move b1 -> b2 -------------------------
        old, new = be["b1"], be["b2"]
        mover_msgs = [msg(5000 + i, body=b"mover %d\r\n" % i + (b"m" * 70 + b"\r\n") * i + b"\r\n.dot line\r\n")
                      for i in range(12)]
        client = LeaveOnServer(MOVER)
        mpop_dir = os.path.join(work, "mpop")
        os.makedirs(mpop_dir)
        have_mpop = shutil.which("mpop") is not None
        with t.case("move: the user has mail on b1; poplib (own UIDL list)%s fetched everything"
                    % (" and mpop (keep on)" if have_mpop else ""), required=True):
            for m in mover_msgs:
                code, txt = deliver(PROXY_IP, ports["lmtp"], MOVER, m)
                t.check(code == 250, "delivery %d %r" % (code, txt))
            t.check(store_has_mail(old, MOVER) and not store_has_mail(new, MOVER), "placement")
            new_uidls = client.fetch(PROXY_IP, ports["pop3"])
            t.eq(len(new_uidls), len(mover_msgs), "first fetch")
            t.check(all(client.seen[u].endswith(crlf(m)) for u, m in zip(new_uidls, mover_msgs)), "bytes")
            if have_mpop:
                t.eq(mpop_fetch(mpop_dir, PROXY_IP, ports["pop3"], MOVER), len(mover_msgs), "mpop first run")
                t.eq(mpop_fetch(mpop_dir, PROXY_IP, ports["pop3"], MOVER), 0, "mpop second run")
            before = pop3_view(BACKENDS["b1"], ports["pop3"], MOVER)
        late = msg(5100, body=b"delivered while the user is being moved\r\n")
        with t.case("move step 1: bulk copy while the user is live (doveadm backup over tcp to b2)"):
            t_mv = time.monotonic()
            old.doveadm("backup", "-u", MOVER, "tcp:%s:%d" % (BACKENDS["b2"], ports["doveadm"]))
            # a client that stays logged in through the proxy across the block
            idle = RawPOP3(ports["pop3"], PROXY_IP)
            idle.login(MOVER, DEFAULT_PASSWORD)
            idle.stat()
        with t.case("move step 2: user blocked at the proxy, open session kicked: LMTP 451 (4xx), POP3 -ERR [SYS/TEMP]"):
            pm.moving.add(MOVER)
            pm.write()
            pm.wait_seen(proxy, MOVER)
            proxy.doveadm("proxy", "kick", MOVER)

            def kicked():
                """The session ends (EOF or reset) within 5 s; a last line
                from the server before the close is fine."""
                idle.sock.settimeout(5)
                for _ in range(10):
                    try:
                        if not idle.sock.recv(1 << 16):
                            return True
                    except socket.timeout:
                        return False
                    except OSError:
                        return True
                return False
            t.check(kicked(), "doveadm proxy kick left the proxied POP3 session open")
            idle.close()
            code, txt = deliver(PROXY_IP, ports["lmtp"], MOVER, late)
            t.check(400 <= code < 500, "LMTP during the move: %d %r" % (code, txt))
            rep = pop3_login_reply(PROXY_IP, ports["pop3"], MOVER)
            t.check(rep.startswith(b"-ERR [SYS/TEMP]"), "POP3 during the move: %r" % rep)
            code, txt = deliver(PROXY_IP, ports["lmtp"], "nosuchuser", late)
            t.check(500 <= code < 600, "an unknown user still gets 5xx: %d %r" % (code, txt))
        with t.case("move step 3: final incremental backup, then the proxy entry flipped to b2 and unblocked"):
            old.doveadm("backup", "-u", MOVER, "tcp:%s:%d" % (BACKENDS["b2"], ports["doveadm"]))
            t.eq(fetch_state(new, MOVER), fetch_state(old, MOVER), "uid/guid/uidl/size on b2 vs b1")
            pm.moving.discard(MOVER)
            pm.where[MOVER] = "b2"
            pm.write()
            pm.wait_seen(proxy, MOVER)
            print("      move took %.2fs" % (time.monotonic() - t_mv), flush=True)
        with t.case("after the move: POP3 via the proxy serves b2 with identical UIDLs, sizes, bytes"):
            after = pop3_view(PROXY_IP, ports["pop3"], MOVER)
            t.eq(after, before, "POP3 view")
            t.eq(after, pop3_view(BACKENDS["b2"], ports["pop3"], MOVER), "b2 directly")
        with t.case("after the move: the leave-on-server clients fetch nothing"):
            t.eq(client.fetch(PROXY_IP, ports["pop3"]), [], "poplib new UIDLs")
            if have_mpop:
                t.eq(mpop_fetch(mpop_dir, PROXY_IP, ports["pop3"], MOVER), 0, "mpop after the move")
        with t.case("the delivery refused during the move, retried, lands on b2 (and only there)"):
            code, txt = deliver(PROXY_IP, ports["lmtp"], MOVER, late)
            t.eq(code, 250, "retry")
            t.eq(client.fetch(PROXY_IP, ports["pop3"]), [pop3_view(BACKENDS["b2"], ports["pop3"], MOVER)[-1][0]],
                 "exactly the late message is new")
            t.eq(len(fetch_state(old, MOVER)), len(mover_msgs), "b1 did not get it")
            if have_mpop:
                t.eq(mpop_fetch(mpop_dir, PROXY_IP, ports["pop3"], MOVER), 1, "mpop: the late message")
        with t.case("move step 4: the old copy is removed from b1"):
            shutil.rmtree(old.mail_root(MOVER))
            t.check(not os.path.exists(old.mail_root(MOVER)), "still there")
            t.eq(len(pop3_view(PROXY_IP, ports["pop3"], MOVER)), len(mover_msgs) + 1, "via proxy")

        # ---------------- 3. a backend down ------------------------------
        down = be["b3"]
        u_down = [u for u in users if shard(u) == "b3"][:3]
        u_up = [u for u in users if shard(u) != "b3"][:4]
        with t.case("b3 down: its users get LMTP 451 and POP3 -ERR [SYS/TEMP]; others unaffected"):
            down._kill_master()
            for u in u_down:
                code, txt = deliver(PROXY_IP, ports["lmtp"], u, msg(7000))
                t.check(400 <= code < 500, "LMTP %s: %d %r" % (u, code, txt))
                rep = pop3_login_reply(PROXY_IP, ports["pop3"], u)
                t.check(rep.startswith(b"-ERR [SYS/TEMP]"), "POP3 %s: %r" % (u, rep))
            for u in u_up:
                code, txt = deliver(PROXY_IP, ports["lmtp"], u, msg(7001))
                t.eq(code, 250, "LMTP %s" % u)
                t.check(len(pop3_view(PROXY_IP, ports["pop3"], u, retr=False)) >= 1, "POP3 %s" % u)
        with t.case("b3 back: service returns by itself (no proxy action)"):
            down._start_once()
            for u in u_down:
                code, txt = deliver(PROXY_IP, ports["lmtp"], u, msg(7002))
                t.eq(code, 250, "LMTP %s" % u)
                t.check(len(pop3_view(PROXY_IP, ports["pop3"], u)) >= 1, "POP3 %s" % u)

        with t.case("no Error/Panic/Fatal in the logs so far (proxy: only the expected b3-down lines)"):
            for name, dc in sorted(be.items()):
                dc.assert_clean_log()
            proxy.assert_clean_log(allow=(
                r"connect\(127\.0\.0\.13:\d+\) failed", r"Connection refused", r"proxy.*127\.0\.0\.13",
                # the move: the checkpassword fallback's temporary failure, as meant
                r"checkpassword\(%s[,@)].*exited with status 111" % MOVER,
                r"passdb lookup\(%s[@)].*Auth PASS lookup failed" % MOVER))

        # ---------------- 4. replication b2 <-> b3 ----------------------
        replication(t, be, proxy, pm, ports, REP)

        for name, dc in sorted(be.items()):
            dc.stop()
        proxy.stop()
    finally:
        for dc in list(be.values()) + ([proxy] if "proxy" in dir() else []):
            try:
                dc.stop()
            except Exception:
                pass
        shutil.rmtree(work, ignore_errors=True)
    print("# whole script %.1fs" % (time.monotonic() - T0), flush=True)
    t.done()


def replicator_status(dc):
    """{user: (priority, success, failed)} from `doveadm replicator status '*'`."""
    out = {}
    for line in dc.doveadm("replicator", "status", "*").stdout.splitlines()[1:]:
        f = line.split()
        if len(f) >= 6:
            out[f[0]] = (f[1], f[4], f[5])
    return out


def replicator_idle(dc, users):
    st = replicator_status(dc)
    return all(u in st and st[u][0] == "none" and st[u][1] != "-" and st[u][2] == "-" for u in users)


def replication(t, be, proxy, pm, ports, rep_users):
    prim, repl = be["b2"], be["b3"]
    with t.case("replication: b2 and b3 pair up (notify replication, replicator, aggregator, "
                "mail_replica = tcp:peer:doveadm_port)", required=True):
        for dc, peer in ((prim, BACKENDS["b3"]), (repl, BACKENDS["b2"])):
            dc._kill_master()
            # the replicator full-syncs every userdb user at start: the pair
            # serves the replicated users (a bounded test)
            dc.users = {u: {} for u in rep_users}
            dc._write_passwd()
            dc.mail_plugins = ["lmbox", "notify", "replication"]
            dc.extra_conf = backend_conf() + replication_conf(dc, peer)
            dc.write_config()
        for dc in (prim, repl):
            dc._start_once()
        # the replicators start one after the other (the first doveadm
        # replicator command starts one), each full-syncing every user of its
        # userdb to the peer once
        t_sync = time.monotonic()
        try:
            for dc in (prim, repl):
                wait_until(lambda: replicator_idle(dc, rep_users), 60, "start-up full syncs", interval=0.3)
        except Failure:
            for dc in (prim, repl):
                print("      replicator status on %s: %r" % (dc.host, replicator_status(dc)))
                print("      " + "\n      ".join(l for l in dc.log_text().splitlines()
                                                if re.search(r"Error|Warning|replicat", l))[-3000:])
            raise
        print("      start-up full syncs of %d users done in %.1fs" % (len(rep_users), time.monotonic() - t_sync),
              flush=True)
    u = rep_users[0]
    mails = [msg(8000 + i, body=b"replicated %d\r\n" % i + b"r\r\n" * (i * 50) + b"\r\n") for i in range(6)]

    def converged(want_n):
        a, b = fetch_state(prim, u), fetch_state(repl, u)
        return a == b and len(a) == want_n and (a, b)

    with t.case("delivery through the proxy to the primary (b2) appears on the replica (b3)"):
        for m in mails:
            code, txt = deliver(PROXY_IP, ports["lmtp"], u, m)
            t.eq(code, 250, "delivery")
        wait_until(lambda: converged(len(mails)), 60, "replica to have %d messages" % len(mails), interval=0.2)
    with t.case("IMAP expunge through the proxy on the primary vanishes on the replica"):
        m = imaplib.IMAP4(PROXY_IP, ports["imap"], timeout=60)
        m.login(u, DEFAULT_PASSWORD)
        m.select("INBOX")
        t.eq(m.uid("STORE", "2", "+FLAGS", "(\\Deleted)")[0], "OK", "STORE")
        t.eq(m.expunge()[0], "OK", "EXPUNGE")
        m.logout()
        wait_until(lambda: converged(len(mails) - 1), 60, "replica to lose UID 2", interval=0.2)
    with t.case("POP3 DELE through the proxy reaches the replica with the user's next replication "
                "(2.3.19 requests none for a POP3 expunge, maildir alike): the next delivery"):
        r = RawPOP3(ports["pop3"], PROXY_IP)
        r.login(u, DEFAULT_PASSWORD)
        r.ok("DELE 3")      # UID 4
        t.check(r.quit().startswith(b"+OK"), "QUIT")
        t.eq(deliver(PROXY_IP, ports["lmtp"], u, msg(8050))[0], 250, "delivery")
        wait_until(lambda: converged(len(mails) - 1), 60, "replica to lose UID 4 and get the new mail",
                   interval=0.2)
        t.check("4" not in [x[0] for x in fetch_state(repl, u)], "UID 4 still on the replica")
        before = pop3_view(PROXY_IP, ports["pop3"], u)
    with t.case("primary stopped, proxy pointed at the replica: POP3 shows the same messages and UIDLs"):
        prim._kill_master()
        pm.set(u, "b3")
        pm.wait_seen(proxy, u)
        t.eq(pop3_view(PROXY_IP, ports["pop3"], u), before, "POP3 via proxy on the replica")
    extra = [msg(8100 + i, body=b"while b2 is down %d\r\n" % i) for i in range(2)]
    with t.case("while the primary is down: 2 deliveries and 1 DELE on the replica"):
        for m in extra:
            t.eq(deliver(PROXY_IP, ports["lmtp"], u, m)[0], 250, "delivery")
        r = RawPOP3(ports["pop3"], PROXY_IP)
        r.login(u, DEFAULT_PASSWORD)
        r.ok("DELE 1")
        t.check(r.quit().startswith(b"+OK"), "QUIT")
        want = pop3_view(PROXY_IP, ports["pop3"], u)
        t.eq(len(want), len(before) - 1 + len(extra), "messages on the replica")
    with t.case("the primary returns: the pair converges, nothing lost or resurrected"):
        prim._start_once()
        repl.doveadm("replicator", "replicate", "-f", u, check=False)
        wait_until(lambda: converged(len(want)), 90, "the pair to converge", interval=0.3)
        pm.set(u, "b2")
        pm.wait_seen(proxy, u)
        t.eq(pop3_view(PROXY_IP, ports["pop3"], u), want, "POP3 via proxy on the primary again")
    with t.case("replication logs: no Error/Panic/Fatal except the peer-down sync failures"):
        prim.assert_clean_log(allow=(r"dsync|doveadm|replicat|connect\(",))
        repl.assert_clean_log(allow=(r"dsync|doveadm|replicat|connect\(",))


if __name__ == "__main__":
    run(main)
