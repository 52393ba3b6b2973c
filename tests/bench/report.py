"""report.py: the "Dovecot backends" section of docs/benchmarks.md and the
PNG plots, from results.jsonl (bench.py writes it; `bench.py report` reruns
only this).  Python 3 standard library; plots need gnuplot (Debian package
gnuplot-nox) and are left out, with a note, without it."""
import json
import os
import shutil
import subprocess
import tempfile

SECTION = "## Dovecot backends"
PEERS = ["maildir", "sdbox", "mdbox", "maildir+zlib", "mdbox+zlib"]
ORDER = ["lmbox"] + PEERS
UNCOMP = ["maildir", "sdbox", "mdbox"]
ZLIBP = ["maildir+zlib", "mdbox+zlib"]
VSZ_LIMIT = 256 * 1024 * 1024


def load(path):
    runs, recs = {}, []
    with open(path) as f:
        for ln in f:
            ln = ln.strip()
            if not ln:
                continue
            r = json.loads(ln)
            if r.get("type") == "run":
                runs[r["run"]] = r
            else:
                recs.append(r)
    return runs, recs


class Data:
    def __init__(self, runs, recs):
        self.runs = runs
        self.recs = recs
        self.idx = {}
        for r in recs:
            self.idx[(r["backend"], r["n"], r["login"], r["metric"])] = r
        self.backends = [b for b in ORDER if any(r["backend"] == b for r in recs)]
        self.ns = sorted({r["n"] for r in recs if r["n"]})
        self.logins = [m for m in ("default", "perf") if any(r["login"] == m for r in recs)]

    def get(self, b, n, login, metric, field="value"):
        r = self.idx.get((b, n, login, metric))
        if r is None:
            return None
        return r.get(field)

    def floor(self, b, login):
        return self.get(b, 0, login, "floor_F")

    def above(self, b, n, login, metric):
        v, f = self.get(b, n, login, metric), self.floor(b, login)
        if v is None or f is None:
            return None
        return v - f


# --------------------------------------------------------------------------
# formatting

def fms(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def fbytes(v):
    if v is None:
        return "-"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(v) >= div:
            return "%.2f %s" % (v / div, unit)
    return "%d B" % v


def fnum(v):
    return "-" if v is None else ("%d" % v if isinstance(v, int) else "%.0f" % v)


def fratio(v):
    if v is None:
        return "-"
    return ("%.3fx" if abs(v) < 0.1 else "%.2fx") % v


def verdict(ok):
    return "-" if ok is None else ("met" if ok else "**not met**")


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


# --------------------------------------------------------------------------
# tables

def absolute_table(d, n):
    bs = d.backends
    out = ["| N = %d | %s |" % (n, " | ".join(bs)), "|---|%s" % ("---|" * len(bs))]

    def row(label, fn):
        out.append("| %s | %s |" % (label, " | ".join(fn(b) for b in bs)))

    for m in d.logins:
        row("floor F, login+STAT+QUIT on an empty mailbox, ms (%s login)" % m, lambda b: fms(d.floor(b, m)))
    for metric, label in (("login_stat", "login+STAT+QUIT"), ("login_list", "login+LIST+QUIT"),
                          ("login_uidl", "login+UIDL+QUIT")):
        for m in d.logins:
            row("%s ms (%s login)" % (label, m),
                lambda b: "%s (%s above F)" % (fms(d.get(b, n, m, metric)), fms(d.above(b, n, m, metric)))
                if d.get(b, n, m, metric) is not None else "-")
    for m in d.logins:
        row("login+UIDL+QUIT after index loss, ms (%s login)" % m, lambda b: fms(d.get(b, n, m, "cold_login_uidl")))
    for m in d.logins:
        row("RETR x100, ms (%s login)" % m, lambda b: fms(d.get(b, n, m, "retr100")))
        row("RETR x100, MB/s (%s login)" % m, lambda b: fms(d.get(b, n, m, "retr100", "mb_s")))
        row("TOP n 0 x100, ms (%s login)" % m, lambda b: fms(d.get(b, n, m, "top100")))
    m0 = d.logins[0] if d.logins else None
    row("QUIT commit of 10%% DELEs, ms (%s login)" % m0, lambda b: fms(d.get(b, n, m0, "quit_commit_10pct")))
    row("DELE 100%% + QUIT session, ms (%s login)" % m0, lambda b: fms(d.get(b, n, m0, "dele_all_quit")))
    row("LMTP, msg/s, 1 client", lambda b: fms(d.get(b, n, None, "lmtp_1client")))
    row("LMTP, msg/s, 4 clients", lambda b: fms(d.get(b, n, None, "lmtp_4clients")))
    row("disk, du -sb", lambda b: fbytes(d.get(b, n, None, "disk_bytes")))
    row("disk, allocated blocks", lambda b: fbytes(d.get(b, n, None, "disk_bytes", "allocated")))
    row("inodes", lambda b: fnum(d.get(b, n, None, "disk_inodes")))
    row("disk left after DELE 100%, allocated", lambda b: fbytes(d.get(b, n, None, "disk_after_dele_all", "allocated")))
    for k in (1, 2, 3):
        row("churn round %d: allocated / live POP3 bytes" % k,
            lambda b: fratio(d.get(b, n, None, "churn_round%d" % k)))
    row("pop3 peak RSS (VmHWM), UIDL + RETR all", lambda b: fbytes(d.get(b, n, m0, "pop3_peak_rss")))
    row("pop3 peak VSZ (VmPeak)", lambda b: fbytes(d.get(b, n, m0, "pop3_peak_rss", "vm_peak")))
    r = next((x for x in d.recs if x["n"] == n and x["metric"] == "disk_bytes"), None)
    if r:
        out.append("")
        out.append("Corpus at N = %d: %s raw, %s as each message deflated alone at level 6 (%.2f of raw), "
                   "%s as POP3 octets." % (n, fbytes(r.get("raw_bytes")), fbytes(r.get("deflate6_bytes")),
                                          r["deflate6_bytes"] / r["raw_bytes"] if r.get("raw_bytes") else 0,
                                          fbytes(r.get("pop3_bytes"))))
    return out


def best(d, n, peers, fn, lowest=True):
    vals = [(fn(b), b) for b in peers if b in d.backends]
    vals = [(v, b) for v, b in vals if v is not None]
    if not vals:
        return None, None
    return (min if lowest else max)(vals)


def ratio_table(d, n):
    out = ["| target (issue 9, at N = 100k) | login | lmbox | best peer | ratio | target | verdict |",
           "|---|---|---|---|---|---|---|"]
    if "lmbox" not in d.backends:
        return ["lmbox was not measured in this run."]
    peers = [b for b in PEERS if b in d.backends]

    def add(target, login, lv, pb, pv, r, tgt, ok):
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            target, login or "-", lv, ("%s %s" % (pb, pv)) if pb else "-", fratio(r), tgt, verdict(ok)))

    for metric, label in (("login_stat", "login+STAT, ms above F"), ("login_list", "login+LIST, ms above F"),
                          ("login_uidl", "login+UIDL, ms above F")):
        for m in d.logins:
            lv = d.above("lmbox", n, m, metric)
            pv, pb = best(d, n, peers, lambda b: d.above(b, n, m, metric))
            r = ratio(lv, pv)
            add(label, m, fms(lv), pb, fms(pv), r, "<= 0.5x", None if r is None else r <= 0.5)
    for m in d.logins:
        lv = d.above("lmbox", n, m, "login_stat")
        add("stretch: login+STAT above F <= 15 ms", m, fms(lv), None, None, None, "<= 15 ms",
            None if lv is None else lv <= 15)
    for m in d.logins:
        shown = d.get("lmbox", n, m, "cold_login_uidl", "shown")
        same = d.get("lmbox", n, m, "cold_login_uidl", "uidl_unchanged")
        tot = d.get("lmbox", n, m, "cold_login_uidl", "messages")
        c, w = d.above("lmbox", n, m, "cold_login_uidl"), d.above("lmbox", n, m, "login_uidl")
        r = ratio(c, w)
        allok = shown is not None and all(s == tot for s in shown) and all(s == tot for s in same)
        add("after index loss: all messages, UIDLs unchanged; login+UIDL above F vs lmbox warm", m,
            "%s of %s shown, %s unchanged; %s ms" % (min(shown) if shown else "-", tot,
                                                    min(same) if same else "-", fms(c)),
            "lmbox warm", fms(w), r, "all, <= 1.5x", None if r is None else (allok and r <= 1.5))
    m0 = d.logins[0] if d.logins else None
    lv = d.get("lmbox", n, m0, "quit_commit_10pct")
    pv, pb = best(d, n, peers, lambda b: d.get(b, n, m0, "quit_commit_10pct"))
    r = ratio(lv, pv)
    add("QUIT commit of 10% DELEs, ms", m0, fms(lv), pb, fms(pv), r, "<= 0.5x", None if r is None else r <= 0.5)
    for metric, label in (("lmtp_1client", "LMTP msg/s, 1 client"), ("lmtp_4clients", "LMTP msg/s, 4 clients")):
        lv = d.get("lmbox", n, None, metric)
        pv, pb = best(d, n, peers, lambda b: d.get(b, n, None, metric), lowest=False)
        r = ratio(lv, pv)
        add(label, None, fms(lv), pb, fms(pv), r, ">= 1.0x", None if r is None else r >= 1.0)
    for m in d.logins:
        lv = d.get("lmbox", n, m, "retr100")
        pv, pb = best(d, n, [b for b in UNCOMP if b in peers], lambda b: d.get(b, n, m, "retr100"))
        r = ratio(lv, pv)
        add("RETR x100, ms (vs best uncompressed)", m, fms(lv), pb, fms(pv), r, "<= 1.0x",
            None if r is None else r <= 1.0)
    lv = d.get("lmbox", n, None, "disk_bytes")
    pv, pb = best(d, n, [b for b in ZLIBP if b in peers], lambda b: d.get(b, n, None, "disk_bytes"))
    r = ratio(lv, pv)
    add("disk, du -sb (vs best zlib backend)", None, fbytes(lv), pb, fbytes(pv), r, "<= 0.95x",
        None if r is None else r <= 0.95)
    lva = d.get("lmbox", n, None, "disk_bytes", "allocated")
    pva, pba = best(d, n, [b for b in ZLIBP if b in peers], lambda b: d.get(b, n, None, "disk_bytes", "allocated"))
    r = ratio(lva, pva)
    add("disk, allocated blocks (vs best zlib backend)", None, fbytes(lva), pba, fbytes(pva), r, "<= 0.95x",
        None if r is None else r <= 0.95)
    defl = d.get("lmbox", n, None, "disk_bytes", "deflate6_bytes")
    r = ratio(lv, defl)
    add("disk, du -sb, vs the messages deflated alone at level 6", None, fbytes(lv), "deflate-6 sum",
        fbytes(defl), r, "(reported)", None)
    lv = d.get("lmbox", n, None, "disk_inodes")
    pv = d.get("maildir", n, None, "disk_inodes")
    r = ratio(lv, pv)
    add("inodes (vs maildir)", None, fnum(lv), "maildir" if pv else None, fnum(pv), r, "<= 0.01x",
        None if r is None else r <= 0.01)
    rs = [d.get("lmbox", n, None, "churn_round%d" % k) for k in (1, 2, 3)]
    if all(x is not None for x in rs):
        pv, pb = best(d, n, peers, lambda b: max([d.get(b, n, None, "churn_round%d" % k) or 0 for k in (1, 2, 3)])
                      if d.get(b, n, None, "churn_round3") is not None else None)
        add("churn: allocated disk / live bytes, worst of 3 rounds", None, " / ".join(fratio(x) for x in rs),
            pb, fratio(pv), max(rs), "<= 1.5x", max(rs) <= 1.5)
    hwm = d.get("lmbox", n, m0, "pop3_peak_rss")
    vp = d.get("lmbox", n, m0, "pop3_peak_rss", "vm_peak")
    add("pop3 peak VSZ (VmPeak; RSS VmHWM beside) in UIDL + RETR of all", m0,
        "%s (RSS %s)" % (fbytes(vp), fbytes(hwm)), None, None, None, "< 256 MB vsz_limit",
        None if vp is None else vp < VSZ_LIMIT)
    return out


def summary(d, n):
    """Targets met and missed at the largest N, and what the peers showed
    after index loss, read from the tables (no hand-written claims)."""
    rows = [ln for ln in ratio_table(d, n) if ln.startswith("| ") and not ln.startswith("| target")]
    met = [r for r in rows if r.rstrip().endswith("| met |")]
    miss = [r for r in rows if "**not met**" in r]
    L = ["### Summary at N = %d" % n, ""]
    if "lmbox" not in d.backends:
        return L + ["lmbox was not measured.", ""]
    L.append("%d of the issue's targets met, %d not met, %d not decidable at this N "
             "(a peer at or below its floor: below the noise of F)." % (len(met), len(miss),
                                                                         len(rows) - len(met) - len(miss)))
    L.append("")
    for r in miss:
        c = [x.strip() for x in r.strip().strip("|").split("|")]
        L.append("- not met: %s%s: lmbox %s, %s, ratio %s (target %s)" % (
            c[0], "" if c[1] == "-" else " (%s login)" % c[1], c[2], c[3], c[4], c[5]))
    facts = []
    for b in d.backends:
        if b == "lmbox":
            continue
        r = d.idx.get((b, n, d.logins[0] if d.logins else None, "cold_login_uidl"))
        if not r:
            continue
        shown, same, tot = r["shown"][0], r["uidl_unchanged"][0], r["messages"]
        after = (r.get("after_force_resync") or [None])[0]
        if shown == 0:
            f = "%s showed an empty INBOX after the index loss" % b
        elif same < tot:
            f = "%s showed %d of %d messages, %d of them under their old UIDL" % (b, shown, tot, same)
        else:
            f = "%s showed all %d messages with unchanged UIDLs" % (b, tot)
        if after is not None and after != tot:
            f += ", and %d after `doveadm force-resync` (messages deleted before came back)" % after
        facts.append(f)
    if facts:
        L.append("")
        L.append("Peers after the first index loss: " + "; ".join(facts) + ".")
    L.append("")
    return L


def cold_table(d, n):
    out = ["| backend | login | messages before | shown after index loss | UIDLs unchanged | login+UIDL ms "
           "| messages after `doveadm force-resync` |",
           "|---|---|---|---|---|---|---|"]
    for b in d.backends:
        for m in d.logins:
            r = d.idx.get((b, n, m, "cold_login_uidl"))
            if not r:
                continue
            out.append("| %s | %s | %d | %s | %s | %s | %s |" % (
                b, m, r["messages"], ", ".join(map(str, r["shown"])), ", ".join(map(str, r["uidl_unchanged"])),
                fms(r["value"]), ", ".join(map(str, r.get("after_force_resync", [])))))
    out.append("")
    out.append("Each repetition deletes the index files again (comma-separated: one figure per repetition). "
               "More messages after `force-resync` than before means messages deleted earlier by the QUIT "
               "commit measurement (expunged, not yet purged) came back. Only the first repetition is a "
               "first loss; the later ones follow a `force-resync` (maildir then sometimes gets its old "
               "UIDVALIDITY again), so the summary quotes the first.")
    return out


# --------------------------------------------------------------------------
# plots

def plots(d, out):
    gp = shutil.which("gnuplot")
    if not gp:
        return [], "gnuplot is not installed (`apt-get install gnuplot-nox`), so no plots were drawn."
    made = []
    tmp = tempfile.mkdtemp(prefix="benchplot.")
    try:
        colors = {"lmbox": "#d62728", "maildir": "#1f77b4", "sdbox": "#2ca02c", "mdbox": "#9467bd",
                  "maildir+zlib": "#17becf", "mdbox+zlib": "#8c564b"}
        # 1. time above F against N, STAT and UIDL, each login mode
        if len(d.ns) >= 1:
            panels = []
            for metric, label in (("login_stat", "login+STAT+QUIT"), ("login_uidl", "login+UIDL+QUIT")):
                for m in d.logins:
                    series = []
                    for b in d.backends:
                        pts = [(n, d.above(b, n, m, metric)) for n in d.ns]
                        pts = [(n, max(v, 0.01)) for n, v in pts if v is not None]
                        if not pts:
                            continue
                        fn = os.path.join(tmp, "%s_%s_%s.dat" % (metric, m, b.replace("+", "_")))
                        with open(fn, "w") as f:
                            for n, v in pts:
                                f.write("%d %.4f\n" % (n, v))
                        series.append("'%s' using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' title '%s'"
                                      % (fn, colors[b], b))
                    if series:
                        panels.append((label, m, series))
            if panels:
                png = os.path.join(out, "time_above_floor.png")
                rows = 2
                cols = (len(panels) + 1) // 2
                s = ["set terminal pngcairo size %d,%d font 'DejaVu Sans,10'" % (520 * cols, 820),
                     "set output '%s'" % png,
                     "set multiplot layout %d,%d title 'POP3 session time above the floor F (median, client side)'"
                     % (rows, cols) if cols > 0 else "",
                     "set logscale x", "set logscale y", "set grid", "set key top left",
                     "set xlabel 'messages in INBOX'", "set ylabel 'ms above F'"]
                for k in range(len(panels)):
                    label, m, series = panels[k]
                    s.append("set title '%s, %s login'" % (label, m))
                    s.append("plot " + ", ".join(series))
                s.append("unset multiplot")
                _gp(gp, s, tmp)
                if os.path.exists(png):
                    made.append(("time_above_floor.png", "time above F of login+STAT and login+UIDL against N"))
        # 2. disk bytes per backend at each N
        # the largest N at which the most backends were measured
        n = max(d.ns, key=lambda k: (sum(1 for b in d.backends if d.get(b, k, None, "disk_bytes") is not None), k)) \
            if d.ns else None
        if n:
            fn = os.path.join(tmp, "disk.dat")
            rows = []
            for b in d.backends:
                a = d.get(b, n, None, "disk_bytes")
                al = d.get(b, n, None, "disk_bytes", "allocated")
                if a is None:
                    continue
                rows.append((b, a / 1e6, (al or 0) / 1e6))
            raw = next((r.get("raw_bytes") for r in d.recs if r["n"] == n and r["metric"] == "disk_bytes"), None)
            defl = next((r.get("deflate6_bytes") for r in d.recs if r["n"] == n and r["metric"] == "disk_bytes"),
                        None)
            if rows:
                with open(fn, "w") as f:
                    for b, a, al in rows:
                        f.write('"%s" %.3f %.3f\n' % (b, a, al))
                png = os.path.join(out, "disk.png")
                s = ["set terminal pngcairo size 900,520 font 'DejaVu Sans,10'", "set output '%s'" % png,
                     "set title 'Mail directory size at N = %d (lower is better)'" % n,
                     "set style data histograms", "set style histogram clustered gap 1",
                     "set style fill solid 0.8 border -1", "set boxwidth 0.9", "set grid ytics",
                     "set ylabel 'MB'", "set yrange [0:*]", "set key top right"]
                plot = ["'%s' using 2:xtic(1) title 'du -sb (apparent)' lc rgb '#1f77b4'" % fn,
                        "'' using 3 title 'allocated blocks' lc rgb '#ff7f0e'"]
                if raw:
                    plot.append("%.3f with lines lw 2 dt 2 lc rgb '#555555' title 'corpus raw'" % (raw / 1e6))
                if defl:
                    plot.append("%.3f with lines lw 2 dt 3 lc rgb '#d62728' title 'each message deflated "
                                "alone, level 6'" % (defl / 1e6))
                s.append("plot " + ", ".join(plot))
                _gp(gp, s, tmp)
                if os.path.exists(png):
                    made.append(("disk.png", "disk use of the mail directory per backend at N = %d" % n))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return made, None


def _gp(gp, lines, tmp):
    script = os.path.join(tmp, "plot.gp")
    with open(script, "w") as f:
        f.write("\n".join(x for x in lines if x) + "\n")
    r = subprocess.run([gp, script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0:
        print("gnuplot: %s" % r.stderr.decode(errors="replace")[-2000:], flush=True)


# --------------------------------------------------------------------------
# the section

def section(d, made, plot_note, rel, out_dir=None):
    """out_dir/notes.md (hand-written causes and caveats, kept across runs)
    goes in after the summary."""
    runs = [d.runs[k] for k in sorted(d.runs)]
    last = runs[-1] if runs else {}
    mach = last.get("machine", {})
    L = [SECTION, ""]
    L.append("Written by `make bench` (`tests/bench/bench.py`, report by `tests/bench/report.py`); "
             "do not edit by hand: rerun, or `python3 tests/bench/bench.py report` to redraw from "
             "`docs/bench/results.jsonl`, which holds every raw measurement.")
    L.append("")
    L.append("**Machine:** %s cores, %s, %s, disk %s, kernel %s, %s; %s." % (
        mach.get("cores"), mach.get("cpu"), mach.get("mem"), mach.get("disk"), mach.get("kernel"),
        "Dovecot " + mach.get("dovecot", "?"), mach.get("date")))
    for r in runs:
        mm = r.get("machine", {})
        L.append("Run %s: N = %s, backends %s, %d repetitions (medians), login modes %s, %.0f min, "
                 "load average %s at start and %s at end%s." % (
                     r["run"], ", ".join(map(str, r["ns"])), ", ".join(r["backends"]), r["repeat"],
                     ", ".join(r["logins"]) + ("; skipped: " + ", ".join(r["skip"]) if r.get("skip") else ""),
                     mm.get("duration_s", 0) / 60, "/".join(mm.get("loadavg_start", [])),
                     "/".join(mm.get("loadavg_end", [])),
                     "; %d check(s) FAILED: %s" % (len(r["failures"]), "; ".join(r["failures"]))
                     if r.get("failures") else "; every answer checked and right")
                 + ("" if r.get("complete", True) else " (stopped before its end: only the backends "
                    "it finished are in the JSONL)"))
    L.append("")
    L.append("These figures depend on the machine (and on what else ran on it: the load averages above). "
             "Compare the **ratios**, which are what the targets are stated in, not the absolute "
             "milliseconds; time ratios are computed **above the floor F** of each backend and login mode.")
    L.append("")
    L.append("How to run: `make bench` (N = 1000,10000, all six backends, 5 repetitions, both login "
             "modes; some 30-60 min on 2 cores), or e.g. `make bench BENCH_N=100000 BENCH_BACKENDS=lmbox,mdbox "
             "BENCH_REPEAT=3 BENCH_SKIP=churn,rss,deleall` (results of other backends and N are kept in the JSONL; the JSONL is written after each backend, so a run stopped midway keeps the backends it finished); "
             "`make -C tests/bench check` is the CI smoke test (N = 300, once, answers checked, speed not judged).")
    L.append("")
    L.append("What is measured (client side over 127.0.0.1, medians of the repetitions, one warm-up first):")
    L.append("")
    L.append("- one private Dovecot 2.3 per backend and login mode (`tests/integration/lmboxtest.py`), the same "
             "configuration except `mail_location`; `+zlib` adds the zlib plugin with `zlib_save = gz`, "
             "`zlib_save_level = 6`. The *perf* login mode adds `service pop3-login { service_count = 0; "
             "process_min_avail = 2 }` and `service pop3 { process_min_avail = 2 }`, on the same mail files;")
    L.append("- the corpus is deterministic (seed in the JSONL): mostly 2-30 KB text and HTML, 2% with a "
             "100 KB-5 MB base64 attachment, and every ~90th message odd (bare LF, 8-bit, no final newline), "
             "some with leading dots;")
    L.append("- **F**: login + STAT + QUIT on an empty mailbox. **LMTP**: rounds of up to 200 messages over "
             "persistent LMTP connections (as an MTA's connection cache does), 1 client and 4 at once; the "
             "rest of the mailbox is filled the same way, through each backend's real save path;")
    L.append("- **disk**: apparent bytes (`du -sb`) and allocated blocks of the user's home (mail, Dovecot's "
             "index files, everything), and inodes. Churn ratios use allocated blocks, since freed space "
             "inside a file (hole punching) only shows there;")
    L.append("- **RETR x100 / TOP x100**: the same 100 random corpus messages in every backend, in one session, "
             "timed from the first command to the last byte (login excluded); every byte compared with the "
             "corpus (SHA-256);")
    L.append("- **QUIT commit**: (login + pipelined DELE of 10% + QUIT) minus (login + the same DELEs + RSET + "
             "QUIT), medians; the deleted messages are delivered again between repetitions. **DELE 100%**: one "
             "session, once;")
    L.append("- **after index loss**: every Dovecot index and uidlist file of the user deleted, then login + "
             "UIDL + QUIT; what it showed is reported, then `doveadm force-resync` restores the mailbox for "
             "the next repetition; for lmbox anything short of all messages with unchanged UIDLs is a failure;")
    L.append("- **churn**: a fresh user, three rounds of delivering N/2 and deleting 90% over POP3, no purge run;")
    L.append("- **RSS**: VmHWM and VmPeak of the pop3 process that serves a session doing UIDL and RETR of "
             "every message (found by its socket), read before QUIT.")
    L.append("- every answer is checked: STAT = sum of LIST = doveadm sizes, UIDLs distinct and stable, "
             "counts after each deletion, every RETR against the corpus; a wrong answer fails the run. "
             "LIST and UIDL answers are parsed and checked after the timed session ends (parsing 100k "
             "lines in Python costs the client 60-140 ms, no backend's time).")
    L.append("")
    if not d.ns:
        L.append("No results yet.")
        return L
    top = d.ns[-1]
    L += summary(d, top)
    notes = os.path.join(out_dir, "notes.md") if out_dir else None
    if notes and os.path.exists(notes):
        with open(notes) as f:
            L += [f.read().rstrip(), ""]
    for n in reversed(d.ns):
        L.append("### Ratios against the targets, N = %d" % n)
        L.append("")
        if n < 100000:
            L.append("The issue states its targets at N = 100k; at N = %d the per-message costs weigh less "
                     "against fixed costs, so ratios here are indicative." % n)
            L.append("")
        L += ratio_table(d, n)
        L.append("")
        if n != top:
            pass
    for n in d.ns:
        L.append("### Absolute figures, N = %d" % n)
        L.append("")
        L += absolute_table(d, n)
        L.append("")
    L.append("### After the loss of every Dovecot index file, N = %d" % top)
    L.append("")
    L += cold_table(d, top)
    L.append("")
    L.append("### Plots")
    L.append("")
    if plot_note:
        L.append(plot_note)
    for fn, what in made:
        L.append("![%s](%s/%s)" % (what, rel, fn))
        L.append("")
    if made:
        L.append("In the time plot, a median at or below the backend's own F (noise) is drawn at 0.01 ms.")
        L.append("")
    return L


def write_section(docs, lines):
    text = ""
    if os.path.exists(docs):
        with open(docs) as f:
            text = f.read()
    new = "\n".join(lines).rstrip() + "\n"
    if not text.strip():
        text = "# Benchmarks\n\n" + new
    else:
        ls = text.split("\n")
        try:
            i = next(k for k, ln in enumerate(ls) if ln.strip() == SECTION)
        except StopIteration:
            text = text.rstrip() + "\n\n" + new
        else:
            j = next((k for k in range(i + 1, len(ls)) if ls[k].startswith("## ")), len(ls))
            rest = "\n".join(ls[j:])
            text = "\n".join(ls[:i]) + ("\n" if i else "") + new + ("\n" + rest if rest.strip() else "")
    tmp = docs + ".tmp"
    with open(tmp, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, docs)


def write_all(out, docs):
    path = os.path.join(out, "results.jsonl")
    if not os.path.exists(path):
        print("report: %s does not exist" % path)
        return
    runs, recs = load(path)
    d = Data(runs, recs)
    made, note = plots(d, out)
    if docs:
        rel = os.path.relpath(out, os.path.dirname(os.path.abspath(docs)))
        write_section(docs, section(d, made, note, rel, out))
        print("report: wrote section %r of %s" % (SECTION, docs), flush=True)
    else:
        md = os.path.join(out, "report.md")
        with open(md, "w") as f:
            f.write("\n".join(section(d, made, note, ".")) + "\n")
        print("report: wrote %s" % md, flush=True)
