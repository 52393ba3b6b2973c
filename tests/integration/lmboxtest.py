#!/usr/bin/env python3
"""lmboxtest: a private Dovecot on 127.0.0.1 for lmbox's integration tests,
benchmarks and demo.  Python 3 standard library only.

    from lmboxtest import Dovecot, Test
    with Dovecot(mail_location="lmbox:~/lmbox") as dc:    # or maildir:~/Maildir
        dc.lmtp_deliver("alice", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
        p = dc.pop3("alice"); print(p.stat()); p.quit()
        dc.assert_clean_log()

Everything lives in one mkdtemp directory (config, base_dir, state_dir, log,
homes, passwd-file, module dir) that stop() removes.  Dovecot listens on
127.0.0.1 only, on free unprivileged ports.  When run as root, mail is owned by
an unprivileged system user the harness creates ("lmboxtest"); otherwise by
the running user, and Dovecot runs entirely as that user.

Command line:
    lmboxtest.py selftest [--location maildir:~/Maildir]   LMTP->POP3 round trip
    lmboxtest.py demo --builddir DIR [--keep-dir DIR]       start, deliver, show, leave running
"""
import atexit
import contextlib
import imaplib
import glob
import os
import poplib
import pwd
import grp
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import traceback

DOVECOT = os.environ.get("LMBOX_DOVECOT", "/usr/sbin/dovecot")
DOVEADM = os.environ.get("LMBOX_DOVEADM", "/usr/bin/doveadm")
LDA = os.environ.get("LMBOX_LDA", "/usr/lib/dovecot/dovecot-lda")
SYSTEM_MODULE_DIR = os.environ.get("LMBOX_DOVECOT_MODULEDIR", "/usr/lib/dovecot/modules")
TEST_SYSTEM_USER = "lmboxtest"
DEFAULT_PASSWORD = "secret"
LMBOX_LOCATION = "lmbox:~/lmbox"

# Every wait in this module is bounded by one of these.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
CMD_TIMEOUT = 120.0
NET_TIMEOUT = 60.0

EXIT_PASS, EXIT_FAIL, EXIT_SKIP = 0, 1, 77

LOG_BAD_RE = re.compile(r"(Error|Panic|Fatal):")


class Skip(Exception):
    """An honest environmental reason not to run (exit 77)."""


class Failure(AssertionError):
    pass


class Abort(Exception):
    """A required step failed: the rest of the script cannot run."""


# --------------------------------------------------------------------------
# paths of the build tree

def top_builddir():
    d = os.environ.get("LMBOX_TOP_BUILDDIR")
    if d:
        return os.path.abspath(d)
    # Running by hand from tests/integration of a build tree or the source tree.
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(os.path.join(here, "..", ".."))


def top_srcdir():
    d = os.environ.get("LMBOX_TOP_SRCDIR")
    if d:
        return os.path.abspath(d)
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(os.path.join(here, "..", ".."))


def plugin_so(builddir=None):
    return os.path.join(builddir or top_builddir(), "plugin", ".libs", "lib20_lmbox_plugin.so")


def lmbox_cli(builddir=None):
    """The build tree's lmbox CLI, or None when it is not built."""
    p = os.path.join(builddir or top_builddir(), "storage", "lmbox")
    return p if os.path.isfile(p) and os.access(p, os.X_OK) else None


def uses_lmbox(location):
    return location.split(":", 1)[0] == "lmbox"


_dovecot_version = None


def dovecot_version():
    """(major, minor) of the Dovecot the harness runs ($LMBOX_DOVECOT):
    2.3 and 2.4 get different configuration syntax (docs/dovecot24.md)."""
    global _dovecot_version
    if _dovecot_version is None:
        v = os.environ.get("LMBOX_DOVECOT_VERSION")
        if not v:
            try:
                v = subprocess.run([DOVECOT, "--version"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, timeout=CMD_TIMEOUT).stdout.decode()
            except OSError:
                v = ""
        m = re.match(r"\s*(\d+)\.(\d+)", v)
        _dovecot_version = (int(m.group(1)), int(m.group(2))) if m else (2, 3)
    return _dovecot_version


def is_dovecot24():
    return dovecot_version() >= (2, 4)


def location_to_24(location):
    """mail_location = DRIVER:PATH[:KEY=VAL...] as 2.4 settings:
    [(key, value)], e.g. [("mail_driver", "lmbox"), ("mail_path", "~/lmbox")]."""
    keys = {"INDEX": "mail_index_path", "CONTROL": "mail_control_path",
            "INBOX": "mail_inbox_path", "LAYOUT": "mailbox_list_layout",
            "ALT": "mail_alt_path", "VOLATILEDIR": "mail_volatile_path"}
    parts = location.split(":")
    out = [("mail_driver", parts[0])]
    if len(parts) > 1 and parts[1]:
        out.append(("mail_path", parts[1]))
    for kv in parts[2:]:
        k, _, v = kv.partition("=")
        out.append((keys.get(k.upper(), k.lower()), v))
    return out


# --------------------------------------------------------------------------
# small utilities

def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (>1024)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, what, interval=0.05):
    """Poll pred() until true; bounded in time and count.  Raises Failure."""
    deadline = time.monotonic() + timeout
    n = 0
    max_n = int(timeout / interval) + 100
    while n < max_n:
        n += 1
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            break
        # Polling interval of a bounded readiness wait, not synchronization.
        time.sleep(interval)
    raise Failure("timed out after %.1fs waiting for %s" % (timeout, what))


def ensure_system_user(name=TEST_SYSTEM_USER):
    """Return (uid, gid) of an unprivileged system user, creating it (root)."""
    for attempt in range(5):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            pass
        if os.geteuid() != 0:
            raise Skip("user %s does not exist and we are not root" % name)
        r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=CMD_TIMEOUT)
        if r.returncode not in (0, 9):   # 9: exists (a parallel test made it)
            if attempt == 4:
                raise Skip("cannot create system user %s: %s" % (name, r.stdout.decode(errors="replace")))
            # useradd's lock held by a parallel test; retry (bounded)
            time.sleep(0.2 * (attempt + 1))
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


def crlf(data):
    """RFC 5322 canonical form: every bare LF (and bare CR) becomes CRLF.
    This is what Dovecot's pop3 sends (before dot-stuffing)."""
    return re.sub(rb"\r?\n", b"\r\n", data)


# --------------------------------------------------------------------------
# raw POP3 client that counts exact octets

class RawPOP3:
    """Minimal POP3 client on a raw socket: returns multi-line responses as
    exact bytes after un-dot-stuffing (so len() is the octet count RETR sent,
    to compare with LIST)."""

    def __init__(self, port, host="127.0.0.1", timeout=NET_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.greeting = self.line()
        if not self.greeting.startswith(b"+OK"):
            raise Failure("POP3 greeting: %r" % self.greeting)

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise Failure("POP3 connection closed by server")
        self.buf += chunk

    def line(self):
        n = 0
        while b"\r\n" not in self.buf:
            n += 1
            if n > 1 << 20:
                raise Failure("POP3: line too long")
            self._fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def ok(self, text):
        r = self.cmd(text)
        if not r.startswith(b"+OK"):
            raise Failure("POP3 %s -> %r" % (text.split(" ")[0] if not text.startswith("PASS") else "PASS", r))
        return r

    def multiline(self):
        """Read a dot-terminated body; return its bytes un-dot-stuffed, each
        line with its CRLF (the terminating '.CRLF' excluded)."""
        out = []
        n = 0
        while True:
            n += 1
            if n > 1 << 26:
                raise Failure("POP3: endless multi-line response")
            idx = self.buf.find(b"\r\n")
            if idx < 0:
                self._fill()
                continue
            ln = self.buf[:idx]
            self.buf = self.buf[idx + 2:]
            if ln == b".":
                return b"".join(out)
            if ln.startswith(b"."):
                ln = ln[1:]
            out.append(ln + b"\r\n")

    def login(self, user, password):
        self.ok("USER " + user)
        self.ok("PASS " + password)

    def retr(self, n):
        self.ok("RETR %d" % n)
        return self.multiline()

    def top(self, n, k):
        self.ok("TOP %d %d" % (n, k))
        return self.multiline()

    def list(self):
        self.ok("LIST")
        body = self.multiline()
        return {int(a): int(b) for a, b in (l.split() for l in body.split(b"\r\n") if l)}

    def uidl(self):
        self.ok("UIDL")
        body = self.multiline()
        return {int(a): b.decode() for a, b in (l.split(None, 1) for l in body.split(b"\r\n") if l)}

    def stat(self):
        r = self.ok("STAT").split()
        return int(r[1]), int(r[2])

    def quit(self):
        r = self.cmd("QUIT")
        self.close()
        return r

    def drop(self):
        """Close the connection without QUIT (a dropped client)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# the private Dovecot

class Dovecot:
    """A private Dovecot instance.

    mail_location  e.g. "lmbox:~/lmbox", "maildir:~/Maildir", "sdbox:~/sdbox"
    users          user names (all with password DEFAULT_PASSWORD) or a dict
                   name -> dict(password=..., extra="userdb_mail=...")
    mail_plugins   plugins added to $mail_plugins; default ["lmbox"] when the
                   location is lmbox, else []
    plugin_settings  dict for the plugin { } section
    extra_conf     text appended to dovecot.conf
    pop3_plugins   extra mail plugins of the pop3 protocol only (e.g. ["pop3_lmbox"])
    fast_login     Dovecot's high-performance login mode (service_count = 0,
                   process_min_avail) for pop3/imap, as benchmarks want
    builddir       build tree whose plugin/.libs and pop3/.libs are loaded
    host           the loopback address every listener and client uses
                   (another 127.x address for several instances, tests/scaleout)
    ports          fixed {"pop3","imap","lmtp","doveadm"} ports instead of free ones
    copy_modules   copy (not symlink) modules into the private module dir
    system_modules no private module dir and no mail_plugin_dir: Dovecot
                   loads its own module dir, e.g. an installed package's
                   plugin (tests/package/)
    """

    def __init__(self, mail_location=LMBOX_LOCATION, users=("alice", "bob"),
                 mail_plugins=None, plugin_settings=None, extra_conf="",
                 builddir=None, mail_debug=False, copy_modules=False,
                 protocols=("pop3", "imap", "lmtp"), tmp_parent=None,
                 keep_dir=None, require_plugin=None,
                 fast_login=False, process_min_avail=2, system_modules=False,
                 pop3_plugins=(), host="127.0.0.1", ports=None):
        self.mail_location = mail_location
        if isinstance(users, dict):
            self.users = users
        else:
            self.users = {u: {} for u in users}
        if mail_plugins is None:
            mail_plugins = ["lmbox"] if uses_lmbox(mail_location) else []
        self.mail_plugins = list(mail_plugins)
        self.plugin_settings = dict(plugin_settings or {})
        self.extra_conf = extra_conf
        self.builddir = builddir or top_builddir()
        self.mail_debug = mail_debug
        self.copy_modules = copy_modules
        self.system_modules = system_modules
        self.protocols = list(protocols)
        self.tmp_parent = tmp_parent
        self.keep_dir = keep_dir
        self.fast_login = fast_login
        self.pop3_plugins = list(pop3_plugins)
        if not host.startswith("127."):
            raise ValueError("lmboxtest listens on loopback (127.x) only, not %s" % host)
        self.host = host
        self.fixed_ports = dict(ports) if ports else None
        self.process_min_avail = process_min_avail
        if require_plugin is None:
            require_plugin = "lmbox" in self.mail_plugins or uses_lmbox(mail_location)
        self.require_plugin = require_plugin
        self.tmp = None
        self.proc = None
        self.master_pid = None
        self.ports = {}
        self.started = False
        self._log_mark = 0

    # ---- setup -----------------------------------------------------------

    def _identity(self):
        if os.geteuid() == 0:
            uid, gid = ensure_system_user()
            self.mail_user = TEST_SYSTEM_USER
            self.internal_user = "dovecot" if _has_user("dovecot") else TEST_SYSTEM_USER
            self.login_user = "dovenull" if _has_user("dovenull") else TEST_SYSTEM_USER
        else:
            uid, gid = os.getuid(), os.getgid()
            self.mail_user = pwd.getpwuid(uid).pw_name
            self.internal_user = self.login_user = self.mail_user
        self.uid, self.gid = uid, gid

    def _make_module_dir(self):
        mdir = os.path.join(self.tmp, "modules")
        os.mkdir(mdir)
        sources = sorted(glob.glob(os.path.join(SYSTEM_MODULE_DIR, "*.so")))
        built = []
        for sub in ("plugin", "pop3"):
            built += sorted(glob.glob(os.path.join(self.builddir, sub, ".libs", "lib*.so")))
        for src in sources + built:
            dst = os.path.join(mdir, os.path.basename(src))
            if os.path.lexists(dst):
                os.unlink(dst)
            # Built modules are copied: the mail processes (another uid when
            # root) must be able to read them wherever the build tree is.
            if self.copy_modules or src in built:
                shutil.copy2(src, dst)
                os.chmod(dst, 0o755)
            else:
                os.symlink(src, dst)
        return mdir

    def home(self, user):
        info = self.users.get(user) or {}
        return info.get("home") or os.path.join(self.tmp, "home", user)

    def add_user(self, name, **info):
        """Add (or change) a user while running: info keys password, mail
        (userdb_mail), home (e.g. another user's, to view the same files with
        another mail location), extra.  Dovecot rereads the passwd-file."""
        self.users[name] = info
        h = self.home(name)
        if not os.path.isdir(h):
            os.makedirs(h)
            os.chown(h, self.uid, self.gid)
            os.chmod(h, 0o700)
        self._write_passwd()

    def mail_root(self, user):
        loc = self.users[user].get("mail") or self.mail_location
        path = loc.split(":", 1)[1].split(":", 1)[0]
        if path.startswith("~/"):
            path = os.path.join(self.home(user), path[2:])
        return path

    def password(self, user):
        return self.users[user].get("password", DEFAULT_PASSWORD)

    def _write_passwd(self):
        lines = []
        for u, info in self.users.items():
            extra = []
            if info.get("mail"):
                if is_dovecot24():
                    extra += ["userdb_%s=%s" % kv for kv in location_to_24(info["mail"])]
                else:
                    extra.append("userdb_mail=" + info["mail"])
            if info.get("extra"):
                extra.append(info["extra"])
            lines.append("%s:{PLAIN}%s:%d:%d::%s::%s" % (
                u, self.password(u), self.uid, self.gid, self.home(u), " ".join(extra)))
        path = os.path.join(self.tmp, "passwd")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(path, 0o644)
        return path

    def _conf_text(self, passwd):
        if is_dovecot24():
            return self._conf_text24(passwd)
        T = self.tmp
        plugins = " ".join(self.mail_plugins)
        s = []
        a = s.append
        a("# generated by lmboxtest.py")
        a("instance_name = lmboxtest-%d-%s" % (os.getpid(), os.path.basename(T).split(".")[-1]))
        a("base_dir = %s/run" % T)
        a("state_dir = %s/state" % T)
        a("log_path = %s" % self.log_path)
        a("protocols = %s" % " ".join(self.protocols))
        a("listen = %s" % self.host)
        a("ssl = no")
        a("disable_plaintext_auth = no")
        a("auth_mechanisms = plain login")
        a("default_internal_user = %s" % self.internal_user)
        a("default_login_user = %s" % self.login_user)
        if os.geteuid() != 0:
            a("default_internal_group = %s" % grp.getgrgid(self.gid).gr_name)
        a("first_valid_uid = %d" % min(self.uid, 500) if self.uid else "first_valid_uid = 0")
        a("first_valid_gid = %d" % min(self.gid, 1) if self.gid else "first_valid_gid = 0")
        a("mail_location = %s" % self.mail_location)
        if self.module_dir is not None:
            a("mail_plugin_dir = %s" % self.module_dir)
        a("mail_plugins = $mail_plugins %s" % plugins)
        a("mail_debug = %s" % ("yes" if self.mail_debug else "no"))
        a("auth_debug = no")
        a("lmtp_save_to_detail_mailbox = no")
        # rport lets a test find the mail process (mpid) of its own connection
        a("login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} lip=%l mpid=%e %c session=<%{session}>")
        a("pop3_uidl_format = %08Xu%08Xv")
        a("passdb {\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%%n %s\n}" % passwd)
        a("userdb {\n  driver = passwd-file\n  args = username_format=%%n %s\n}" % passwd)
        a("namespace inbox {\n  inbox = yes\n  separator = /\n"
          "  mailbox Drafts {\n    special_use = \\Drafts\n  }\n"
          "  mailbox Sent {\n    special_use = \\Sent\n  }\n"
          "  mailbox Trash {\n    special_use = \\Trash\n  }\n}")
        nochroot = "" if os.geteuid() == 0 else "  chroot =\n"
        a("service pop3-login {\n%s  inet_listener pop3 {\n    address = %s\n    port = %d\n  }\n"
          "  inet_listener pop3s {\n    port = 0\n  }\n}" % (nochroot, self.host, self.ports["pop3"]))
        a("service imap-login {\n%s  inet_listener imap {\n    address = %s\n    port = %d\n  }\n"
          "  inet_listener imaps {\n    port = 0\n  }\n}" % (nochroot, self.host, self.ports["imap"]))
        a("service lmtp {\n  inet_listener lmtp {\n    address = %s\n    port = %d\n  }\n}"
          % (self.host, self.ports["lmtp"]))
        a("service doveadm {\n  inet_listener {\n    address = %s\n    port = %d\n  }\n}"
          % (self.host, self.ports["doveadm"]))
        a("doveadm_password = %s" % DEFAULT_PASSWORD)
        if os.geteuid() != 0:
            for svc in ("anvil", "ipc", "old-stats", "aggregator", "director", "imap-urlauth-login",
                        "submission-login"):
                a("service %s {\n  chroot =\n}" % svc)
        if self.fast_login:
            # Dovecot's high-performance login mode (DESIGN "Performance model")
            for svc in ("pop3-login", "imap-login"):
                a("service %s {\n  service_count = 0\n  process_min_avail = %d\n}"
                  % (svc, self.process_min_avail))
            for svc in ("pop3", "imap"):
                a("service %s {\n  process_min_avail = %d\n}" % (svc, self.process_min_avail))
        a("protocol lmtp {\n  mail_plugins = $mail_plugins\n}")
        a("protocol pop3 {\n  mail_plugins = $mail_plugins %s\n}" % " ".join(self.pop3_plugins))
        a("protocol imap {\n  mail_plugins = $mail_plugins\n}")
        if self.plugin_settings:
            a("plugin {\n%s\n}" % "\n".join("  %s = %s" % kv for kv in self.plugin_settings.items()))
        if self.extra_conf:
            a(self.extra_conf)
        if os.environ.get("LMBOX_IT_EXTRA_CONF"):
            # appended to every generated config, e.g. by the sanitizer run of
            # tests/reliability (import_environment, default_vsz_limit)
            a(os.environ["LMBOX_IT_EXTRA_CONF"])
        return "\n".join(s) + "\n"

    def _conf_text24(self, passwd):
        """The same instance as _conf_text() in Dovecot 2.4 syntax
        (docs/dovecot24.md has the two side by side)."""
        T = self.tmp
        s = []
        a = s.append
        a("dovecot_config_version = 2.4.1")
        a("dovecot_storage_version = 2.4.1")
        a("# generated by lmboxtest.py (Dovecot 2.4)")
        a("instance_name = lmboxtest-%d-%s" % (os.getpid(), os.path.basename(T).split(".")[-1]))
        a("base_dir = %s/run" % T)
        a("state_dir = %s/state" % T)
        a("log_path = %s" % self.log_path)
        a("protocols = %s" % " ".join(self.protocols))
        a("listen = %s" % self.host)
        a("ssl = no")
        a("auth_allow_cleartext = yes")
        a("auth_mechanisms = plain login")
        a("auth_username_format = %{user | username}")
        a("default_internal_user = %s" % self.internal_user)
        a("default_login_user = %s" % self.login_user)
        if os.geteuid() != 0:
            a("default_internal_group = %s" % grp.getgrgid(self.gid).gr_name)
        a("first_valid_uid = %d" % min(self.uid, 500) if self.uid else "first_valid_uid = 0")
        a("first_valid_gid = %d" % min(self.gid, 1) if self.gid else "first_valid_gid = 0")
        for kv in location_to_24(self.mail_location):
            a("%s = %s" % kv)
        if self.module_dir is not None:
            a("mail_plugin_dir = %s" % self.module_dir)
        # 2.3's zlib plugin is mail_compress in 2.4
        plugins24 = ["mail_compress" if p == "zlib" else p for p in self.mail_plugins]
        if plugins24:
            a("mail_plugins {\n%s\n}" % "\n".join("  %s = yes" % p for p in plugins24))
        if self.mail_debug:
            a("log_debug = category=mail")
        a("lmtp_save_to_detail_mailbox = no")
        a("login_log_format_elements = user=<%{user}> method=%{mechanism} rip=%{remote_ip} "
          "rport=%{remote_port} lip=%{local_ip} mpid=%{mail_pid} %{secured} session=<%{session}>")
        a("pop3_uidl_format = %{uid | hex(8)}%{uidvalidity | hex(8)}")
        a("passdb passwd-file {\n  passwd_file_path = %s\n}" % passwd)
        a("userdb passwd-file {\n  passwd_file_path = %s\n}" % passwd)
        a("namespace inbox {\n  inbox = yes\n  separator = /\n"
          "  mailbox Drafts {\n    special_use = \\Drafts\n  }\n"
          "  mailbox Sent {\n    special_use = \\Sent\n  }\n"
          "  mailbox Trash {\n    special_use = \\Trash\n  }\n}")
        nochroot = "" if os.geteuid() == 0 else "  chroot =\n"
        a("service pop3-login {\n%s  inet_listener pop3 {\n    listen = %s\n    port = %d\n  }\n"
          "  inet_listener pop3s {\n    port = 0\n  }\n}" % (nochroot, self.host, self.ports["pop3"]))
        a("service imap-login {\n%s  inet_listener imap {\n    listen = %s\n    port = %d\n  }\n"
          "  inet_listener imaps {\n    port = 0\n  }\n}" % (nochroot, self.host, self.ports["imap"]))
        a("service lmtp {\n  inet_listener lmtp {\n    listen = %s\n    port = %d\n  }\n}"
          % (self.host, self.ports["lmtp"]))
        a("service doveadm {\n  inet_listener doveadm {\n    listen = %s\n    port = %d\n  }\n}"
          % (self.host, self.ports["doveadm"]))
        a("doveadm_password = %s" % DEFAULT_PASSWORD)
        if os.geteuid() != 0:
            for svc in ("anvil", "imap-urlauth-login", "submission-login"):
                a("service %s {\n  chroot =\n}" % svc)
        if self.fast_login:
            for svc in ("pop3-login", "imap-login"):
                a("service %s {\n  restart_request_count = unlimited\n  process_min_avail = %d\n}"
                  % (svc, self.process_min_avail))
            for svc in ("pop3", "imap"):
                a("service %s {\n  process_min_avail = %d\n}" % (svc, self.process_min_avail))
        if self.pop3_plugins:
            a("protocol pop3 {\n  mail_plugins {\n%s\n  }\n}"
              % "\n".join("    %s = yes" % p for p in self.pop3_plugins))
        # 2.3's plugin { } keys: top-level settings on 2.4 (lmbox_* come from
        # the settings module lib20_lmbox_settings.so)
        psets = dict(self.plugin_settings)
        if "quota" in psets:
            # quota = count:NAME + quota_rule = *:storage=X:messages=Y
            driver, _, qname = psets.pop("quota").partition(":")
            q = ["  driver = %s" % driver]
            for part in psets.pop("quota_rule", "").split(":")[1:]:
                k, _, v = part.partition("=")
                q.append("  %s = %s" % ({"storage": "storage_size",
                                         "messages": "message_count"}[k], v))
            psets.pop("quota_vsizes", None)   # the count driver counts vsizes
            a('quota "%s" {\n%s\n}' % (qname or "User quota", "\n".join(q)))
        renamed = {"zlib_save": "mail_compress_write_method", "zlib_save_level": "compress_gz_level"}
        for k, v in psets.items():
            a("%s = %s" % (renamed.get(k, k), v))
        if self.extra_conf:
            a(self.extra_conf)
        if os.environ.get("LMBOX_IT_EXTRA_CONF"):
            # appended to every generated config, e.g. by the sanitizer run of
            # tests/reliability (import_environment, default_vsz_limit)
            a(os.environ["LMBOX_IT_EXTRA_CONF"])
        return "\n".join(s) + "\n"

    def setup(self):
        """Create the directory, users, module dir and config (no start)."""
        self._identity()
        if (self.require_plugin and not self.system_modules
                and not os.path.isfile(plugin_so(self.builddir))):
            raise Failure("lmbox plugin not built: %s missing (build the tree first)"
                          % plugin_so(self.builddir))
        if self.keep_dir:
            os.makedirs(self.keep_dir, exist_ok=True)
            self.tmp = os.path.abspath(self.keep_dir)
        else:
            self.tmp = tempfile.mkdtemp(prefix="lmboxtest.", dir=self.tmp_parent)
        # Dovecot's auth (internal user) reads passwd; mail processes (test
        # uid) reach the homes.
        os.chmod(self.tmp, 0o755)
        for d in ("run", "state", "home"):
            os.makedirs(os.path.join(self.tmp, d), exist_ok=True)
        for u in self.users:
            h = self.home(u)
            os.makedirs(h, exist_ok=True)
            os.chown(h, self.uid, self.gid)
            os.chmod(h, 0o700)
        self.log_path = os.path.join(self.tmp, "dovecot.log")
        open(self.log_path, "a").close()
        os.chmod(self.log_path, 0o666)   # LDA/doveadm write it as the mail user
        self.module_dir = None if self.system_modules else self._make_module_dir()
        self.passwd_path = self._write_passwd()
        self.conf_path = os.path.join(self.tmp, "dovecot.conf")
        self._pick_ports()
        return self

    def _pick_ports(self):
        if self.fixed_ports:
            self.ports = dict(self.fixed_ports)
        else:
            p = free_ports(4)
            self.ports = {"pop3": p[0], "imap": p[1], "lmtp": p[2], "doveadm": p[3]}
        self.write_config()

    def write_config(self):
        """(Re)write dovecot.conf from the current attributes, e.g. after
        setup() when a setting needs a path inside dc.tmp; takes effect at
        the next start()/restart()."""
        with open(self.conf_path, "w") as f:
            f.write(self._conf_text(self.passwd_path))
        os.chmod(self.conf_path, 0o644)

    # ---- lifecycle -------------------------------------------------------

    def start(self):
        if self.tmp is None:
            self.setup()
        r = subprocess.run([DOVECOT, "-c", self.conf_path, "-n"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=CMD_TIMEOUT)
        if r.returncode != 0:
            raise Failure("dovecot -n rejects the generated config:\n%s" % r.stderr.decode(errors="replace"))
        last = None
        for attempt in range(3):   # a free port may be taken by a parallel test
            try:
                self._start_once()
                return self
            except Failure as e:
                last = e
                self._kill_master()
                if "Address already in use" not in self.log_text():
                    raise
                self._pick_ports()
        raise last

    def _atexit(self):
        if not getattr(self, "detached", False):
            self.stop()

    def _start_once(self):
        if not getattr(self, "_atexit_registered", False):
            atexit.register(self._atexit)
            self._atexit_registered = True
        pidfile = os.path.join(self.tmp, "run", "master.pid")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf_path],
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(os.path.join(self.tmp, "master.out"), "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.master_pid = self.proc.pid
        self.started = True

        def ready():
            if self.proc.poll() is not None:
                raise Failure("dovecot exited with %s during start:\n%s\n%s" % (
                    self.proc.returncode, self._tail(os.path.join(self.tmp, "master.out")),
                    self._tail(self.log_path)))
            if not os.path.exists(pidfile):
                return False
            return all(port_open(self.ports[p], self.host) for p in ("pop3", "imap", "lmtp")
                       if p in self.protocols)
        wait_until(ready, START_TIMEOUT, "dovecot to listen")

    def _kill_master(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(STOP_TIMEOUT)
        self.proc = None

    def stop(self, remove=True):
        """Stop Dovecot (SIGTERM to our master, waits for it) and remove the
        temp dir.  Safe to call twice."""
        try:
            self._kill_master()
        finally:
            if remove and self.tmp and not self.keep_dir and os.environ.get("LMBOX_KEEP_TMP") != "1":
                # undo chmods tests made so rmtree can proceed
                for dp, dns, fns in os.walk(self.tmp):
                    for n in dns:
                        try:
                            os.chmod(os.path.join(dp, n), 0o700)
                        except OSError:
                            pass
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None

    def restart(self):
        self._kill_master()
        self._start_once()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, et, ev, tb):
        if et is not None and self.tmp:
            try:
                self._kill_master()   # the master's log process flushes first
            finally:
                print("--- last lines of %s:" % self.log_path)
                print(self._tail(self.log_path, 40))
        late = []
        if et is None and self.tmp:
            # After the master (and its log process) stopped, the log is
            # complete: a Panic or Fatal anywhere in it fails the test, even
            # one logged after the test's own log checks.
            self._kill_master()
            # ("already running": a second master started on this config by
            # someone else refuses to start; not a failure of what is tested.)
            # (expected_fatal: regexes of Fatal lines a test caused on
            # purpose, e.g. "killed with signal 9" after its own SIGKILLs.)
            late = [l for l in self.log_text().splitlines() if re.search(r"(Panic|Fatal):", l)
                    and "Dovecot is already running with PID" not in l
                    and not any(re.search(p, l) for p in getattr(self, "expected_fatal", ()))]
            if late:
                print("--- last lines of %s:" % self.log_path)
                print(self._tail(self.log_path, 40))
        self.stop()
        if late:
            raise Failure("Panic/Fatal in Dovecot's log (seen after stop):\n  " + "\n  ".join(late[:10]))
        return False

    # ---- logs ------------------------------------------------------------

    def _tail(self, path, n=30):
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def mark_log(self):
        """Remember the log's current end; log_errors(since_mark=True) looks after it."""
        try:
            self._log_mark = os.path.getsize(self.log_path)
        except OSError:
            self._log_mark = 0
        return self._log_mark

    def log_since_mark(self):
        with open(self.log_path, "rb") as f:
            f.seek(self._log_mark)
            return f.read().decode(errors="replace")

    def wait_log(self, regex, timeout=10.0, since_mark=True):
        """Wait (bounded) until the log (after mark_log()) matches regex."""
        rx = re.compile(regex)
        return wait_until(lambda: rx.search(self.log_since_mark() if since_mark else self.log_text()),
                          timeout, "log line /%s/" % regex)

    def session_pid(self, client, timeout=10.0):
        """pid of the mail process serving a RawPOP3 (or any socket-owning)
        client, from the login process's log line (rport=<our local port>)."""
        port = client.sock.getsockname()[1] if hasattr(client, "sock") else int(client)
        m = wait_until(lambda: re.search(r"(?:Login|Logged in): .*rport=%d\b.*mpid=(\d+)" % port, self.log_text()),
                       timeout, "login line of local port %d" % port)
        return int(m.group(1))

    def log_errors(self, allow=(), since_mark=False):
        text = self.log_since_mark() if since_mark else self.log_text()
        bad = []
        for line in text.splitlines():
            if LOG_BAD_RE.search(line) and not any(re.search(p, line) for p in allow):
                bad.append(line)
        return bad

    def assert_clean_log(self, allow=(), since_mark=False):
        bad = self.log_errors(allow, since_mark)
        if bad:
            raise Failure("Dovecot logged errors:\n  " + "\n  ".join(bad[:20]))

    # ---- delivery --------------------------------------------------------

    def lmtp_deliver(self, user, msg, sender="sender@example.org", timeout=NET_TIMEOUT):
        """Deliver msg (bytes) to user over LMTP; raises on any failure."""
        rcpt = user if "@" in user else user + "@example.org"
        try:
            with smtplib.LMTP(self.host, self.ports["lmtp"], timeout=timeout) as s:
                s.ehlo("lmboxtest")
                r = s.sendmail(sender, [rcpt], msg)
                if r:
                    raise Failure("LMTP refused %s: %r" % (rcpt, r))
                # With one recipient the DATA reply is the delivery result.
        except smtplib.SMTPResponseException as e:
            raise Failure("LMTP delivery to %s failed: %d %s" % (
                rcpt, e.smtp_code, e.smtp_error.decode(errors="replace")))
        except smtplib.SMTPRecipientsRefused as e:
            raise Failure("LMTP refused %s: %r" % (rcpt, e.recipients))
        except smtplib.SMTPServerDisconnected as e:
            raise Failure("LMTP connection closed during delivery to %s (%s): did the lmtp process "
                          "die? see the log" % (rcpt, e))

    def lmtp_deliver_raw(self, user, msg, sender="sender@example.org", timeout=NET_TIMEOUT):
        """Like lmtp_deliver, but returns (code, text) of the DATA reply
        instead of raising."""
        rcpt = user if "@" in user else user + "@example.org"
        s = smtplib.LMTP(self.host, self.ports["lmtp"], timeout=timeout)
        try:
            s.ehlo("lmboxtest")
            code, txt = s.mail(sender)
            if code != 250:
                return code, txt
            code, txt = s.rcpt(rcpt)
            if code not in (250, 251):
                return code, txt
            return s.data(msg)
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()

    def lmtp_deliver_multi(self, users, msg, sender="sender@example.org", timeout=NET_TIMEOUT):
        """One LMTP transaction with several RCPTs (Dovecot then saves once
        and copies to the other recipients).  Returns [(code, text)] per
        recipient: the RCPT reply if refused, else the per-recipient DATA reply."""
        rcpts = [u if "@" in u else u + "@example.org" for u in users]
        data = re.sub(rb"\r\n|\n|\r", b"\r\n", msg)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        data = re.sub(rb"(?m)^\.", b"..", data)
        s = smtplib.LMTP(self.host, self.ports["lmtp"], timeout=timeout)
        try:
            s.ehlo("lmboxtest")
            code, txt = s.mail(sender)
            if code != 250:
                raise Failure("LMTP MAIL FROM: %d %r" % (code, txt))
            results, accepted = [], []
            for r in rcpts:
                code, txt = s.rcpt(r)
                results.append((code, txt))
                if code in (250, 251):
                    accepted.append(len(results) - 1)
            if accepted:
                code, txt = s.docmd("DATA")
                if code != 354:
                    raise Failure("LMTP DATA: %d %r" % (code, txt))
                s.send(data + b".\r\n")
                for i in accepted:   # one reply per accepted recipient, in order
                    results[i] = s.getreply()
            return results
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()

    def lda_deliver(self, user, msg, check=True, extra_args=()):
        r = subprocess.run([LDA, "-c", self.conf_path, "-d", user, *extra_args], input=msg,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CMD_TIMEOUT)
        if check and r.returncode != 0:
            raise Failure("dovecot-lda -d %s exited %d: %s" % (user, r.returncode,
                                                               r.stderr.decode(errors="replace")))
        return r

    # ---- doveadm ---------------------------------------------------------

    def doveadm(self, *args, check=True, input=None, timeout=CMD_TIMEOUT):
        """Run doveadm -c <conf> args...; returns CompletedProcess with
        text stdout/stderr.  check=True raises on non-zero exit."""
        r = subprocess.run([DOVEADM, "-c", self.conf_path, *args], input=input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        r.stdout = r.stdout.decode(errors="replace")
        r.stderr = r.stderr.decode(errors="replace")
        if check and r.returncode != 0:
            raise Failure("doveadm %s exited %d:\n%s%s" % (" ".join(args), r.returncode,
                                                           r.stdout, r.stderr))
        return r

    def doveadm_fetch(self, user, fields, query=("mailbox", "INBOX", "all")):
        """doveadm -f tab fetch; returns a list of dicts, one per message,
        field name -> str (use doveadm_fetch_texts for bodies)."""
        r = self.doveadm("-f", "tab", "fetch", "-u", user, fields, *query)
        lines = r.stdout.split("\n")
        if not lines or not lines[0].strip():
            return []
        names = lines[0].split("\t")
        out = []
        for line in lines[1:]:
            if not line:
                continue
            vals = line.split("\t")
            if len(vals) != len(names):
                raise Failure("doveadm fetch: cannot parse line %r (fields %r)" % (line, names))
            out.append(dict(zip(names, vals)))
        return out

    def doveadm_fetch_texts(self, user, query=("mailbox", "INBOX", "all")):
        """Full text of each message via `doveadm fetch -f pager text`, as bytes."""
        r = subprocess.run([DOVEADM, "-c", self.conf_path, "-f", "pager", "fetch", "-u", user,
                            "uid text", *query], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=CMD_TIMEOUT)
        if r.returncode != 0:
            raise Failure("doveadm fetch text: %s" % r.stderr.decode(errors="replace"))
        return parse_pager(r.stdout)

    def mailbox_status(self, user, fields="messages vsize uidvalidity uidnext", mailbox="INBOX"):
        r = self.doveadm("-f", "flow", "mailbox", "status", "-u", user, fields, mailbox)
        d = {}
        for m in re.finditer(r"([a-z_]+)=(\S*)", r.stdout):
            d[m.group(1)] = m.group(2)
        return d

    def run_as_mail_user(self, argv, input=None, timeout=CMD_TIMEOUT):
        """Run a command with the mail files' uid (runuser when root), so it
        never leaves root-owned files in a store.  Returns CompletedProcess (bytes)."""
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.mail_user, "--"] + list(argv)
        return subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)

    def lmbox_cli(self, *args, check=True):
        """The build tree's `lmbox` admin CLI, run as the mail user."""
        cli = lmbox_cli(self.builddir)
        if not cli:
            raise Failure("lmbox CLI not built (storage/lmbox missing in %s)" % self.builddir)
        r = self.run_as_mail_user([cli] + list(args))
        if check and r.returncode != 0:
            raise Failure("lmbox %s exited %d: %s" % (" ".join(args), r.returncode,
                                                      r.stderr.decode(errors="replace")))
        return r

    # ---- clients ---------------------------------------------------------

    def pop3(self, user, timeout=NET_TIMEOUT):
        p = poplib.POP3(self.host, self.ports["pop3"], timeout=timeout)
        p.user(user)
        p.pass_(self.password(user))
        return p

    def raw_pop3(self, user=None):
        r = RawPOP3(self.ports["pop3"], self.host)
        if user:
            r.login(user, self.password(user))
        return r

    def pop3_login(self, user):
        """Log in and learn whether the session really opened: returns
        (answer, RawPOP3) with the client logged in and STAT's +OK answer, or
        (answer, None) with the -ERR (or "(connection closed ...)") that came
        instead.  Dovecot's login process says +OK to PASS; the pop3 process
        can still refuse (mailbox unusable, LOGIN-DELAY) on its first line."""
        r = self.raw_pop3()
        r.ok("USER " + user)
        resp = r.cmd("PASS " + self.password(user))
        if not resp.startswith(b"+OK"):
            r.close()
            return resp, None
        try:
            st = r.cmd("STAT")
        except (OSError, Failure) as e:
            r.close()
            return b"(connection closed: %s)" % str(e).encode(), None
        if not st.startswith(b"+OK"):
            r.close()
            return st, None
        return st, r

    def pop3_by_message_id(self, user):
        """{Message-ID: (UIDL, LIST size, RETR bytes)} of the user's POP3
        view.  Ends without QUIT, so nothing changes."""
        r = self.raw_pop3(user)
        try:
            lst, uidl = r.list(), r.uidl()
            out = {}
            for n in sorted(lst):
                body = r.retr(n)
                m = re.search(rb"(?im)^Message-ID: (<[^>]+>)", body)
                if not m:
                    raise Failure("POP3 message %d of %s has no Message-ID" % (n, user))
                out[m.group(1)] = (uidl[n], lst[n], body)
            return out
        finally:
            r.close()

    def imap(self, user, timeout=NET_TIMEOUT):
        m = imaplib.IMAP4(self.host, self.ports["imap"], timeout=timeout)
        m.login(user, self.password(user))
        return m

    def curl_pop3(self, user, path="", extra=(), check=True):
        """curl -s pop3://user:pass@127.0.0.1:port/path -> CompletedProcess (bytes)."""
        curl = shutil.which("curl")
        if not curl:
            raise Skip("curl not installed")
        url = "pop3://%s:%d/%s" % (self.host, self.ports["pop3"], path)
        r = subprocess.run([curl, "-s", "-S", "--max-time", "60", "-u",
                            "%s:%s" % (user, self.password(user)), *extra, url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CMD_TIMEOUT)
        if check and r.returncode != 0:
            raise Failure("curl %s exited %d: %s" % (url, r.returncode, r.stderr.decode(errors="replace")))
        return r

    # ---- index files -------------------------------------------------------

    def dovecot_index_files(self, user):
        """Every Dovecot index/uidlist file under the user's home (not the
        lmbox store: lmbox.mdb*, seg/, tmp/ of the store)."""
        out = []
        for dp, dns, fns in os.walk(self.home(user)):
            for n in fns:
                if n.startswith("dovecot"):
                    out.append(os.path.join(dp, n))
        return sorted(out)

    def delete_index_files(self, user):
        files = self.dovecot_index_files(user)
        for f in files:
            os.unlink(f)
        return files


def set_maildir_pop3_uidls(dc, user, legacy_by_seq, maildir="Maildir"):
    """Give the INBOX messages of a maildir user POP3 UIDLs the way a
    migration from another server leaves them: P<uidl> fields in
    dovecot-uidlist, keyed by each message's X-Seq header.  Drops the
    maildir's index files so Dovecot rereads the uidlist."""
    md = os.path.join(dc.home(user), maildir)
    seq_by_uid = {}
    for uid, text in dc.doveadm_fetch_texts(user, query=("mailbox", "INBOX", "all")):
        m = re.search(rb"X-Seq: (\d+)", text)
        if m:
            seq_by_uid[uid] = int(m.group(1))
    path = os.path.join(md, "dovecot-uidlist")
    with open(path) as f:
        lines = f.read().splitlines()
    out = [lines[0]]
    for ln in lines[1:]:
        if not ln.strip():
            continue
        uid_s, rest = ln.split(" ", 1)
        seq = seq_by_uid.get(int(uid_s))
        if seq in legacy_by_seq:
            rest = "P%s %s" % (legacy_by_seq[seq], rest)
        out.append("%s %s" % (uid_s, rest))
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    for f in glob.glob(os.path.join(md, "dovecot.index*")):
        os.unlink(f)


def parse_pager(data):
    """Parse doveadm -f pager output of 'uid text' into [(uid, bytes)]."""
    out = []
    # records are separated by a form feed line
    for rec in data.split(b"\f\n"):
        if not rec.strip():
            continue
        m = re.match(rb"uid: (\d+)\ntext:\n", rec)
        if not m:
            continue
        out.append((int(m.group(1)), rec[m.end():]))
    return out


def _has_user(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# --------------------------------------------------------------------------
# test runner

class Test:
    """Collects checks of one test script.

        t = Test("pop3 protocol")
        with t.case("STAT counts every message"):
            ...assertions...
        t.done()   # exits 0/1/77
    """

    def __init__(self, name):
        self.name = name
        self.failed = []
        self.passed = 0
        self.t0 = time.monotonic()
        print("# %s (uid %d, python %s)" % (name, os.geteuid(), sys.version.split()[0]), flush=True)

    @contextlib.contextmanager
    def case(self, what, required=False):
        """One named check.  A failure is recorded and the script goes on,
        unless required=True: then the script stops (exit 1) after cleanup."""
        t = time.monotonic()
        try:
            yield
        except (Skip, Abort):
            raise
        except Exception as e:
            self.failed.append(what)
            print("FAIL: %s (%.2fs)\n      %s" % (what, time.monotonic() - t,
                                                  str(e).replace("\n", "\n      ")), flush=True)
            if os.environ.get("LMBOX_TEST_TRACE") == "1" or not isinstance(e, (Failure, AssertionError)):
                traceback.print_exc(file=sys.stdout)
            if required:
                raise Abort(what)
        else:
            self.passed += 1
            print("ok:   %s (%.2fs)" % (what, time.monotonic() - t), flush=True)

    def check(self, cond, msg):
        if not cond:
            raise Failure(msg)

    def eq(self, got, want, what):
        if got != want:
            g, w = repr(got), repr(want)
            if len(g) > 300:
                g = g[:300] + "..."
            if len(w) > 300:
                w = w[:300] + "..."
            raise Failure("%s: got %s, want %s" % (what, g, w))

    def done(self):
        dt = time.monotonic() - self.t0
        if self.failed:
            print("# %s: %d passed, %d FAILED (%.1fs): %s" % (self.name, self.passed, len(self.failed),
                                                            dt, "; ".join(self.failed)), flush=True)
            sys.exit(EXIT_FAIL)
        print("# %s: all %d passed (%.1fs)" % (self.name, self.passed, dt), flush=True)
        sys.exit(EXIT_PASS)


class Terminated(BaseException):
    pass


def _on_signal(signum, frame):
    raise Terminated("killed by signal %d" % signum)


def run(main):
    """Run main(); map Skip -> 77, unexpected exceptions -> 1 (with trace).
    main usually ends with Test.done().  SIGTERM/SIGHUP (make interrupted, a
    timeout) unwind normally, so Dovecot is stopped and the temp dir removed."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _on_signal)
    try:
        main()
    except Skip as e:
        print("SKIP: %s" % e, flush=True)
        sys.exit(EXIT_SKIP)
    except Abort as e:
        print("# stopped: required step failed: %s" % e, flush=True)
        sys.exit(EXIT_FAIL)
    except SystemExit:
        raise
    except BaseException as e:
        print("FAIL: %s: %s" % (type(e).__name__, e), flush=True)
        traceback.print_exc(file=sys.stdout)
        sys.exit(EXIT_FAIL)
    sys.exit(EXIT_PASS)


def check_environment():
    """Skip (77) when Dovecot itself is not installed."""
    for p in (DOVECOT, DOVEADM):
        if not os.access(p, os.X_OK):
            raise Skip("%s not installed" % p)


def msg(n, body=b"", subject=None, extra_headers=b""):
    """A small deterministic message (CRLF) with an X-Seq header."""
    subject = subject or ("test message %d" % n)
    return (b"From: sender@example.org\r\nTo: rcpt@example.org\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Message-ID: <lmboxtest-%d-%d@example.org>\r\nX-Seq: %d\r\n" % (os.getpid(), n, n) +
            extra_headers + b"\r\n" + (body or b"body of message %d\r\n" % n))


# --------------------------------------------------------------------------
# command line: selftest and demo

def _selftest(args):
    location = "maildir:~/Maildir"
    if "--location" in args:
        location = args[args.index("--location") + 1]
    check_environment()
    t = Test("harness self-test with %s" % location)
    with Dovecot(mail_location=location, users=("alice", "bob")) as dc:
        msgs = [msg(i) for i in range(1, 4)]
        with t.case("LMTP delivers 3 messages to alice"):
            for m in msgs:
                dc.lmtp_deliver("alice", m)
        with t.case("POP3 STAT/LIST/UIDL/RETR see them, sizes exact"):
            r = dc.raw_pop3("alice")
            n, size = r.stat()
            t.eq(n, 3, "STAT count")
            lst = r.list()
            t.eq(size, sum(lst.values()), "STAT size = sum of LIST")
            for i, m in enumerate(msgs, 1):
                body = r.retr(i)
                t.check(body.endswith(crlf(m)), "RETR %d does not end with the delivered message" % i)
                t.eq(lst[i], len(body), "LIST %d" % i)
            t.eq(len(set(r.uidl().values())), 3, "distinct UIDLs")
            r.quit()
        with t.case("log has no errors"):
            dc.assert_clean_log()
    t.done()


def _demo(args):
    """Start a private Dovecot serving lmbox, deliver demo mail, show a POP3
    session, leave Dovecot running."""
    builddir = None
    keep = None
    location = LMBOX_LOCATION
    if "--builddir" in args:
        builddir = os.path.abspath(args[args.index("--builddir") + 1])
    if "--keep-dir" in args:
        keep = os.path.abspath(args[args.index("--keep-dir") + 1])
    if "--location" in args:
        location = args[args.index("--location") + 1]
    check_environment()
    password = "demo"
    dc = Dovecot(mail_location=location, users={"demo": {"password": password}},
                 builddir=builddir, keep_dir=keep)
    if keep and os.path.exists(keep):
        conf = os.path.join(keep, "dovecot.conf")
        try:
            ours = open(conf).readline().startswith("# generated by lmboxtest.py")
        except OSError:
            ours = False
        if not ours and os.listdir(keep):
            raise Failure("%s exists and is not a lmboxtest directory; not touching it" % keep)
        try:
            pid = int(open(os.path.join(keep, "run", "master.pid")).read().strip())
            if _alive(pid):
                print("Stopping the previous demo Dovecot (pid %d)." % pid)
                os.kill(pid, signal.SIGTERM)
                wait_until(lambda: not _alive(pid), STOP_TIMEOUT, "old demo dovecot to stop")
        except (OSError, ValueError):
            pass
        shutil.rmtree(keep, ignore_errors=True)
    try:
        dc.setup()
        dc.start()
        demo_msgs = [
            b"From: Alice <alice@example.org>\r\nTo: demo@example.org\r\nSubject: Welcome to lmbox\r\n"
            b"Message-ID: <demo-1@example.org>\r\n\r\nThis message is stored compressed in LMDB-indexed segments.\r\n",
            b"From: Bob <bob@example.org>\r\nTo: demo@example.org\r\nSubject: Bare LF line endings\n"
            b"Message-ID: <demo-2@example.org>\n\nLIST counts CRLF octets, exactly what RETR sends.\n",
            b"From: Carol <carol@example.org>\r\nTo: demo@example.org\r\nSubject: A dot line\r\n"
            b"Message-ID: <demo-3@example.org>\r\n\r\n.leading dot, stuffed on the wire\r\n" + b"x" * 70 + b"\r\n",
        ]
        for m in demo_msgs:
            dc.lmtp_deliver("demo", m)
        print("Delivered %d messages to demo over LMTP (127.0.0.1:%d)." % (len(demo_msgs), dc.ports["lmtp"]))
        print()
        print("POP3 session (127.0.0.1:%d):" % dc.ports["pop3"])
        r = RawPOP3(dc.ports["pop3"])

        def show(cmd, multi=False):
            print("C: %s" % cmd)
            resp = r.cmd(cmd)
            print("S: %s" % resp.decode(errors="replace"))
            if multi and resp.startswith(b"+OK"):
                body = r.multiline()
                for ln in body.decode(errors="replace").split("\r\n")[:-1]:
                    print("S: %s" % ("." + ln if ln.startswith(".") else ln))
                print("S: .")
            elif not resp.startswith(b"+OK"):
                raise Failure("POP3 %s failed: %r" % (cmd, resp))
        show("USER demo")
        print("C: PASS %s" % password)
        resp = r.cmd("PASS " + password)
        print("S: %s" % resp.decode(errors="replace"))
        if not resp.startswith(b"+OK"):
            raise Failure("login failed")
        show("STAT")
        show("LIST", True)
        show("UIDL", True)
        show("RETR 1", True)
        show("QUIT")
        r.close()
        cli = lmbox_cli(dc.builddir)
        if cli and uses_lmbox(location):
            st = dc.run_as_mail_user([cli, "stat", dc.mail_root("demo")])
            if st.returncode == 0 and st.stdout.strip():
                print()
                print("$ lmbox stat %s" % dc.mail_root("demo"))
                print(st.stdout.decode(errors="replace").rstrip())
        bad = dc.log_errors()
        if bad:
            print("Dovecot logged errors:\n  " + "\n  ".join(bad))
            raise Failure("errors in %s" % dc.log_path)
    except BaseException:
        dc.stop(remove=False)   # first: never leave a half-set-up Dovecot running
        print("demo failed; log %s:" % dc.log_path if dc.tmp else "demo failed")
        if dc.tmp:
            print(dc._tail(dc.log_path, 30))
        raise
    print()
    print("Dovecot is running (master pid %d), files in %s" % (dc.master_pid, dc.tmp))
    print("  POP3  127.0.0.1:%d   IMAP 127.0.0.1:%d   LMTP 127.0.0.1:%d" % (
        dc.ports["pop3"], dc.ports["imap"], dc.ports["lmtp"]))
    print("  user demo, password %s" % password)
    print("  try:  curl -s pop3://demo:%s@127.0.0.1:%d/1" % (password, dc.ports["pop3"]))
    print("  stop: doveadm -c %s stop" % dc.conf_path)
    # Leave Dovecot running: detach from the Popen object and the atexit stop.
    dc.detached = True
    dc.proc = None


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def main(argv):
    if len(argv) < 2 or argv[1] not in ("selftest", "demo"):
        print(__doc__)
        return 2
    if argv[1] == "selftest":
        run(lambda: _selftest(argv[2:]))
    else:
        try:
            _demo(argv[2:])
        except Skip as e:
            print("demo: %s" % e)
            return 1
        except Failure as e:
            print("demo: %s" % e)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
