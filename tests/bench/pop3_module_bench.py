#!/usr/bin/env python3
"""Does the pop3_lmbox session module make a POP3 login slower? (issue #6)

One private Dovecot (tests/integration/lmboxtest.py), one store of N
messages, three users sharing that store's home so that every variant reads
the same data in the same processes' pool:

  off      userdb mail_plugins=lmbox (the module is not loaded)
  on       the module loaded with its defaults (both policies off): what every
           session pays is its bookkeeping, reading nothing and writing
           pop3.last_login (one small LMDB commit) at login
  expire   on + lmbox_pop3_expire=30 (userdb field): QUIT also walks the
           folder's store metadata for first-RETR times
  delay    on + lmbox_pop3_login_delay=1s (userdb field) on a test clock the
           bench moves 10 s on before each of its sessions: the LOGIN-DELAY
           path (greeting held, pop3.last_login read and written at login)

Each sample is one session, timed by the client: connect, USER, PASS, STAT
("login+STAT"), and then QUIT ("session", QUIT's reply included).  Variants
are interleaved, after a warm-up, in Dovecot's default login mode and in the
high-performance mode (service_count = 0, process_min_avail).  Prints medians
and the on/off ratios.

  python3 tests/bench/pop3_module_bench.py [--n 10000] [--repeat 40] [--builddir DIR]
(LMBOX_TOP_BUILDDIR as for the integration tests; the build must have pop3/.)"""
import argparse, os, shutil, statistics, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from lmboxtest import Dovecot, Failure, RawPOP3, top_builddir  # noqa: E402

MODULE_CONF = "protocol pop3 {\n  mail_plugins = $mail_plugins pop3_lmbox\n}\n"
VARIANTS = ("off", "on", "expire", "delay")


def fill(dc, user, n):
    """n small messages: a Maildir written here, imported with `lmbox
    import-maildir` as the mail user (much faster than n LMTP deliveries)."""
    home = dc.home(user)
    md = os.path.join(home, "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    for i in range(n):
        body = (b"From: a@example.org\r\nTo: %s@example.org\r\nSubject: bench %d\r\n"
                b"Message-ID: <pop3-module-bench-%d@example.org>\r\n\r\n" % (user.encode(), i, i)
                + b"line of a small message body\r\n" * (5 + i % 40))
        with open(os.path.join(md, "cur", "%d.M%dP1.bench:2," % (1700000000 + i, i)), "wb") as f:
            f.write(body)
    for dp, dns, fns in os.walk(md):
        for x in dns + fns:
            os.chown(os.path.join(dp, x), dc.uid, dc.gid)
    os.chown(md, dc.uid, dc.gid)
    dc.lmbox_cli("import-maildir", md, dc.mail_root(user))
    shutil.rmtree(md)


def session(dc, user):
    """(login+STAT seconds, whole session seconds, STAT)"""
    t0 = time.perf_counter()
    r = RawPOP3(dc.ports["pop3"])
    r.ok("USER " + user)
    r.ok("PASS " + dc.password(user))
    st = r.stat()
    t1 = time.perf_counter()
    q = r.quit()
    t2 = time.perf_counter()
    if not q.startswith(b"+OK"):
        raise Failure("QUIT: %r" % q)
    return t1 - t0, t2 - t0, st


def run_mode(args, fast):
    users = {"alice": {"extra": "userdb_mail_plugins=lmbox"}}
    with Dovecot(users=users, extra_conf=MODULE_CONF, builddir=args.builddir,
                 fast_login=fast) as dc:
        home = dc.home("alice")
        dc.add_user("on", home=home)
        dc.add_user("expire", home=home, extra="userdb_lmbox_pop3_expire=30")
        clock = os.path.join(dc.tmp, "clock")
        dc.add_user("delay", home=home, extra="userdb_lmbox_pop3_login_delay=1s "
                    "userdb_lmbox_pop3_test_clock_file=" + clock)
        names = {v: v for v in VARIANTS}
        names["off"] = "alice"
        now = [1800000000]

        def tick():
            now[0] += 10
            with open(clock + ".new", "w") as f:
                f.write("%d\n" % now[0])
            os.chmod(clock + ".new", 0o644)
            os.replace(clock + ".new", clock)
        t = time.monotonic()
        fill(dc, "alice", args.n)
        print("# filled %d messages in %.1fs" % (args.n, time.monotonic() - t), flush=True)
        want = None
        for v in VARIANTS * 3:                      # warm-up (index, caches, processes)
            tick()
            _, _, st = session(dc, names[v])
            want = want or st
            if st != want:
                raise Failure("%s sees STAT %r, off sees %r" % (v, st, want))
        out = dc.lmbox_cli("stat", "--value", "pop3.last_login", dc.mail_root("alice")).stdout
        recorded = b"pop3.last_login" in out and b"(unset)" not in out
        samples = {v: ([], []) for v in VARIANTS}
        for i in range(args.repeat):
            order = VARIANTS if i % 2 == 0 else tuple(reversed(VARIANTS))
            for v in order:
                if v == "delay":
                    tick()
                a, b, st = session(dc, names[v])
                if st != want:
                    raise Failure("STAT changed: %r" % (st,))
                samples[v][0].append(a * 1000)
                samples[v][1].append(b * 1000)
        dc.assert_clean_log()
        if not recorded:
            raise Failure("the module did not record pop3.last_login")
        return samples, want


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", "10000")))
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "40")))
    ap.add_argument("--builddir", default=None)
    args = ap.parse_args()
    args.builddir = args.builddir or top_builddir()
    if not os.path.exists(os.path.join(args.builddir, "pop3", ".libs", "lib20_pop3_lmbox_plugin.so")):
        sys.exit("pop3_lmbox module not built in %s" % args.builddir)
    print("# pop3_lmbox module: login+STAT and whole session, N=%d, %d samples per variant"
          % (args.n, args.repeat))
    for fast in (False, True):
        samples, st = run_mode(args, fast)
        mode = "high-performance login" if fast else "default login"
        med = {v: (statistics.median(samples[v][0]), statistics.median(samples[v][1])) for v in VARIANTS}
        print("## %s (STAT %d %d)" % (mode, st[0], st[1]))
        print("%-8s %16s %16s %18s" % ("variant", "login+STAT ms", "session ms", "login+STAT p25-p75"))
        for v in VARIANTS:
            # (one sample, e.g. BENCH_REPEAT=1: no spread to show)
            q = statistics.quantiles(samples[v][0], n=4) if len(samples[v][0]) > 1 else [med[v][0]] * 3
            print("%-8s %16.2f %16.2f %9.2f-%.2f" % (v, med[v][0], med[v][1], q[0], q[2]))
        for v in VARIANTS[1:]:
            print("ratio %s/off: login+STAT %.3f, session %.3f"
                  % (v, med[v][0] / med["off"][0], med[v][1] / med["off"][1]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
