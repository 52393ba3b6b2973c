#!/usr/bin/env python3
"""bench.py: lmbox against Dovecot's own backends, one private Dovecot per
backend, same configuration except mail_location (docs/benchmarks.md,
section "Dovecot backends"; issue 9).  Python 3 standard library only; uses
tests/integration/lmboxtest.py for the private Dovecot.

Environment (all optional):
  BENCH_N         message counts, comma separated        (1000,10000)
  BENCH_BACKENDS  lmbox,maildir,sdbox,mdbox,maildir+zlib,mdbox+zlib
  BENCH_REPEAT    timed repetitions per figure, medians  (5)
  BENCH_LOGIN     login modes: default,perf              (default,perf)
  BENCH_OUT       directory for results.jsonl and plots  (docs/bench of the source tree)
  BENCH_DOCS      markdown file whose "## Dovecot backends" section is rewritten
                  ("" = none; default: docs/benchmarks.md when BENCH_OUT is the default)
  BENCH_SEED      corpus seed                            (20261123)
  BENCH_TIME_LIMIT  seconds for the whole run before it stops with an error (14400)
  BENCH_SKIP      measurements left out, comma separated, e.g. for a quick 100k run:
                  rss, quit, cold, deleall, churn          (none)
  BENCH_SMOKE=1   CI smoke test: defaults N=300, REPEAT=1, every measurement once,
                  answers checked, speed not judged, docs not touched

Commands:
  bench.py            run, write JSONL, plots and (if BENCH_DOCS) the docs section
  bench.py report     rebuild plots and docs section from BENCH_OUT/results.jsonl

Exit status: 0 when every answer was right, 1 when any check failed (the
failures are listed at the end), 77 when Dovecot is not installed.
Nothing listens anywhere but 127.0.0.1; every loop is bounded in count and time.
"""
import base64
import hashlib
import json
import os
import platform
import random
import re
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import lmboxtest  # noqa: E402
from lmboxtest import Dovecot, Failure, Skip, check_environment, crlf  # noqa: E402

# --------------------------------------------------------------------------
# configuration

ALL_BACKENDS = ["lmbox", "maildir", "sdbox", "mdbox", "maildir+zlib", "mdbox+zlib"]
ZLIB_SETTINGS = {"zlib_save": "gz", "zlib_save_level": "6"}
BACKENDS = {
    "lmbox": ("lmbox:~/lmbox", None, {}),
    "maildir": ("maildir:~/Maildir", [], {}),
    "sdbox": ("sdbox:~/sdbox", [], {}),
    "mdbox": ("mdbox:~/mdbox", [], {}),
    "maildir+zlib": ("maildir:~/Maildir", ["zlib"], ZLIB_SETTINGS),
    "mdbox+zlib": ("mdbox:~/mdbox", ["zlib"], ZLIB_SETTINGS),
}
UNCOMPRESSED_PEERS = ("maildir", "sdbox", "mdbox")
ZLIB_PEERS = ("maildir+zlib", "mdbox+zlib")
LOGIN_CONF = {
    "default": "",
    # 2.4 renamed service_count (docs/dovecot24.md)
    "perf": ("service pop3-login {\n  %s\n  process_min_avail = 2\n}\n"
             % ("restart_request_count = unlimited" if lmboxtest.is_dovecot24() else "service_count = 0") +
             "service pop3 {\n  process_min_avail = 2\n}\n"),
}
PASSWORD = lmboxtest.DEFAULT_PASSWORD
VSZ_LIMIT = 256 * 1024 * 1024
NET_TIMEOUT = 120.0
SAMPLE_RETR = 100


SKIPPABLE = {"rss", "quit", "cold", "deleall", "churn"}


def env_list(name, default):
    v = os.environ.get(name, "").strip()
    return [x.strip() for x in (v or default).split(",") if x.strip()]


class Config:
    def __init__(self):
        self.smoke = os.environ.get("BENCH_SMOKE") == "1"
        self.ns = [int(x) for x in env_list("BENCH_N", "300" if self.smoke else "1000,10000")]
        self.backends = env_list("BENCH_BACKENDS", ",".join(ALL_BACKENDS))
        self.repeat = int(os.environ.get("BENCH_REPEAT") or (1 if self.smoke else 5))
        self.logins = env_list("BENCH_LOGIN", "default" if self.smoke else "default,perf")
        self.seed = int(os.environ.get("BENCH_SEED") or 20261123)
        self.skip = set(env_list("BENCH_SKIP", ""))
        if self.skip - SKIPPABLE:
            raise SystemExit("BENCH_SKIP: unknown %s (known: %s)" % (", ".join(sorted(self.skip - SKIPPABLE)),
                                                                    ", ".join(sorted(SKIPPABLE))))
        self.time_limit = float(os.environ.get("BENCH_TIME_LIMIT") or 14400)
        src = lmboxtest.top_srcdir()
        default_out = os.path.join(src, "docs", "bench")
        self.out = os.path.abspath(os.environ.get("BENCH_OUT") or default_out)
        if "BENCH_DOCS" in os.environ:
            self.docs = os.environ["BENCH_DOCS"]
        else:
            self.docs = (os.path.join(src, "docs", "benchmarks.md")
                         if self.out == os.path.abspath(default_out) and not self.smoke else "")
        self.builddir = lmboxtest.top_builddir()
        for b in self.backends:
            if b not in BACKENDS:
                raise SystemExit("BENCH_BACKENDS: unknown backend %r (known: %s)" % (b, ", ".join(ALL_BACKENDS)))
        for m in self.logins:
            if m not in LOGIN_CONF:
                raise SystemExit("BENCH_LOGIN: unknown mode %r (default, perf)" % m)
        if not self.ns or min(self.ns) < 20 or max(self.ns) > 1000000:
            raise SystemExit("BENCH_N: each N must be in 20..1000000")
        if not 1 <= self.repeat <= 100:
            raise SystemExit("BENCH_REPEAT must be in 1..100")
        self.t0 = time.monotonic()

    def check_time(self, what):
        if time.monotonic() - self.t0 > self.time_limit:
            raise Failure("BENCH_TIME_LIMIT (%ds) exceeded before %s" % (self.time_limit, what))


def log(*a):
    print("[%7.1fs] %s" % (time.monotonic() - T0, " ".join(str(x) for x in a)), flush=True)


T0 = time.monotonic()


def median(xs):
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------
# the corpus: deterministic, seeded, one message per index

class Corpus:
    """Message i is a pure function of (seed, i).  Mostly 2-30 KB text and
    HTML, 2% with a base64 attachment of 100 KB-5 MB, and a few odd ones
    (bare LF, 8-bit, no final newline, leading dots).  info(i) caches what
    the checks need: raw size, size deflated alone at level 6, and the
    length and SHA-256 of what POP3 must send (and of its header part)."""

    def __init__(self, seed):
        self.seed = seed
        r = random.Random(seed)
        cons, vows = "bcdfghjklmnprstvwz", "aeiou"
        words = set()
        while len(words) < 6000:
            n = r.randint(1, 4)
            words.add("".join(r.choice(cons) + r.choice(vows) + (r.choice(cons) if r.random() < 0.4 else "")
                              for _ in range(n)))
        self.vocab = sorted(words)
        r.shuffle(self.vocab)
        acc, cw = 0.0, []
        for k in range(len(self.vocab)):     # Zipf-like word frequencies
            acc += 1.0 / (k + 1)
            cw.append(acc)
        self.cw = cw
        self._info = {}
        self._lock = threading.Lock()

    def _words(self, rng, n):
        return rng.choices(self.vocab, cum_weights=self.cw, k=n)

    def _text(self, rng, size, dots=False):
        lines, total = [], 0
        while total < size:
            w = self._words(rng, rng.randint(6, 13))
            ln = " ".join(w)
            if dots and rng.random() < 0.02:
                ln = "." + ln
            if rng.random() < 0.08:
                ln = ""
            lines.append(ln)
            total += len(ln) + 2
        return "\r\n".join(lines).encode() + b"\r\n"

    def kind(self, i):
        if i % 97 == 13:
            return "barelf"
        if i % 89 == 7:
            return "8bit"
        if i % 83 == 5:
            return "nonl"
        return "normal"

    def message(self, i):
        rng = random.Random(self.seed * 1000003 + i)
        p = rng.random()
        size = int(2048 * (15 ** rng.random()))          # 2-30 KB, log-uniform
        kind = self.kind(i)
        subj = " ".join(self._words(rng, rng.randint(2, 8)))
        hdr = ("From: %s <%s@example.org>\r\nTo: user@example.org\r\nSubject: %s\r\n"
               "Date: Mon, 02 Nov 2026 %02d:%02d:%02d +0000\r\n"
               "Message-ID: <bench-%d-%d@example.org>\r\nX-Bench-Seq: %d\r\nMIME-Version: 1.0\r\n"
               % (subj.split()[0].title(), subj.split()[-1], subj, (i // 3600) % 24, (i // 60) % 60, i % 60,
                  self.seed, i, i)).encode()
        if p < 0.02:
            asize = int(100 * 1024 * (50 ** rng.random()))   # 100 KB - 5 MB encoded
            raw = rng.randbytes(asize * 3 // 4)
            b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
            bnd = b"=_bench_%d" % i
            body = (b"Content-Type: multipart/mixed; boundary=\"" + bnd + b"\"\r\n\r\n"
                    b"This is a multi-part message in MIME format.\r\n\r\n--" + bnd +
                    b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
                    self._text(rng, rng.randint(500, 4000)) + b"\r\n--" + bnd +
                    b"\r\nContent-Type: application/octet-stream; name=\"data%d.bin\"\r\n"
                    b"Content-Transfer-Encoding: base64\r\n"
                    b"Content-Disposition: attachment; filename=\"data%d.bin\"\r\n\r\n" % (i, i) +
                    b64 + b"\r\n--" + bnd + b"--\r\n")
        elif p < 0.35:
            paras = []
            total = 0
            while total < size:
                t = self._text(rng, rng.randint(200, 1200)).decode().replace("\r\n", " ")
                para = "<p class=\"c%d\">%s</p>\r\n" % (rng.randint(1, 9), t)
                paras.append(para)
                total += len(para)
            body = (b"Content-Type: text/html; charset=us-ascii\r\n\r\n"
                    b"<!DOCTYPE html>\r\n<html><head><title>" + subj.encode() + b"</title></head>\r\n<body>\r\n" +
                    "".join(paras).encode() + b"</body></html>\r\n")
        else:
            body = (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" +
                    self._text(rng, size, dots=(kind == "normal")))
        m = hdr + body
        if kind == "barelf":
            m = m.replace(b"\r\n", b"\n")
        elif kind == "8bit":
            m = m.replace(b"charset=us-ascii\r\n", b"charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n", 1)
            m = m.replace(b"\r\n\r\n", b"\r\n\r\n\xc3\xa4\xc3\xb6\xc3\xbc \xe2\x82\xac \xff\xfe latin-1 \xe9\xe8\r\n", 1)
        elif kind == "nonl":
            m = m.rstrip(b"\r\n")
        return m

    @staticmethod
    def wire(m):
        """What the LMTP server receives for m sent by smtplib: the data
        line always ends in CRLF before the final dot."""
        return m if m.endswith(b"\r\n") else m + b"\r\n"

    def info(self, i, m=None):
        with self._lock:
            v = self._info.get(i)
        if v is not None:
            return v
        if m is None:
            m = self.message(i)
        exp = crlf(self.wire(m))
        h = exp[:exp.index(b"\r\n\r\n") + 4]
        v = (len(m), len(zlib.compress(m, 6)), len(exp), hashlib.sha256(exp).digest(),
             len(h), hashlib.sha256(h).digest())
        with self._lock:
            self._info[i] = v
        return v


# --------------------------------------------------------------------------
# clients

class Pop:
    """POP3 over a raw socket, fast enough that the client is not what is
    measured: a bytearray buffer, multi-line bodies found by their
    terminator, pipelined commands."""

    def __init__(self, port, timeout=NET_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.nrecv = 0
        g = self.line()
        if not g.startswith(b"+OK"):
            raise Failure("POP3 greeting %r" % g)

    def _fill(self):
        self.nrecv += 1
        if self.nrecv > 50000000:
            raise Failure("POP3: endless response")
        d = self.sock.recv(1 << 20)
        if not d:
            raise Failure("POP3 connection closed by server")
        self.buf += d

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return ln
            self._fill()

    def send(self, data):
        self.sock.sendall(data)

    def ok(self, cmd):
        self.send(cmd.encode() + b"\r\n")
        r = self.line()
        if not r.startswith(b"+OK"):
            raise Failure("POP3 %s -> %r" % (cmd.split()[0], r))
        return r

    def multiline(self):
        if self.buf[:3] == b".\r\n":
            del self.buf[:3]
            return b""
        start = 0
        while True:
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                if self.buf[:3] == b".\r\n":
                    del self.buf[:3]
                    return b""
                body = bytes(self.buf[:i + 2])
                del self.buf[:i + 5]
                if body.startswith(b"."):
                    body = body[1:]
                return body.replace(b"\r\n..", b"\r\n.")
            start = max(0, len(self.buf) - 4)
            self._fill()
            if self.buf[:3] == b".\r\n":
                del self.buf[:3]
                return b""

    def login(self, user):
        self.ok("USER " + user)
        self.ok("PASS " + PASSWORD)

    def stat(self):
        r = self.ok("STAT").split()
        return int(r[1]), int(r[2])

    # The *_raw forms return the response undecoded: timed sessions use
    # them and parse afterwards, since parsing 100k lines in Python costs
    # 60-140 ms of client CPU that is no backend's time.
    def list_raw(self):
        self.ok("LIST")
        return self.multiline()

    def uidl_raw(self):
        self.ok("UIDL")
        return self.multiline()

    def list(self):
        return parse_list(self.list_raw())

    def uidl(self):
        return parse_uidl(self.uidl_raw())

    def retr(self, n):
        self.ok("RETR %d" % n)
        return self.multiline()

    def top0(self, n):
        self.ok("TOP %d 0" % n)
        return self.multiline()

    def pipeline(self, cmds):
        """Send every command at once, then read one status line each;
        all must be +OK."""
        self.send(b"".join(c.encode() + b"\r\n" for c in cmds))
        for c in cmds:
            r = self.line()
            if not r.startswith(b"+OK"):
                raise Failure("POP3 %s -> %r" % (c, r))

    def quit(self):
        self.send(b"QUIT\r\n")
        r = self.line()
        if not r.startswith(b"+OK"):
            raise Failure("POP3 QUIT -> %r" % r)
        self.close()
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_list(raw):
    return [tuple(int(x) for x in l.split()) for l in raw.split(b"\r\n") if l]


def parse_uidl(raw):
    return [(int(a), b.decode()) for a, b in (l.split(None, 1) for l in raw.split(b"\r\n") if l)]


def timed_session(port, user, body):
    """Connect, log in, run body(pop), QUIT; the client-side time of all of
    it and body's result."""
    t = time.perf_counter()
    p = Pop(port)
    try:
        p.login(user)
        res = body(p)
        p.quit()
    finally:
        p.close()
    return time.perf_counter() - t, res


class Lmtp:
    """One persistent LMTP connection (as an MTA's connection cache uses it)."""

    def __init__(self, port):
        self.s = smtplib.LMTP("127.0.0.1", port, timeout=NET_TIMEOUT)
        self.s.ehlo("bench")

    def deliver(self, user, m):
        try:
            r = self.s.sendmail("sender@example.org", [user + "@example.org"], m)
        except smtplib.SMTPException as e:
            raise Failure("LMTP delivery to %s failed: %s" % (user, e))
        if r:
            raise Failure("LMTP refused %s: %r" % (user, r))

    def close(self):
        try:
            self.s.quit()
        except (smtplib.SMTPException, OSError):
            self.s.close()


def deliver(corpus, port, user, indices, clients, deadline):
    """Deliver corpus messages over `clients` LMTP connections in parallel;
    returns the wall time.  Messages are generated before the clock starts
    when there are few, else by the delivering threads."""
    indices = list(indices)
    pre = None
    if sum(1 for _ in indices) <= 2000:
        pre = {i: corpus.message(i) for i in indices}
        for i in indices:
            corpus.info(i, pre[i])
    lock = threading.Lock()
    pos = [0]
    errors = []

    def worker():
        c = None
        try:
            c = Lmtp(port)
            while True:
                with lock:
                    if pos[0] >= len(indices) or errors:
                        return
                    i = indices[pos[0]]
                    pos[0] += 1
                if time.monotonic() > deadline:
                    raise Failure("delivery did not finish in time")
                m = pre[i] if pre is not None else corpus.message(i)
                if pre is None:
                    corpus.info(i, m)
                c.deliver(user, m)
        except Exception as e:   # reported by the caller
            errors.append(e)
        finally:
            if c:
                c.close()

    t = time.perf_counter()
    th = [threading.Thread(target=worker) for _ in range(clients)]
    for x in th:
        x.start()
    for x in th:
        x.join(max(1.0, deadline - time.monotonic() + 30))
    dt = time.perf_counter() - t
    if any(x.is_alive() for x in th):
        raise Failure("delivery threads did not finish")
    if errors:
        raise errors[0]
    return dt


# --------------------------------------------------------------------------
# disk and processes

def disk_usage(path):
    """(apparent bytes as du -sb, allocated bytes as du -s -B1, inodes)."""
    app = alloc = inodes = 0
    seen = set()
    for dp, dns, fns in os.walk(path):
        for n in [""] + dns + fns:
            p = os.path.join(dp, n) if n else dp
            if n in dns:
                continue   # counted as dp of its own walk step
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            app += st.st_size
            alloc += st.st_blocks * 512
            inodes += 1
    return app, alloc, inodes


def tcp_inode(local_port, remote_port):
    """Inode of the server-side socket 127.0.0.1:local_port <-> 127.0.0.1:remote_port."""
    want_l = "0100007F:%04X" % local_port
    want_r = "0100007F:%04X" % remote_port
    with open("/proc/net/tcp") as f:
        for ln in f.readlines()[1:]:
            x = ln.split()
            if x[1] == want_l and x[2] == want_r:
                return x[9]
    return None


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2:].split()[1])
            if ppid == pid:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    out.append((int(d), f.read().replace(b"\0", b" ").decode(errors="replace")))
        except (OSError, ValueError):
            continue
    return out


def session_pop3_pid(master_pid, pop3_port, client_port):
    """The pop3 process serving our connection: the child of the private
    master that holds the connection's socket."""
    ino = tcp_inode(pop3_port, client_port)
    cands = [p for p, cmd in children(master_pid) if "pop3" in cmd and "login" not in cmd]
    if ino:
        for pid in cands:
            try:
                for fd in os.listdir("/proc/%d/fd" % pid):
                    try:
                        if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "socket:[%s]" % ino:
                            return pid
                    except OSError:
                        continue
            except OSError:
                continue
    raise Failure("pop3 process of the session not found (master %d, candidates %s)" % (master_pid, cands))


def proc_status(pid):
    d = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k in ("VmHWM", "VmPeak", "VmRSS", "VmSize"):
                d[k] = int(v.split()[0]) * 1024
    return d


# --------------------------------------------------------------------------
# results

class Results:
    def __init__(self, cfg, run_id):
        self.cfg = cfg
        self.run_id = run_id
        self.records = []
        self.failures = []

    def add(self, backend, n, login, metric, unit, samples=None, value=None, **extra):
        if samples is not None and value is None:
            value = median(samples)
        rec = {"run": self.run_id, "backend": backend, "n": n, "login": login, "metric": metric,
               "unit": unit, "value": value}
        if samples is not None:
            rec["samples"] = [round(s, 6) if isinstance(s, float) else s for s in samples]
        rec.update(extra)
        self.records.append(rec)
        v = value
        vs = ("%.2f" % v) if isinstance(v, float) else str(v)
        log("  %-13s N=%-6s %-7s %-24s %s %s" % (backend, n, login or "-", metric, vs, unit))
        return rec

    def fail(self, what, e):
        msg = "%s: %s" % (what, e)
        self.failures.append(msg)
        print("FAIL: " + msg.replace("\n", "\n      "), flush=True)


# --------------------------------------------------------------------------
# one backend

class Mailbox:
    """What the benchmark knows a user's INBOX holds: POP3 seq -> (corpus
    index, POP3 size, UIDL), read and cross-checked from POP3 and doveadm."""

    def __init__(self):
        self.seqs = []      # list of (idx, size, uidl), position = seq-1


class BackendRun:
    def __init__(self, cfg, corpus, res, name):
        self.cfg, self.corpus, self.res, self.name = cfg, corpus, res, name
        self.loc, self.plugins, self.settings = BACKENDS[name]
        self.dcs = {}
        self.rng = random.Random(cfg.seed + 17)

    # ---- Dovecot instances (one per login mode, same homes) ----

    def start(self):
        first = self.cfg.logins[0]
        # every user exists from the start: a passwd-file changed within the
        # same second may not be reread
        users = ["empty"] + ["n%d" % n for n in self.cfg.ns] + ["c%d" % n for n in self.cfg.ns]
        dc = Dovecot(mail_location=self.loc, users={u: {} for u in users}, mail_plugins=self.plugins,
                     plugin_settings=self.settings, extra_conf=LOGIN_CONF[first],
                     builddir=self.cfg.builddir)
        self.dcs[first] = dc
        dc.start()
        for mode in self.cfg.logins[1:]:
            d2 = Dovecot(mail_location=self.loc, users={u: {"home": dc.home(u)} for u in users},
                         mail_plugins=self.plugins, plugin_settings=self.settings,
                         extra_conf=LOGIN_CONF[mode], builddir=self.cfg.builddir)
            self.dcs[mode] = d2
            d2.start()

    @property
    def dc(self):
        return self.dcs[self.cfg.logins[0]]

    def stop(self):
        for mode, dc in reversed(list(self.dcs.items())):
            try:
                if dc.tmp:
                    bad = dc.log_errors()
                    if bad:
                        self.res.fail("%s (%s login) Dovecot log" % (self.name, mode),
                                      "errors logged:\n" + "\n".join(bad[:10]))
            finally:
                dc.stop()

    def add_user(self, user):
        if user not in self.dc.users:
            raise Failure("user %s not configured" % user)
        os.makedirs(self.dc.home(user), exist_ok=True)
        os.chown(self.dc.home(user), self.dc.uid, self.dc.gid)
        os.chmod(self.dc.home(user), 0o700)

    def port(self, mode):
        return self.dcs[mode].ports["pop3"]

    def deadline(self):
        return time.monotonic() + max(600.0, self.cfg.time_limit - (time.monotonic() - self.cfg.t0))

    # ---- reading the mailbox back, with checks ----

    def read_mailbox(self, user, expect_indices=None):
        """POP3 LIST+UIDL and doveadm fetch (uid, size, X-Bench-Seq) of the
        user; every figure checked against the others and the corpus."""
        p = Pop(self.port(self.cfg.logins[0]))
        try:
            p.login(user)
            cnt, octets = p.stat()
            lst = p.list()
            uidl = p.uidl()
            p.quit()
        finally:
            p.close()
        if len(lst) != cnt or len(uidl) != cnt:
            raise Failure("STAT says %d messages, LIST %d, UIDL %d" % (cnt, len(lst), len(uidl)))
        if sum(s for _, s in lst) != octets:
            raise Failure("STAT octets %d != sum of LIST %d" % (octets, sum(s for _, s in lst)))
        if len(set(u for _, u in uidl)) != cnt:
            raise Failure("UIDLs not distinct")
        r = self.dc.doveadm("-f", "tab", "fetch", "-u", user, "uid size.virtual hdr.x-bench-seq",
                            "mailbox", "INBOX", "all")
        lines = [ln for ln in r.stdout.split("\n") if ln.strip()]
        fetched = []
        for ln in lines[1:]:
            x = ln.split("\t")
            if len(x) != 3:
                raise Failure("doveadm fetch: unexpected line %r" % ln)
            fetched.append({"uid": x[0], "size.virtual": x[1], "hdr.x-bench-seq": x[2]})
        if len(fetched) != cnt:
            raise Failure("doveadm fetch shows %d messages, POP3 %d" % (len(fetched), cnt))
        mb = Mailbox()
        for k, f in enumerate(fetched):
            size = int(f["size.virtual"])
            if size != lst[k][1]:
                raise Failure("message %d: doveadm size.virtual %d, POP3 LIST %d" % (k + 1, size, lst[k][1]))
            idx = int(f["hdr.x-bench-seq"])
            info = self.corpus.info(idx)
            if size < info[2] or size > info[2] + 4096:
                raise Failure("message %d (corpus %d): POP3 size %d for %d bytes delivered"
                              % (k + 1, idx, size, info[2]))
            mb.seqs.append((idx, size, uidl[k][1]))
        if expect_indices is not None:
            got = sorted(i for i, _, _ in mb.seqs)
            want = sorted(expect_indices)
            if got != want:
                missing = set(want) - set(got)
                extra = len(got) - len(set(got))
                raise Failure("mailbox holds %d messages, %d expected; %d missing, %d duplicated"
                              % (len(got), len(want), len(missing), extra))
        return mb

    def uidl_list(self, user, mode):
        p = Pop(self.port(mode))
        try:
            p.login(user)
            u = p.uidl()
            p.quit()
        finally:
            p.close()
        return u

    # ---- measurements ----

    def measure_floor(self, mode):
        port = self.port(mode)
        n_s = max(5, 3 * self.cfg.repeat)
        for _ in range(2):
            timed_session(port, "empty", lambda p: p.stat())
        samples = []
        for _ in range(n_s):
            dt, (c, o) = timed_session(port, "empty", lambda p: p.stat())
            if (c, o) != (0, 0):
                raise Failure("empty mailbox STAT %d %d" % (c, o))
            samples.append(dt * 1000)
        self.res.add(self.name, 0, mode, "floor_F", "ms", samples)

    def fill(self, user, n):
        """LMTP: R timed rounds of S messages with 1 client and with 4, then
        the rest in bulk over 4 connections."""
        R = self.cfg.repeat
        S = max(10, min(200, n // (2 * R)))
        lport = self.dc.ports["lmtp"]
        nxt = 0
        r1, r4 = [], []
        for r in range(R):
            if nxt + 2 * S > n:
                break
            dt = deliver(self.corpus, lport, user, range(nxt, nxt + S), 1, self.deadline())
            r1.append(S / dt)
            nxt += S
            dt = deliver(self.corpus, lport, user, range(nxt, nxt + S), 4, self.deadline())
            r4.append(S / dt)
            nxt += S
        self.res.add(self.name, n, None, "lmtp_1client", "msg/s", r1, batch=S)
        self.res.add(self.name, n, None, "lmtp_4clients", "msg/s", r4, batch=S)
        if nxt < n:
            t = time.monotonic()
            deliver(self.corpus, lport, user, range(nxt, n), 4, self.deadline())
            log("  bulk fill of %d messages: %.1fs" % (n - nxt, time.monotonic() - t))

    def measure_disk(self, user, n, mb, metric_prefix="disk"):
        app, alloc, inodes = disk_usage(self.dc.home(user))
        raw = sum(self.corpus.info(i)[0] for i, _, _ in mb.seqs)
        defl = sum(self.corpus.info(i)[1] for i, _, _ in mb.seqs)
        live = sum(s for _, s, _ in mb.seqs)
        self.res.add(self.name, n, None, metric_prefix + "_bytes", "B", value=app, allocated=alloc,
                     inodes=inodes, raw_bytes=raw, deflate6_bytes=defl, pop3_bytes=live)
        self.res.add(self.name, n, None, metric_prefix + "_inodes", "inodes", value=inodes)

    def measure_warm(self, user, n, mode, mb):
        port = self.port(mode)
        R = self.cfg.repeat
        cnt = len(mb.seqs)
        octets = sum(s for _, s, _ in mb.seqs)
        sizes = [(k + 1, s) for k, (_, s, _) in enumerate(mb.seqs)]
        uidls = [(k + 1, u) for k, (_, _, u) in enumerate(mb.seqs)]

        def chk_stat(r):
            if r != (cnt, octets):
                raise Failure("STAT %r, want (%d, %d)" % (r, cnt, octets))

        def chk_list(r):
            if r != sizes:
                raise Failure("LIST differs from the reference (%d lines, want %d)" % (len(r), cnt))

        def chk_uidl(r):
            if r != uidls:
                same = len(set(u for _, u in r) & set(u for _, u in uidls))
                raise Failure("UIDL differs from the reference (%d lines, %d UIDLs unchanged, want %d)"
                              % (len(r), same, cnt))

        # (the answer is parsed and checked outside the timed session)
        for metric, fn, parse, chk in (("login_stat", Pop.stat, None, chk_stat),
                                       ("login_list", Pop.list_raw, parse_list, chk_list),
                                       ("login_uidl", Pop.uidl_raw, parse_uidl, chk_uidl)):
            timed_session(port, user, fn)      # warm-up
            samples = []
            for _ in range(R):
                dt, r = timed_session(port, user, fn)
                chk(parse(r) if parse else r)
                samples.append(dt * 1000)
            self.res.add(self.name, n, mode, metric, "ms", samples)

    def pick(self, mb, k, salt):
        rng = random.Random(self.cfg.seed * 31 + salt)
        return sorted(rng.sample(range(1, len(mb.seqs) + 1), min(k, len(mb.seqs))))

    def check_retr(self, mb, seq, data):
        idx, size, _ = mb.seqs[seq - 1]
        info = self.corpus.info(idx)
        if len(data) != size:
            raise Failure("RETR %d sent %d octets, LIST says %d" % (seq, len(data), size))
        if hashlib.sha256(data[-info[2]:]).digest() != info[3]:
            raise Failure("RETR %d: content differs from corpus message %d" % (seq, idx))

    def measure_retr_top(self, user, n, mode, mb):
        port = self.port(mode)
        R = self.cfg.repeat
        # the same corpus messages in every backend, whatever their order
        by_idx = {idx: k + 1 for k, (idx, _, _) in enumerate(mb.seqs)}
        rng = random.Random(self.cfg.seed * 7 + n)
        chosen = rng.sample(sorted(by_idx), min(SAMPLE_RETR, len(by_idx)))
        seqs = [by_idx[i] for i in chosen]
        nbytes = sum(mb.seqs[s - 1][1] for s in seqs)

        def retr(p):
            t = time.perf_counter()
            got = [(s, p.retr(s)) for s in seqs]
            dt = time.perf_counter() - t
            for s, d in got:
                self.check_retr(mb, s, d)
            return dt

        def top(p):
            t = time.perf_counter()
            got = [(s, p.top0(s)) for s in seqs]
            dt = time.perf_counter() - t
            for s, d in got:
                idx = mb.seqs[s - 1][0]
                info = self.corpus.info(idx)
                if hashlib.sha256(d[-info[4]:]).digest() != info[5] or \
                        (b"X-Bench-Seq: %d\r\n" % idx) not in d:
                    raise Failure("TOP %d 0: not the header of corpus message %d" % (s, idx))
            return dt

        timed_session(port, user, retr)
        rs, ss, ts = [], [], []
        for _ in range(R):
            st, dt = timed_session(port, user, retr)
            rs.append(dt * 1000)
            ss.append(st * 1000)
        self.res.add(self.name, n, mode, "retr100", "ms", rs, bytes=nbytes, messages=len(seqs),
                     session_ms=ss, mb_s=(nbytes / 1e6) / (median(rs) / 1000))
        for _ in range(R):
            st, dt = timed_session(port, user, top)
            ts.append(dt * 1000)
        self.res.add(self.name, n, mode, "top100", "ms", ts, messages=len(seqs))

    def measure_rss(self, user, n, mode, mb):
        """UIDL and RETR of every message in one session; VmHWM of that
        session's pop3 process before QUIT."""
        port = self.port(mode)
        dc = self.dcs[mode]
        deadline = self.deadline()
        t = time.perf_counter()
        p = Pop(port)
        try:
            p.login(user)
            u = p.uidl()
            if [x for _, x in u] != [x for _, _, x in mb.seqs]:
                raise Failure("UIDL differs from the reference")
            total = 0
            for s in range(1, len(mb.seqs) + 1):
                if time.monotonic() > deadline:
                    raise Failure("RETR of every message did not finish in time")
                d = p.retr(s)
                self.check_retr(mb, s, d)
                total += len(d)
            pid = session_pop3_pid(dc.master_pid, port, p.sock.getsockname()[1])
            st = proc_status(pid)
            p.quit()
        finally:
            p.close()
        dt = time.perf_counter() - t
        self.res.add(self.name, n, mode, "pop3_peak_rss", "B", value=st["VmHWM"], vm_peak=st["VmPeak"],
                     retr_all_s=dt, retr_all_bytes=total)

    def measure_quit_commit(self, user, n, mode, mb, next_idx):
        """DELE of 10% + QUIT, minus DELE of the same + RSET + QUIT; the
        deleted ones are delivered again (new copies) between rounds."""
        port = self.port(mode)
        R = self.cfg.repeat
        k = max(1, len(mb.seqs) // 10)
        a_s, b_s, qa, qb = [], [], [], []
        for r in range(R):
            seqs = self.pick(mb, k, 1000 + r)
            dels = ["DELE %d" % s for s in seqs]
            timed_session(port, user, Pop.stat)     # warm-up
            t0 = time.perf_counter()
            p = Pop(port)
            try:
                p.login(user)
                p.pipeline(dels)
                p.ok("RSET")
                tq = time.perf_counter()
                p.quit()
            finally:
                p.close()
            t1 = time.perf_counter()
            b_s.append((t1 - t0) * 1000)
            qb.append((t1 - tq) * 1000)
            if self.uidl_list(user, mode) != [(k2 + 1, u) for k2, (_, _, u) in enumerate(mb.seqs)]:
                raise Failure("DELE + RSET + QUIT changed the mailbox")
            t0 = time.perf_counter()
            p = Pop(port)
            try:
                p.login(user)
                p.pipeline(dels)
                tq = time.perf_counter()
                p.quit()
            finally:
                p.close()
            t1 = time.perf_counter()
            a_s.append((t1 - t0) * 1000)
            qa.append((t1 - tq) * 1000)
            gone = set(seqs)
            want = [u for k2, (_, _, u) in enumerate(mb.seqs) if k2 + 1 not in gone]
            got = [u for _, u in self.uidl_list(user, mode)]
            if got != want:
                raise Failure("after DELE of %d + QUIT: %d messages, want %d (or other UIDLs)"
                              % (k, len(got), len(want)))
            keep = [i for k2, (i, _, _) in enumerate(mb.seqs) if k2 + 1 not in gone]
            new = list(range(next_idx, next_idx + k))
            next_idx += k
            deliver(self.corpus, self.dc.ports["lmtp"], user, new, 4, self.deadline())
            mb = self.read_mailbox(user, keep + new)
        self.res.add(self.name, n, mode, "quit_commit_10pct", "ms", value=median(a_s) - median(b_s),
                     dele_quit_ms=a_s, dele_rset_quit_ms=b_s, quit_only_ms=qa, rset_quit_only_ms=qb,
                     deleted=k)
        return mb, next_idx

    def measure_cold(self, user, n, mode, mb):
        """login+UIDL+QUIT right after every Dovecot index file is deleted:
        the time, what it showed, then force-resync to go on."""
        port = self.port(mode)
        R = self.cfg.repeat
        samples, shown, same, resynced = [], [], [], []
        ref = [u for _, _, u in mb.seqs]
        for r in range(R):
            files = self.dc.delete_index_files(user)
            if not files:
                raise Failure("no Dovecot index files found to delete")
            dt, u = timed_session(port, user, Pop.uidl_raw)
            u = parse_uidl(u)
            samples.append(dt * 1000)
            shown.append(len(u))
            same.append(len(set(x for _, x in u) & set(ref)))
            if self.name == "lmbox" and (len(u) != len(ref) or [x for _, x in u] != ref):
                raise Failure("lmbox after index loss showed %d messages, %d UIDLs unchanged; want %d, all"
                              % (len(u), same[-1], len(ref)))
            self.dc.doveadm("force-resync", "-u", user, "INBOX")
            now = self.uidl_list(user, mode)
            resynced.append(len(now))
            # mdbox brings back messages expunged but not yet purged: that
            # is what it does, reported; lmbox must come back unchanged.
            if self.name == "lmbox" and [x for _, x in now] != ref:
                raise Failure("lmbox after force-resync: %d messages, want the same %d" % (len(now), len(ref)))
            ref = [x for _, x in now]
        self.res.add(self.name, n, mode, "cold_login_uidl", "ms", samples, shown=shown, uidl_unchanged=same,
                     messages=len(mb.seqs), after_force_resync=resynced)
        return self.read_mailbox(user, [i for i, _, _ in mb.seqs] if self.name == "lmbox" else None)

    def measure_dele_all(self, user, n, mode, mb):
        port = self.port(mode)
        dels = ["DELE %d" % s for s in range(1, len(mb.seqs) + 1)]
        t0 = time.perf_counter()
        p = Pop(port)
        try:
            p.login(user)
            p.pipeline(dels)
            tq = time.perf_counter()
            p.quit()
        finally:
            p.close()
        t1 = time.perf_counter()
        if self.uidl_list(user, mode) != []:
            raise Failure("messages left after DELE of all + QUIT")
        self.res.add(self.name, n, mode, "dele_all_quit", "ms", value=(t1 - t0) * 1000,
                     quit_only_ms=(t1 - tq) * 1000, deleted=len(dels))
        app, alloc, inodes = disk_usage(self.dc.home(user))
        self.res.add(self.name, n, None, "disk_after_dele_all", "B", value=app, allocated=alloc, inodes=inodes)

    def measure_churn(self, n, mode):
        user = "c%d" % n
        self.add_user(user)
        port = self.port(mode)
        idx0 = 50000000 + n * 10
        live = []
        rounds = []
        for r in range(3):
            new = list(range(idx0 + r * n, idx0 + r * n + n // 2))
            if r == 0:
                # the first delivery alone: four concurrent first
                # deliveries make Dovecot 2.3 create the new user's mailbox
                # list index in parallel, and its fcntl locks can fail
                # with EDEADLK (a Panic in lmtp, seen with mdbox+zlib)
                deliver(self.corpus, self.dc.ports["lmtp"], user, new[:1], 1, self.deadline())
                deliver(self.corpus, self.dc.ports["lmtp"], user, new[1:], 4, self.deadline())
            else:
                deliver(self.corpus, self.dc.ports["lmtp"], user, new, 4, self.deadline())
            mb = self.read_mailbox(user, live + new)
            k = len(mb.seqs) * 9 // 10
            seqs = set(self.pick(mb, k, 5000 + r))
            p = Pop(port)
            try:
                p.login(user)
                p.pipeline(["DELE %d" % s for s in sorted(seqs)])
                p.quit()
            finally:
                p.close()
            live = [i for k2, (i, _, _) in enumerate(mb.seqs) if k2 + 1 not in seqs]
            mb = self.read_mailbox(user, live)
            app, alloc, inodes = disk_usage(self.dc.home(user))
            lb = sum(s for _, s, _ in mb.seqs)
            rounds.append({"round": r + 1, "messages": len(mb.seqs), "live_bytes": lb, "disk_bytes": app,
                           "allocated": alloc, "inodes": inodes})
            self.res.add(self.name, n, None, "churn_round%d" % (r + 1), "ratio",
                         value=(alloc / lb if lb else None), live_bytes=lb, disk_bytes=app, allocated=alloc,
                         inodes=inodes, messages=len(mb.seqs),
                         raw_live_bytes=sum(self.corpus.info(i)[0] for i in live))
        shutil.rmtree(self.dc.home(user), ignore_errors=True)

    # ---- per N ----

    def step(self, what, fn, *a):
        self.cfg.check_time(what)
        try:
            return True, fn(*a)
        except Skip:
            raise
        except Exception as e:
            if os.environ.get("LMBOX_TEST_TRACE") == "1" or not isinstance(e, (Failure, AssertionError)):
                import traceback
                traceback.print_exc(file=sys.stdout)
            self.res.fail("%s N=%s %s" % (self.name, a[1] if len(a) > 1 and isinstance(a[1], int) else "-", what), e)
            return False, None

    def run_n(self, n):
        user = "n%d" % n
        self.add_user(user)
        modes = self.cfg.logins
        log("%s: N=%d: filling" % (self.name, n))
        ok, _ = self.step("LMTP delivery", self.fill, user, n)
        if not ok:
            return
        ok, mb = self.step("mailbox read-back", self.read_mailbox, user, range(n))
        if not ok:
            return
        self.step("disk", self.measure_disk, user, n, mb)
        for mode in modes:
            self.step("STAT/LIST/UIDL (%s login)" % mode, self.measure_warm, user, n, mode, mb)
            self.step("RETR/TOP (%s login)" % mode, self.measure_retr_top, user, n, mode, mb)
        skip = self.cfg.skip
        if "rss" not in skip:
            self.step("pop3 peak RSS", self.measure_rss, user, n, modes[0], mb)
        if "quit" not in skip:
            ok, r = self.step("QUIT commit", self.measure_quit_commit, user, n, modes[0], mb, n)
            if ok:
                mb = r[0]
            else:
                ok, mb = self.step("mailbox read-back", self.read_mailbox, user)
                if not ok:
                    return
        for mode in (modes if "cold" not in skip else []):
            ok, r = self.step("cold after index loss (%s login)" % mode, self.measure_cold, user, n, mode, mb)
            if ok:
                mb = r
            else:
                self.dc.doveadm("force-resync", "-u", user, "INBOX", check=False)
                ok, mb = self.step("mailbox read-back", self.read_mailbox, user)
                if not ok:
                    return
        if "deleall" not in skip:
            self.step("DELE all + QUIT", self.measure_dele_all, user, n, modes[0], mb)
        shutil.rmtree(self.dc.home(user), ignore_errors=True)
        if "churn" not in skip:
            self.step("churn", self.measure_churn, n, modes[0])

    def run(self):
        log("%s: starting %d private Dovecot(s) (%s)" % (self.name, len(self.cfg.logins), ", ".join(self.cfg.logins)))
        try:
            self.start()
        except (Failure, OSError) as e:
            self.res.fail("%s: start" % self.name, e)
            self.stop()
            return
        try:
            for mode in self.cfg.logins:
                self.step("floor F (%s login)" % mode, self.measure_floor, mode)
            for n in self.cfg.ns:
                self.run_n(n)
        finally:
            self.stop()


# --------------------------------------------------------------------------
# machine line

def machine_info():
    cpu = "unknown"
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    disk = "unknown"
    try:
        r = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", "/tmp"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=10, text=True)
        src_fs = r.stdout.split()
        disk = " ".join(src_fs)
        dev = os.path.basename(src_fs[0]) if src_fs else ""
        rot = "/sys/block/%s/queue/rotational" % re.sub(r"p?\d+$", "", dev) if dev else ""
        if rot and os.path.exists(rot):
            disk += " (%s)" % ("rotational" if open(rot).read().strip() == "1" else "non-rotational")
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    mem = ""
    try:
        for ln in open("/proc/meminfo"):
            if ln.startswith("MemTotal"):
                mem = "%.1f GB RAM" % (int(ln.split()[1]) / 1e6)
    except OSError:
        pass
    dv = subprocess.run([lmboxtest.DOVECOT, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                        text=True, timeout=10).stdout.strip()
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = []
    return {"cores": os.cpu_count(), "cpu": cpu, "disk": disk, "mem": mem, "kernel": platform.release(),
            "dovecot": dv, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg_start": load}


# --------------------------------------------------------------------------
# main

def main():
    cfg = Config()
    check_environment()
    if "lmbox" in cfg.backends and not os.path.isfile(lmboxtest.plugin_so(cfg.builddir)):
        raise Failure("lmbox plugin not built: %s missing" % lmboxtest.plugin_so(cfg.builddir))
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    res = Results(cfg, run_id)
    machine = machine_info()
    log("bench: N=%s backends=%s repeat=%d login=%s out=%s%s" % (
        ",".join(map(str, cfg.ns)), ",".join(cfg.backends), cfg.repeat, ",".join(cfg.logins), cfg.out,
        " (smoke)" if cfg.smoke else ""))
    log("machine: %s" % json.dumps(machine))
    corpus = Corpus(cfg.seed)
    path = os.path.join(cfg.out, "results.jsonl")

    def save(complete):
        machine["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        machine["duration_s"] = round(time.monotonic() - T0, 1)
        os.makedirs(cfg.out, exist_ok=True)
        header = {"run": run_id, "type": "run", "machine": machine, "ns": cfg.ns, "backends": cfg.backends,
                  "repeat": cfg.repeat, "logins": cfg.logins, "seed": cfg.seed, "smoke": cfg.smoke,
                  "skip": sorted(cfg.skip), "complete": complete,
                  "failures": res.failures}
        merge_jsonl(path, header, res.records)

    for b in cfg.backends:
        BackendRun(cfg, corpus, res, b).run()
        # after each backend: a run stopped later keeps what it measured
        save(False)
    save(True)
    log("wrote %s (%d measurements)" % (path, len(res.records)))
    import report
    report.write_all(cfg.out, cfg.docs)
    if res.failures:
        print("# bench: %d FAILED:\n  %s" % (len(res.failures), "\n  ".join(res.failures)), flush=True)
        return 1
    print("# bench: every answer checked and right (%.0fs)" % (time.monotonic() - T0), flush=True)
    return 0


def merge_jsonl(path, header, records):
    """Keep earlier measurements of (backend, N, login) this run did not
    redo, so a 100k run of a subset adds to a 1k/10k run."""
    old = []
    if os.path.exists(path):
        with open(path) as f:
            for ln in f:
                ln = ln.strip()
                if ln:
                    try:
                        old.append(json.loads(ln))
                    except ValueError:
                        continue
    redone = {(r["backend"], r["n"]) for r in records if r["n"]}
    redone_floor = {(r["backend"], r["login"]) for r in records if r["metric"] == "floor_F"}
    keep = []
    for r in old:
        if r.get("type") == "run":
            if r["run"] != header["run"]:     # this run's own is rewritten
                keep.append(r)
        elif r["metric"] == "floor_F":
            if (r["backend"], r["login"]) not in redone_floor:
                keep.append(r)
        elif (r["backend"], r["n"]) not in redone:
            keep.append(r)
    runs_used = {r["run"] for r in keep if r.get("type") != "run"} | {header["run"]}
    keep = [r for r in keep if r.get("type") != "run" or r["run"] in runs_used]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in keep + [header] + records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    try:
        if len(sys.argv) > 1 and sys.argv[1] == "report":
            import report
            c = Config()
            report.write_all(c.out, c.docs)
            sys.exit(0)
        sys.exit(main())
    except Skip as e:
        print("SKIP: %s" % e, flush=True)
        sys.exit(77)
    except Failure as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
