#!/usr/bin/env python3
"""Real POP3 clients in leave-on-server mode against lmbox (DESIGN "Real
clients"): mpop and fetchmail remember the UIDLs they fetched.  They fetch
every message once; fetch nothing on the next run; fetch exactly the new
message after a delivery; fetch nothing after every Dovecot index file was
deleted (UIDLs survive); and with keep off they delete everything."""
import os, re, shutil, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmboxtest import Dovecot, Test, run, check_environment, msg, Failure, Skip, CMD_TIMEOUT

LOCATION = os.environ.get("LMBOX_IT_LOCATION", "lmbox:~/lmbox")
N = 5
SEQ_RE = re.compile(rb"(?m)^X-Seq: (\d+)\r?$")


class Client:
    def __init__(self, dc, user, workdir, kind):
        self.dc, self.user, self.dir, self.kind = dc, user, workdir, kind
        os.makedirs(workdir, exist_ok=True)
        self.out = os.path.join(workdir, "mbox")
        open(self.out, "wb").close()
        self.pos = 0

    def fetch(self, keep=True):
        """Run the client once; return the X-Seq numbers it delivered this run."""
        env = dict(os.environ, HOME=self.dir)
        if self.kind == "mpop":
            argv = ["mpop", "--host=127.0.0.1", "--port=%d" % self.dc.ports["pop3"],
                    "--tls=off", "--auth=user", "--user=" + self.user,
                    "--passwordeval=echo " + self.dc.password(self.user),
                    "--uidls-file=" + os.path.join(self.dir, "uidls"),
                    "--only-new=on", "--keep=" + ("on" if keep else "off"),
                    "--delivery=mbox," + self.out, "--quiet"]
            ok_codes = (0,)
        else:
            rc = os.path.join(self.dir, "fetchmailrc")
            with open(rc, "w") as f:
                f.write('set no bouncemail\nset no syslog\n'
                        'poll 127.0.0.1 service %d protocol pop3 uidl auth password\n'
                        '  user "%s" there with password "%s" is "%s" here\n'
                        '  %s\n  sslproto ""\n  mda "/bin/sh -c \'cat >> %s\'"\n'
                        % (self.dc.ports["pop3"], self.user, self.dc.password(self.user),
                           self.user, "keep" if keep else "nokeep", self.out))
            os.chmod(rc, 0o600)
            argv = ["fetchmail", "-f", rc, "-i", os.path.join(self.dir, "fetchids"),
                    "--pidfile", os.path.join(self.dir, "pid"), "--nosyslog", "--silent"]
            ok_codes = (0, 1)   # 1: no mail
        r = subprocess.run(argv, env=env, cwd=self.dir, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=CMD_TIMEOUT)
        if r.returncode not in ok_codes:
            raise Failure("%s exited %d: %s" % (self.kind, r.returncode, r.stdout.decode(errors="replace")[-1500:]))
        with open(self.out, "rb") as f:
            f.seek(self.pos)
            new = f.read()
            self.pos = f.tell()
        return sorted(int(x) for x in SEQ_RE.findall(new))


def main():
    check_environment()
    t = Test("real POP3 clients, leave on server (%s)" % LOCATION)
    kinds = [k for k in ("mpop", "fetchmail") if shutil.which(k)]
    if not kinds:
        raise Skip("neither mpop nor fetchmail installed")
    with Dovecot(mail_location=LOCATION, users=("alice",)) as dc:
        with t.case("deliver %d messages" % N, required=True):
            for i in range(1, N + 1):
                dc.lmtp_deliver("alice", msg(i))
        clients = {k: Client(dc, "alice", os.path.join(dc.tmp, "client-" + k), k) for k in kinds}
        for k, c in clients.items():
            with t.case("%s: first run fetches all %d" % (k, N)):
                t.eq(c.fetch(), list(range(1, N + 1)), "fetched")
            with t.case("%s: second run fetches nothing" % k):
                t.eq(c.fetch(), [], "fetched")
        with t.case("one more delivery"):
            dc.lmtp_deliver("alice", msg(N + 1))
        for k, c in clients.items():
            with t.case("%s: fetches exactly the new message" % k):
                t.eq(c.fetch(), [N + 1], "fetched")
        with t.case("delete every Dovecot index file; POP3 still shows %d messages" % (N + 1)):
            dc.delete_index_files("alice")
            r = dc.raw_pop3("alice")
            t.eq(r.stat()[0], N + 1, "STAT after index loss")
            r.quit()
        for k, c in clients.items():
            with t.case("%s: after the index loss fetches nothing (UIDLs unchanged)" % k):
                t.eq(c.fetch(), [], "fetched")
        k0 = kinds[0]
        with t.case("%s with keep off: deletes everything at QUIT; mailbox empty" % k0):
            c = Client(dc, "alice", os.path.join(dc.tmp, "client-nokeep"), k0)
            t.eq(c.fetch(keep=False), list(range(1, N + 2)), "fetched")
            r = dc.raw_pop3("alice")
            t.eq(r.stat(), (0, 0), "STAT after delete")
            r.quit()
        with t.case("no Error/Panic/Fatal in Dovecot's log"):
            dc.assert_clean_log()
    t.done()


run(main)
