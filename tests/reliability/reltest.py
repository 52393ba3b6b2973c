"""Helpers of the reliability tests (tests/reliability): find a Dovecot
process by /proc scanning, kill it at a point measured in its own progress
(system calls made), a raw LMTP client that can stop anywhere, and the
POP3 view of a mailbox by Message-ID.  Python 3 standard library only."""
import os
import re
import select
import signal
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
if os.environ.get("LMBOX_TOP_SRCDIR"):
    sys.path.insert(0, os.path.join(os.environ["LMBOX_TOP_SRCDIR"], "tests", "integration"))
from lmboxtest import Failure, crlf  # noqa: E402

# Dovecot's master logs our own SIGKILLs as "Fatal: master: service(x): child N
# killed with signal 9": expected; anything else Panic/Fatal/signal is not.
KILLED9 = r"Fatal: master: service\((lmtp|pop3|imap|doveadm)\): child \d+ killed with signal 9"
BAD_RE = re.compile(r"(Panic|Fatal):|killed with signal|core dumped|AddressSanitizer|runtime error:")


def bad_log_lines(text, allow=(KILLED9,)):
    return [l for l in text.splitlines() if BAD_RE.search(l) and not any(re.search(a, l) for a in allow)]


def proc_children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rindex(")") + 2:].split()
        if int(rest[1]) == ppid:
            out.append(int(d))
    return out


def proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def proc_session(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return int(st[st.rindex(")") + 2:].split()[3])
    except (OSError, ValueError, IndexError):
        return None


def _tcp_inode(server_port, client_port):
    """Inode of the server side of a 127.0.0.1 TCP connection."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            lport = int(p[1].split(":")[1], 16)
            rport = int(p[2].split(":")[1], 16)
            if lport == server_port and rport == client_port:
                return p[9]
    return None


def server_pid(master_pid, server_port, sock, comm, timeout=10.0):
    """pid of the child of master_pid named comm that holds the server side
    of our connection sock (by socket inode in /proc/net/tcp and /proc/*/fd)."""
    cport = sock.getsockname()[1]
    t_end = time.monotonic() + timeout
    for _ in range(100000):
        ino = _tcp_inode(server_port, cport)
        if ino and ino != "0":
            target = "socket:[%s]" % ino
            for pid in proc_children(master_pid):
                if proc_comm(pid) != comm:
                    continue
                try:
                    fds = os.listdir("/proc/%d/fd" % pid)
                except OSError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                            return pid
                    except OSError:
                        pass
        if time.monotonic() > t_end:
            break
        time.sleep(0.005)
    raise Failure("no %s process of master %d holds the connection from port %d" % (comm, master_pid, cport))


def syscalls(pid):
    """System calls made so far by pid (syscr + syscw of /proc/pid/io), or
    None when it is gone."""
    try:
        with open("/proc/%d/io" % pid) as f:
            d = dict(l.split(": ") for l in f.read().splitlines())
        return int(d["syscr"]) + int(d["syscw"])
    except (OSError, KeyError, ValueError):
        return None


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st[st.rindex(")") + 2] in "ZX"
    except OSError:
        return True


def kill_after_progress(pid, n, timeout=5.0, sock=None):
    """SIGKILL pid once it made n more read/write system calls, or it
    answered on sock (readable), or it ended, or timeout: bounded busy
    polling of /proc, no sleeps.  Returns the number of calls observed
    before the kill, or None if it had ended."""
    base = syscalls(pid)
    if base is None:
        return None
    t_end = time.monotonic() + timeout
    seen = 0
    for _ in range(10 ** 7):
        s = syscalls(pid)
        if s is None or _zombie(pid):
            return None
        seen = s - base
        if seen >= n or time.monotonic() > t_end:
            break
        if sock is not None and select.select([sock], [], [], 0)[0]:
            break
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    wait_gone(pid)
    return seen


def wait_gone(pid, timeout=10.0):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
            if st[st.rindex(")") + 2] == "Z":
                return
        except OSError:
            return
        time.sleep(0.002)


def kill_dovecot_tree(dc):
    """kill -9 of the private master and every process of its session."""
    mp = dc.master_pid
    sid = proc_session(mp)
    victims = [mp]
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid() and sid is not None and proc_session(int(d)) == sid:
            victims.append(int(d))
    for p in victims:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        dc.proc.wait(10)
    except Exception:
        pass
    for p in victims:
        wait_gone(p)
    dc.proc = None
    return len(victims)


class RawLMTP:
    """LMTP client over a raw socket: every step is explicit so a test can
    stop (and kill the server) between any two bytes."""

    def __init__(self, dc, timeout=30.0):
        self.dc = dc
        self.sock = socket.create_connection((dc.host, dc.ports["lmtp"]), timeout=timeout)
        self.buf = b""
        self.reply()   # greeting

    def line(self):
        for _ in range(100000):
            i = self.buf.find(b"\n")
            if i >= 0:
                l, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return l
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("connection closed")
            self.buf += d
        raise Failure("no line")

    def reply(self):
        lines = []
        while True:
            l = self.line()
            lines.append(l)
            if len(l) < 4 or l[3:4] != b"-":
                return int(l[:3]), b"".join(lines)

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def start(self, user):
        """LHLO, MAIL, RCPT, DATA up to the 354."""
        c, t = self.cmd("LHLO reltest")
        for what in ("MAIL FROM:<sender@example.org>", "RCPT TO:<%s@example.org>" % user, "DATA"):
            c, t = self.cmd(what)
            if c not in (250, 251, 354):
                raise Failure("LMTP %s: %r" % (what, t))

    @staticmethod
    def wire(data):
        """Dot-stuffed CRLF payload of data plus the final dot."""
        data = crlf(data)
        data = re.sub(rb"(?m)^\.", b"..", data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        return data + b".\r\n"

    def late_reply(self, timeout=2.0):
        """After a kill: the reply the server had sent before it died, or
        None (bounded)."""
        self.sock.settimeout(timeout)
        try:
            return self.reply()
        except (OSError, EOFError, ValueError):
            return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def pop3_view(dc, user):
    """{Message-ID: [(uidl, list size, retr bytes)]} (a list: duplicates
    show) via one POP3 session ended without QUIT."""
    r = dc.raw_pop3(user)
    try:
        lst, uidl = r.list(), r.uidl()
        out = {}
        for n in sorted(lst):
            body = r.retr(n)
            m = re.search(rb"(?im)^Message-ID: (<[^>]+>)", body)
            mid = m.group(1) if m else b"(none:%d)" % n
            out.setdefault(mid, []).append((uidl[n], lst[n], body))
        return out
    finally:
        r.close()


def cores(root):
    out = []
    for dp, dns, fns in os.walk(root):
        out += [os.path.join(dp, f) for f in fns if f == "core" or f.startswith("core.")]
    return out
