#!/usr/bin/env python3
"""Dovecot run entirely by a non-root user (no privileged ports, no chroot,
default_internal_user = default_login_user = that user), serving lmbox:
LMTP and dovecot-lda in, POP3/IMAP/doveadm out, DELE+QUIT, clean log, and
every Dovecot process running with that uid.  As root (CI) the whole harness
and Dovecot are started with `runuser -u lmboxtest` from a copy of the
harness and of the built modules; as a normal user it runs directly."""
import os, shutil, subprocess, sys, tempfile, glob
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lmboxtest
from lmboxtest import Dovecot, Test, run, check_environment, msg, crlf, Failure, Skip

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")


def proc_uids(master_pid):
    """uid of the master and every descendant process."""
    children = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            st = open("/proc/%s/status" % p).read()
        except OSError:
            continue
        ppid = uid = name = None
        for ln in st.splitlines():
            if ln.startswith("PPid:"):
                ppid = int(ln.split()[1])
            elif ln.startswith("Uid:"):
                uid = int(ln.split()[2])   # effective
            elif ln.startswith("Name:"):
                name = ln.split(None, 1)[1]
        children.setdefault(ppid, []).append((int(p), uid, name))
    out, todo, n = [], [master_pid], 0
    while todo and n < 10000:
        n += 1
        pid = todo.pop()
        for c in children.get(pid, []):
            out.append(c)
            todo.append(c[0])
    return out


def inner(builddir):
    check_environment()
    uid = os.geteuid()
    t = Test("Dovecot run as non-root uid %d" % uid)
    if uid == 0:
        raise Failure("inner part must not run as root")
    with t.case("harness sanity with maildir as non-root (LMTP -> POP3)", required=True):
        with Dovecot(mail_location="maildir:~/Maildir", builddir=builddir) as dc:
            dc.lmtp_deliver("alice", msg(1))
            r = dc.raw_pop3("alice")
            t.eq(r.stat()[0], 1, "STAT")
            r.quit()
            dc.assert_clean_log()
    with Dovecot(mail_location=LOCATION, builddir=builddir) as dc:
        msgs = [msg(1), msg(2, body=b"bare lf\n").replace(b"\r\n", b"\n"), msg(3, body=b".dot\r\n" * 1000)]
        with t.case("%s: LMTP x2 + dovecot-lda x1 as non-root" % LOCATION, required=True):
            dc.lmtp_deliver("alice", msgs[0])
            dc.lda_deliver("alice", msgs[1])
            dc.lmtp_deliver("alice", msgs[2])
        with t.case("%s: POP3 STAT/LIST/UIDL/RETR exact, DELE 2 + QUIT" % LOCATION):
            r = dc.raw_pop3("alice")
            lst, uidl = r.list(), r.uidl()
            t.eq(len(lst), 3, "messages")
            for i, m in enumerate(msgs, 1):
                body = r.retr(i)
                t.eq(lst[i], len(body), "LIST %d vs RETR" % i)
                t.check(body.endswith(crlf(m)), "RETR %d content" % i)
            r.ok("DELE 2")
            t.check(r.quit().startswith(b"+OK"), "QUIT")
            r = dc.raw_pop3("alice")
            t.eq(sorted(r.uidl().values()), sorted([uidl[1], uidl[3]]), "UIDLs after QUIT")
            r.quit()
        with t.case("%s: IMAP SELECT/FETCH and doveadm fetch/status as non-root" % LOCATION):
            m = dc.imap("alice")
            typ, data = m.select("INBOX")
            t.eq(data[0], b"2", "EXISTS")
            m.logout()
            t.eq(dc.mailbox_status("alice")["messages"], "2", "doveadm status")
            t.eq(len(dc.doveadm_fetch("alice", "uid size.virtual")), 2, "doveadm fetch")
        with t.case("every Dovecot process runs as uid %d; files in the home are ours" % uid):
            procs = proc_uids(dc.master_pid)
            t.check(procs, "no Dovecot child processes found")
            bad = [p for p in procs if p[1] != uid]
            t.check(not bad, "processes with another uid: %r" % bad)
            for dp, dns, fns in os.walk(dc.home("alice")):
                for n in dns + fns:
                    st = os.lstat(os.path.join(dp, n))
                    t.check(st.st_uid == uid, "%s owned by %d" % (os.path.join(dp, n), st.st_uid))
        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


def outer():
    check_environment()
    if os.geteuid() != 0:
        inner(None)
        return
    if not shutil.which("runuser"):
        raise Skip("runuser not installed")
    lmboxtest.ensure_system_user()
    builddir = lmboxtest.top_builddir()
    if lmboxtest.uses_lmbox(LOCATION) and not os.path.isfile(lmboxtest.plugin_so(builddir)):
        raise Failure("lmbox plugin not built: %s missing" % lmboxtest.plugin_so(builddir))
    tmp = tempfile.mkdtemp(prefix="lmboxtest-nonroot.")
    try:
        os.chmod(tmp, 0o755)
        here = os.path.dirname(os.path.abspath(__file__))
        for f in ("lmboxtest.py", "test_nonroot.py"):
            shutil.copy2(os.path.join(here, f), tmp)
        # a copy of the built modules and CLI the unprivileged user can read
        for sub in ("plugin/.libs", "pop3/.libs", "storage", "storage/.libs"):
            src = os.path.join(builddir, sub)
            if not os.path.isdir(src):
                continue
            dst = os.path.join(tmp, "build", sub)
            os.makedirs(dst, exist_ok=True)
            for f in glob.glob(os.path.join(src, "*")):
                if os.path.isfile(f) and (f.endswith(".so") or os.path.basename(f) in ("lmbox", "lt-lmbox")):
                    shutil.copy2(f, dst)
        for dp, dns, fns in os.walk(tmp):
            os.chmod(dp, 0o755)
            for f in fns:
                os.chmod(os.path.join(dp, f), 0o755)
        py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", TMPDIR="/tmp",
                   LMBOX_TOP_BUILDDIR=os.path.join(tmp, "build"), HOME="/tmp")
        print("# running as %s via runuser: %s %s/test_nonroot.py --inner" % (
            lmboxtest.TEST_SYSTEM_USER, py, tmp), flush=True)
        r = subprocess.run(["runuser", "-u", lmboxtest.TEST_SYSTEM_USER, "--", py,
                            os.path.join(tmp, "test_nonroot.py"), "--inner"],
                           env=env, cwd="/tmp", timeout=600)
        sys.exit(r.returncode)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if "--inner" in sys.argv:
        run(lambda: inner(os.environ.get("LMBOX_TOP_BUILDDIR")))
    else:
        run(outer)
