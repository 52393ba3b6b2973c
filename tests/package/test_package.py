#!/usr/bin/env python3
"""The Debian package dovecot-lmbox, end to end (docs/packaging.md):

  1. build it from the source tree with build-aux/build-deb.sh (a copy of
     the tree in a temporary directory, dpkg-buildpackage -us -uc -b);
  2. lintian reports no error (warnings must be named in docs/packaging.md);
  3. the control fields: Depends names the Dovecot ABI virtual package that
     the installed dovecot-core provides; an edited copy depending on another
     ABI is refused by apt;
  4. apt-get install ./dovecot-lmbox_*.deb: files where they belong, the
     system's `doveconf -n` unchanged (the conf snippet is all comments),
     the snippet's defaults equal the source's, uncommented it parses;
  5. a private Dovecot *without* mail_plugin_dir (it loads the installed
     plugin from its own module dir), LMTP in, POP3 out, /usr/bin/lmbox
     reads the store;
  6. apt-get purge: no file of the package left (module dir, /etc, /usr),
     the mail store byte-for-byte untouched; installed again, the store is
     served as before; purged again.

On Dovecot 2.4 (inside the Debian 13 chroot: build-aux/build-deb24.sh
--check) the package also ships the settings module (moduledir/settings/)
and the 2.4 snippet, checked in 2.4 syntax.

Root only (exit 77 otherwise): it installs and removes a package on this
machine.  A dovecot-lmbox installed before the test is purged first.
"""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.environ.get("LMBOX_TOP_SRCDIR") or os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))

from lmboxtest import (Dovecot, Test, Skip, Failure, Abort, run, msg, crlf,  # noqa: E402
                       check_environment, SYSTEM_MODULE_DIR, is_dovecot24)

PKG = "dovecot-lmbox"
CONF_SNIPPET = "/etc/dovecot/conf.d/95-lmbox.conf"
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
APT_OPTS = ["-y", "-q", "-o", "DPkg::Lock::Timeout=120", "--no-install-recommends"]
BUILD_TIMEOUT = 600
CMD_TIMEOUT = 180


def sh(argv, check=True, timeout=CMD_TIMEOUT, env=None, input=None):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       env=env, input=input)
    out = r.stdout.decode(errors="replace")
    if check and r.returncode != 0:
        raise Failure("%s exited %d:\n%s" % (" ".join(argv), r.returncode, out[-3000:]))
    return r.returncode, out


def installed(pkg=PKG):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=60)
    return r.stdout.decode().strip() if r.returncode == 0 else ""


def purge():
    sh(["apt-get", "purge"] + APT_OPTS + [PKG], env=APT_ENV)


def ensure_tools():
    """debhelper, lintian (deps.sh normally installs them)."""
    missing = [p for p in ("debhelper", "lintian", "dpkg-dev")
               if not installed(p).endswith("install ok installed")]
    if not missing:
        return
    rc, out = sh(["apt-get", "install"] + APT_OPTS + missing, check=False, env=APT_ENV)
    if rc != 0:
        sh(["apt-get", "update", "-q"], env=APT_ENV)
        sh(["apt-get", "install"] + APT_OPTS + missing, env=APT_ENV)


def module_sonames(settings=False):
    """The Dovecot modules the tree builds: module_LTLIBRARIES of plugin/
    and pop3/ Makefile.am (lib*.la -> lib*.so); with settings=True the
    settings_LTLIBRARIES (Dovecot 2.4: moduledir/settings/) instead."""
    names = []
    var = "settings_LTLIBRARIES" if settings else "module_LTLIBRARIES"
    for sub in ("plugin", "pop3"):
        path = os.path.join(SRCDIR, sub, "Makefile.am")
        if not os.path.exists(path):
            continue
        text = open(path).read().replace("\\\n", " ")
        for m in re.finditer(r"^%s\s*=\s*(.*)$" % var, text, re.M):
            names += [n[:-3] + ".so" for n in m.group(1).split() if n.endswith(".la")]
    return sorted(names)


def source_defaults():
    """The lmbox_* plugin settings the plugin reads, and their defaults from
    storage/lmbox-private.h, as the conf snippet should spell them."""
    names = set()
    for f in glob.glob(os.path.join(SRCDIR, "plugin", "*.c")) + glob.glob(os.path.join(SRCDIR, "pop3", "*.c")):
        names |= set(re.findall(r'"(lmbox_[a-z0-9_]+)"', open(f, errors="replace").read()))
    hdr = open(os.path.join(SRCDIR, "storage", "lmbox-private.h")).read()
    defs = {}
    for m in re.finditer(r"#define LMBOX_DEFAULT_([A-Z_]+)\s+\(?([0-9ULL *]+)\)?", hdr):
        expr = m.group(2).replace("ULL", "").replace("U", "")
        defs[m.group(1).lower()] = eval(expr, {"__builtins__": {}})  # digits and * only
    return names, defs


def conf_size(v):
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    m = re.fullmatch(r"(\d+)\s*([kKmMgG]?)", v)
    if not m:
        raise Failure("size %r" % v)
    return int(m.group(1)) * units[m.group(2).lower()]


def snippet_settings(t, snippet):
    """The snippet's commented lmbox_* settings (returned, name -> value):
    exactly the ones the code reads (test hooks stay undocumented), each
    with the source's default."""
    names, defs = source_defaults()
    names = {n for n in names if "_test_" not in n}
    vals = dict(re.findall(r"^\s*#(lmbox_[a-z0-9_]+) = (.+?)\s*$", snippet, re.M))
    t.eq(sorted(names - set(vals)), [], "settings the code reads but the snippet lacks")
    t.eq(sorted(n for n in set(vals) - names if not n.startswith("lmbox_pop3_")), [],
         "settings in the snippet that no code reads")
    for key, dname in (("lmbox_map_initial", "map_initial"), ("lmbox_map_max", "map_max"),
                       ("lmbox_segment_max", "segment_max")):
        t.eq(conf_size(vals[key]), defs[dname], key)
    t.eq(int(vals["lmbox_compress_level"]), defs["compress_level"], "lmbox_compress_level")
    t.eq(int(vals["lmbox_max_readers"]), defs["max_readers"], "lmbox_max_readers")
    t.eq(vals.get("lmbox_log_body_opens"), "no", "lmbox_log_body_opens")
    return vals


def tree_digest(root):
    """path -> (mode, size, sha256) of every file under root."""
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in fns:
            p = os.path.join(dp, n)
            st = os.lstat(p)
            h = hashlib.sha256()
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, h.hexdigest())
    return out


def doveconf_n():
    r = subprocess.run(["doveconf", "-n"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    # the first lines name versions, OS and host; the settings follow
    return [l for l in r.stdout.decode(errors="replace").splitlines() if not l.startswith("#")]


def main():
    if os.geteuid() != 0:
        raise Skip("installs and removes a Debian package: root only")
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise Skip("not a Debian system (no apt-get/dpkg)")
    check_environment()
    t = Test("Debian package %s" % PKG)
    work = tempfile.mkdtemp(prefix="lmbox-pkgtest.")
    os.chmod(work, 0o755)
    out = os.path.join(work, "deb")
    state = {}
    try:
        body(t, work, out, state)
    finally:
        if installed():
            try:
                purge()
            except Exception as e:
                print("FAIL: cleanup purge: %s" % e)
        shutil.rmtree(work, ignore_errors=True)
    t.done()


def body(t, work, out, state):
    expected_so = module_sonames()
    d24 = is_dovecot24()
    # Dovecot 2.4: the settings module too, in moduledir/settings
    settings_so = module_sonames(settings=True) if d24 else []
    settings_dir = os.path.join(SYSTEM_MODULE_DIR, "settings")

    with t.case("tools and a clean start (debhelper, lintian; no %s installed)" % PKG, required=True):
        ensure_tools()
        if installed():
            print("      %s was installed (%s): purging it first" % (PKG, installed()))
            purge()
        t.check(not installed(), "%s still installed" % PKG)
        t.check(expected_so, "no module_LTLIBRARIES in plugin/ or pop3/ Makefile.am")
        state["doveconf_before"] = doveconf_n()

    with t.case("build-aux/build-deb.sh builds the package (dpkg-buildpackage -us -uc -b)", required=True):
        t0 = time.monotonic()
        rc, log = sh(["sh", os.path.join(SRCDIR, "build-aux", "build-deb.sh"), out],
                     check=False, timeout=BUILD_TIMEOUT)
        with open(os.path.join(work, "build.log"), "w") as f:
            f.write(log)
        if rc != 0:
            raise Failure("build-deb.sh exited %d; last lines:\n%s" % (rc, "\n".join(log.splitlines()[-40:])))
        debs = glob.glob(os.path.join(out, PKG + "_*.deb"))
        t.eq(len(debs), 1, "number of %s_*.deb in %s" % (PKG, out))
        state["deb"] = debs[0]
        print("      %s (%.0fs)" % (os.path.basename(debs[0]), time.monotonic() - t0))

    deb = state["deb"]

    with t.case("lintian: no errors; every warning is named in docs/packaging.md"):
        rc, lint = sh(["lintian", "--fail-on", "error", deb], check=False)
        tags = [l for l in lint.splitlines() if re.match(r"^[EW]: ", l)]
        for l in tags:
            print("      " + l)
        errors = [l for l in tags if l.startswith("E: ")]
        t.check(not errors and rc == 0, "lintian exited %d with %d error(s)" % (rc, len(errors)))
        doc = open(os.path.join(SRCDIR, "docs", "packaging.md")).read()
        undocumented = sorted({l.split()[2] for l in tags if l.startswith("W: ")
                               and len(l.split()) > 2 and l.split()[2] not in doc})
        t.check(not undocumented, "lintian warnings not named in docs/packaging.md: %s" % undocumented)

    with t.case("Depends carries the ABI that dovecot-core provides; version = configure.ac's"):
        _, fields = sh(["dpkg-deb", "-f", deb, "Package", "Version", "Depends", "Architecture"])
        f = dict(l.split(": ", 1) for l in fields.splitlines() if ": " in l)
        _, provides = sh(["dpkg-query", "-W", "-f=${Provides}", "dovecot-core"])
        abi = re.findall(r"dovecot-abi-[0-9a-z.]+", provides)
        t.eq(len(abi), 1, "dovecot-abi-* in dovecot-core's Provides (%r)" % provides)
        deps = [d.strip() for d in f["Depends"].split(",")]
        t.check(abi[0] in deps, "Depends %r lacks %s" % (f["Depends"], abi[0]))
        t.check(any(d.startswith("liblmdb0") for d in deps), "Depends lacks liblmdb0: %r" % f["Depends"])
        ac = re.search(r"AC_INIT\(\[lmbox\],\s*\[([^\]]+)\]", open(os.path.join(SRCDIR, "configure.ac")).read())
        t.eq(f["Version"].split("-")[0], ac.group(1), "package version vs AC_INIT")
        state["abi"] = abi[0]
        _, conffiles = sh(["dpkg-deb", "-I", deb, "conffiles"])
        t.eq(conffiles.split(), [CONF_SNIPPET], "conffiles")

    with t.case("apt refuses a copy that depends on another Dovecot ABI"):
        x = os.path.join(work, "otherabi")
        sh(["dpkg-deb", "-R", deb, x])
        ctl = os.path.join(x, "DEBIAN", "control")
        text = open(ctl).read()
        t.check(state.get("abi", "dovecot-abi-") in text, "ABI not in control")
        open(ctl, "w").write(text.replace(state["abi"], "dovecot-abi-2.3.abiv0"))
        other = os.path.join(work, "%s_otherabi.deb" % PKG)
        sh(["dpkg-deb", "-b", x, other])
        rc, o = sh(["apt-get", "install", "-s", "-q", "-o", "DPkg::Lock::Timeout=120", other],
                   check=False, env=APT_ENV)
        t.check(rc != 0 and "dovecot-abi-2.3.abiv0" in o,
                "apt-get -s install of the other-ABI copy: exit %d\n%s" % (rc, o[-1500:]))

    with t.case("apt-get install ./%s_*.deb" % PKG, required=True):
        sh(["apt-get", "install"] + APT_OPTS + [os.path.abspath(deb)], env=APT_ENV)
        t.check(installed().endswith("install ok installed"), "status %r" % installed())

    with t.case("installed files: modules %s in %s, /usr/bin/lmbox, lmbox(1), %s, docs"
                % (", ".join(expected_so + ["settings/" + so for so in settings_so]),
                   SYSTEM_MODULE_DIR, CONF_SNIPPET)):
        _, lst = sh(["dpkg", "-L", PKG])
        files = [p for p in lst.splitlines() if p.startswith("/") and not os.path.isdir(p)]
        state["files"] = files
        got_so = sorted(os.path.basename(p) for p in files if p.endswith(".so"))
        t.eq(got_so, sorted(expected_so + settings_so), "modules in the package")
        for so in expected_so:
            t.check(os.path.join(SYSTEM_MODULE_DIR, so) in files, "%s not in %s" % (so, SYSTEM_MODULE_DIR))
        for so in settings_so:
            t.check(os.path.join(settings_dir, so) in files, "%s not in %s" % (so, settings_dir))
        for p in ("/usr/bin/lmbox", "/usr/share/man/man1/lmbox.1.gz", CONF_SNIPPET,
                  "/usr/share/doc/%s/copyright" % PKG):
            t.check(p in files, "%s not in the package" % p)
        t.check(not [p for p in files if p.endswith(".la")], "libtool .la files shipped")
        rc, o = sh(["/usr/bin/lmbox", "--help"])
        t.check("import-maildir" in o, "lmbox --help: %r" % o[:200])
        rc, o = sh(["man", "-P", "cat", "-l", "/usr/share/man/man1/lmbox.1.gz"],
                   env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"))
        t.check("EXIT STATUS" in o and "import-maildir" in o, "man page renders: %r" % o[:300])

    with t.case("installing changed nothing in the system's doveconf -n"):
        t.eq(doveconf_n(), state["doveconf_before"], "doveconf -n after install")

    with t.case("the conf snippet: every lmbox_* setting with the source's default; it parses uncommented"):
        snippet = open(CONF_SNIPPET).read()
        active = [l for l in snippet.splitlines() if l.strip() and not l.strip().startswith("#")
                  and l.strip() not in ("plugin {", "}")]
        t.eq(active, [], "uncommented settings")
        if d24:
            conf_snippet24(t, work, state, snippet)
        else:
            t.check(re.search(r"^#mail_plugins = \$mail_plugins lmbox$", snippet, re.M), "mail_plugins line")
            t.check(re.search(r"^#mail_location = lmbox:~/lmbox$", snippet, re.M), "mail_location line")
            vals = snippet_settings(t, snippet)
            on = re.sub(r"^(\s*)#((?:mail_plugins|mail_location|lmbox_[a-z0-9_]+) = )", r"\1\2",
                        snippet, flags=re.M)
            on = re.sub(r"^#(protocol pop3 \{|\}$)", r"\1", on, flags=re.M)
            p = os.path.join(work, "snippet-on.conf")
            open(p, "w").write(on)
            _, o = sh(["doveconf", "-c", p, "-n"])
            for want in ["mail_location = lmbox:~/lmbox", 'mail_plugins = " lmbox"'] + \
                    ["%s = %s" % kv for kv in vals.items()]:
                t.check(want in o, "%r not in doveconf -n of the uncommented snippet:\n%s" % (want, o))
            # debian/ also has the Dovecot 2.4 form (installed when built against 2.4)
            p24 = os.path.join(SRCDIR, "debian", "95-lmbox.conf.2.4")
            v24 = dict(re.findall(r"^#(lmbox_[a-z0-9_]+) = (.+?)\s*$", open(p24).read(), re.M))
            t.eq(v24, vals, "lmbox_* settings of the 2.4 snippet vs the 2.3 one")
            # the storage settings (first plugin block) go into the private Dovecot
            first = on.index("plugin {")
            state["plugin_block"] = on[first:on.index("\n}\n", first) + 3]

    # The private Dovecot: system module dir, the snippet's plugin settings.
    pop3_plugins = [so[len("lib20_"):-len("_plugin.so")] for so in expected_so
                    if so.startswith("lib20_pop3_")]
    extra = state.get("plugin_block", "")
    keep = os.path.join(work, "dovecot")
    msgs = [msg(i, body=b"packaged lmbox %d\r\n" % i + b"x" * (i * 700) + b"\r\n") for i in range(1, 4)]
    seen = {}

    def serve(dc, deliver):
        conf = open(dc.conf_path).read()
        t.check("mail_plugin_dir" not in conf, "the config sets mail_plugin_dir")
        if deliver:
            for m in msgs:
                dc.lmtp_deliver("alice", m)
        r = dc.raw_pop3("alice")
        pid = dc.session_pid(r)
        maps = open("/proc/%d/maps" % pid).read()
        for so in expected_so:
            t.check(os.path.join(SYSTEM_MODULE_DIR, so) in maps,
                    "pop3 process %d has not mapped %s/%s" % (pid, SYSTEM_MODULE_DIR, so))
        n, size = r.stat()
        t.eq(n, len(msgs), "STAT count")
        lst, uidl = r.list(), r.uidl()
        for i, m in enumerate(msgs, 1):
            b = r.retr(i)
            t.check(b.endswith(crlf(m)), "RETR %d does not end with the delivered message" % i)
            t.eq(lst[i], len(b), "LIST %d" % i)
        t.eq(size, sum(lst.values()), "STAT size")
        r.quit()
        return uidl

    with t.case("private Dovecot without mail_plugin_dir: LMTP in, POP3 out of lmbox", required=True):
        with Dovecot(mail_location="lmbox:~/lmbox", users=("alice",), system_modules=True,
                     keep_dir=keep, extra_conf=extra, pop3_plugins=pop3_plugins) as dc:
            seen["uidl"] = serve(dc, deliver=True)
            dc.assert_clean_log()
            state["root"] = dc.mail_root("alice")
            state["home"] = dc.home("alice")
            r = dc.run_as_mail_user(["/usr/bin/lmbox", "ls", state["root"], "INBOX"])
            t.eq(r.returncode, 0, "/usr/bin/lmbox ls exit status")
            t.eq(len([l for l in r.stdout.decode().splitlines()[1:] if l.strip()]), len(msgs),
                 "messages listed by /usr/bin/lmbox ls")
        t.check(os.path.isfile(os.path.join(state["root"], "lmbox.mdb")), "no lmbox.mdb in the store")
        if d24:
            # the settings module took the snippet's lmbox_* lines (an
            # unknown setting is fatal on 2.4; doveconf loads moduledir/settings)
            _, o = sh(["doveconf", "-c", os.path.join(keep, "dovecot.conf"), "-n"])
            t.eq(lmbox_block(o).get("lmbox_max_readers"), "1024",
                 "lmbox_max_readers in doveconf -n of the private instance")

    with t.case("apt-get purge: nothing of the package left, the mail store untouched", required=True):
        before = tree_digest(state["home"])
        purge()
        t.eq(installed(), "", "dpkg status after purge")
        left = [p for p in state["files"] if os.path.lexists(p)]
        t.eq(left, [], "files of the package still present")
        t.eq(sorted(glob.glob(os.path.join(SYSTEM_MODULE_DIR, "*lmbox*")) +
                    glob.glob(os.path.join(settings_dir, "*lmbox*"))), [], "lmbox modules left")
        t.eq(sorted(glob.glob("/etc/dovecot/conf.d/*lmbox*")), [], "lmbox conf left in /etc")
        t.check(not os.path.lexists("/usr/share/doc/" + PKG), "/usr/share/doc/%s left" % PKG)
        t.eq(tree_digest(state["home"]), before, "the user's home (store) after purge")

    with t.case("installed again, the same store is served as before; purged again"):
        sh(["apt-get", "install"] + APT_OPTS + [os.path.abspath(deb)], env=APT_ENV)
        with Dovecot(mail_location="lmbox:~/lmbox", users=("alice",), system_modules=True,
                     keep_dir=keep, extra_conf=extra, pop3_plugins=pop3_plugins) as dc:
            t.eq(serve(dc, deliver=False), seen["uidl"], "UIDLs after reinstall")
            dc.assert_clean_log()
        purge()
        t.eq(installed(), "", "dpkg status after the second purge")


def lmbox_block(doveconf_out):
    """{lmbox_KEY: VALUE} from the top-level lmbox { } block that Dovecot
    2.4's doveconf -n prints for the lmbox_* settings."""
    m = re.search(r"^lmbox \{\n(.*?)^\}$", doveconf_out, re.M | re.S)
    return dict(("lmbox_" + k, v) for k, v in
                re.findall(r"^  ([a-z0-9_]+) = (.*?)\s*$", m.group(1), re.M)) if m else {}


def conf_snippet24(t, work, state, snippet):
    """The Dovecot 2.4 snippet (debian/95-lmbox.conf.2.4): the mail_plugins
    block and mail_driver/mail_path; every lmbox_* setting with the source's
    default; uncommented (with the settings module installed) doveconf
    parses it and knows every lmbox_* setting."""
    t.check(re.search(r"^#mail_plugins \{\n#  lmbox = yes\n#\}$", snippet, re.M), "mail_plugins block")
    t.check(re.search(r"^#mail_driver = lmbox$", snippet, re.M), "mail_driver line")
    t.check(re.search(r"^#mail_path = ~/lmbox$", snippet, re.M), "mail_path line")
    vals = snippet_settings(t, snippet)
    # uncomment every line that is commented configuration (not prose)
    on = re.sub(r"^#((?:mail_driver|mail_path|lmbox_[a-z0-9_]+) = )", r"\1", snippet, flags=re.M)
    on = re.sub(r"^#((?:mail_plugins|protocol pop3) \{|\s+(?:mail_plugins \{|[a-z0-9_]+ = yes|\})|\})$",
                r"\1", on, flags=re.M)
    p = os.path.join(work, "snippet-on.conf")
    open(p, "w").write("dovecot_config_version = 2.4.1\ndovecot_storage_version = 2.4.1\n" + on)
    _, o = sh(["doveconf", "-c", p, "-n"])
    for want in ("mail_driver = lmbox", "mail_path = ~/lmbox", "lmbox = yes", "pop3_lmbox = yes"):
        t.check(want in o, "%r not in doveconf -n of the uncommented snippet:\n%s" % (want, o))
    # doveconf -n groups the lmbox_* settings as lmbox { KEY = VALUE }
    t.eq(lmbox_block(o), vals, "lmbox_* settings in doveconf -n of the uncommented snippet")
    # the storage settings (not the pop3 module's) go into the private Dovecot
    state["plugin_block"] = "\n".join(
        l for l in on.splitlines() if re.match(r"^lmbox_[a-z0-9_]+ = ", l)
        and not l.startswith("lmbox_pop3_")) + "\n"


if __name__ == "__main__":
    run(main)
