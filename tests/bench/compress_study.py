#!/usr/bin/env python3
"""Where does lmbox's disk use go, and what do dictionaries and the base64 transform give?

    python3 tests/bench/compress_study.py [N] [--store BUILDDIR] [--store-dict K]

For N messages of two corpora -- the benchmark's (tests/bench/bench.py
Corpus, seed 20261123) and "other", mail with different header shapes
(Received chains, DKIM/ARC, mailing-list headers, multipart/alternative
quoted-printable + HTML, English-like text) generated here -- it prints the
sum of the raw sizes and of each message compressed alone with:

    deflate-6              what lmbox codec 1 stores (zlib stream)
    deflate-9/memLevel 9   for comparison
    deflate-6 + dict       zlib preset dictionary (deflateSetDictionary) of
                           storage/lmbox-dict.c (codec 2)
    deflate-9 + dict
    b64 + d6 + dict        codec 3: deflate-6 + dict of the transformed stream
                           (storage/lmbox-xform.c, modelled here by xform():
                           canonical base64 runs stored decoded); codec 2 for
                           messages without base64, as lmbox does

split by size class (< 8 KB, 8-32 KB, 32 KB-1 MB, >= 1 MB raw), and the
lmbox per-blob costs (32-byte blob header; messages stored raw because
deflate did not shrink them).  With --store, it also writes the corpus to a
Maildir, imports it with BUILDDIR/storage/lmbox import-maildir and splits
the store's files (segments, LMDB) against the deflate-6 sum.

With --store-dict K, it also measures a per-store dictionary trained from
the first K messages of each corpus, used on the others: the most frequent
words of their text (base64 left out), or the last 32 KB of their text (what
codec 4 does, storage/lmbox-sdict.c, with K = 100), alone or ahead of
dictionary 1.  (--store imports with lmbox, so its segments include codec 4
after the 100th message.)

The dictionary is read from storage/lmbox-dict.c (the C array is the one
source of truth: a released dictionary never changes).
"""

import base64
import collections
import os
import random
import re
import shutil
import subprocess
import sys
import struct
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from bench import Corpus  # noqa: E402

BLOB_HDR = 32


def load_dict(path=os.path.join(TOP, "storage", "lmbox-dict.c")):
    """The bytes of the C string literal between the DICT-BEGIN/DICT-END markers."""
    src = open(path, encoding="ascii").read()
    body = src[src.index("/* DICT-BEGIN */"):src.index("/* DICT-END */")]
    out = bytearray()
    for lit in re.findall(r'"((?:[^"\\]|\\.)*)"', body):
        i = 0
        while i < len(lit):
            c = lit[i]
            if c == "\\":
                n = lit[i + 1]
                if n in "01234567":
                    j = i + 1
                    while j < len(lit) and j < i + 4 and lit[j] in "01234567":
                        j += 1
                    out.append(int(lit[i + 1:j], 8))
                    i = j
                    continue
                out.append({"r": 13, "n": 10, "t": 9, "\\": 92, '"': 34, "'": 39}[n])
                i += 2
            else:
                out.append(ord(c))
                i += 1
    return bytes(out)


# --------------------------------------------------------------------------
# the other corpus: other header shapes, other text

class OtherCorpus:
    WORDS = ("the of and to in is you that it he was for on are as with his they at be this have "
             "from or one had by word but not what all were we when your can said there use an each "
             "which she do how their if will up other about out many then them these so some her "
             "would make like him into time has look two more write go see number no way could people "
             "my than first water been call who oil its now find long down day did get come made may "
             "part meeting report project update invoice order account payment team please thanks "
             "regards review attached schedule tomorrow week monday friday customer service support "
             "delivery shipping password security notification newsletter offer discount").split()

    DOMAINS = ["mail.example.com", "mx1.corp.example.net", "smtp.mailer.example.io",
               "lists.example.org", "outbound.example.co.uk", "relay.example.de"]

    def __init__(self, seed):
        self.seed = seed

    def _text(self, rng, size):
        lines, total = [], 0
        while total < size:
            ws = rng.choices(self.WORDS, k=rng.randint(5, 14))
            ws[0] = ws[0].capitalize()
            ln = " ".join(ws) + rng.choice([".", ".", ",", "?", ""])
            lines.append(ln)
            total += len(ln) + 2
            if rng.random() < 0.1:
                lines.append("")
        return lines

    def _hex(self, rng, n):
        return "".join(rng.choice("0123456789abcdef") for _ in range(n))

    def _b64(self, rng, n):
        return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                       for _ in range(n))

    def message(self, i):
        rng = random.Random(self.seed * 7919 + i)
        d1, d2 = rng.sample(self.DOMAINS, 2)
        user = "".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(4, 9)))
        date = "%s, %d %s 2026 %02d:%02d:%02d %s" % (
            rng.choice(["Mon", "Tue", "Wed", "Thu", "Fri"]), rng.randint(1, 28),
            rng.choice(["Jan", "Feb", "Mar", "Apr", "Sep", "Oct"]), rng.randint(0, 23),
            rng.randint(0, 59), rng.randint(0, 59), rng.choice(["+0000", "-0700", "+0100", "+0900"]))
        subj = " ".join(rng.choices(self.WORDS, k=rng.randint(3, 9))).capitalize()
        h = []
        for k in range(rng.randint(1, 5)):
            h.append("Received: from %s (%s [10.%d.%d.%d])\r\n\tby %s (Postfix) with ESMTPS id %s\r\n"
                     "\tfor <rcpt@%s>; %s" % (d1, d1, rng.randint(0, 255), rng.randint(0, 255),
                                              rng.randint(0, 255), d2, self._hex(rng, 10).upper(), d2, date))
        if rng.random() < 0.6:
            h.append("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=s%d;\r\n"
                     "\th=from:to:subject:date:message-id:mime-version:content-type;\r\n"
                     "\tbh=%s=;\r\n\tb=%s" % (d1, rng.randint(1, 9), self._b64(rng, 43),
                                               "\r\n\t ".join(self._b64(rng, 70) for _ in range(5))))
        if rng.random() < 0.3:
            h.append("Authentication-Results: %s;\r\n\tdkim=pass header.d=%s;\r\n\tspf=pass smtp.mailfrom=%s"
                     % (d2, d1, d1))
        h.append("From: \"%s\" <%s@%s>" % (user.capitalize(), user, d1))
        h.append("To: <rcpt@%s>" % d2)
        h.append("Subject: %s" % subj)
        h.append("Date: %s" % date)
        h.append("Message-ID: <%s.%s@%s>" % (self._hex(rng, 16), self._hex(rng, 8), d1))
        if rng.random() < 0.3:
            h.append("List-Id: <news.%s>\r\nList-Unsubscribe: <https://%s/u/%s>, <mailto:unsub@%s>\r\n"
                     "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nPrecedence: bulk" % (d1, d1, self._hex(rng, 24), d1))
        if rng.random() < 0.4:
            h.append("X-Mailer: %s" % rng.choice(["Microsoft Outlook 16.0", "Apple Mail (2.3731)",
                                                 "Thunderbird 115.0", "PHPMailer 6.8.0"]))
        h.append("MIME-Version: 1.0")
        rng.shuffle(h[len(h) - 6:])
        size = int(1024 * (40 ** rng.random()))     # 1-40 KB
        lines = self._text(rng, size)
        p = rng.random()
        if p < 0.45:
            bnd = "----=_Part_%d_%s" % (rng.randint(1, 99999), self._hex(rng, 12))
            qp = "\r\n".join(lines)
            html = "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head>" \
                   "<body><div dir=\"ltr\">" + "".join(
                       "<div>%s</div>\r\n" % ln if ln else "<div><br></div>\r\n" for ln in lines) + \
                   "</div></body></html>"
            html = re.sub(r"(.{74})", "\\1=\r\n", html)
            body = ("Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n--%s\r\n"
                    "Content-Type: text/plain; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                    "%s\r\n\r\n--%s\r\nContent-Type: text/html; charset=\"UTF-8\"\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n\r\n%s\r\n\r\n--%s--\r\n"
                    % (bnd, bnd, qp, bnd, html, bnd))
        elif p < 0.97:
            body = ("Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
                    "Content-Transfer-Encoding: 7bit\r\n\r\n" + "\r\n".join(lines) + "\r\n")
        else:
            bnd = "_%s_" % self._hex(rng, 20)
            data = rng.randbytes(int(20 * 1024 * (20 ** rng.random())))
            b64 = base64.encodebytes(data).decode().replace("\n", "\r\n")
            body = ("Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n--%s\r\n"
                    "Content-Type: text/plain; charset=us-ascii\r\n\r\n%s\r\n--%s\r\n"
                    "Content-Type: application/pdf; name=\"doc%d.pdf\"\r\nContent-Disposition: attachment;"
                    " filename=\"doc%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n--%s--\r\n"
                    % (bnd, bnd, "\r\n".join(lines[:20]), bnd, i, i, b64, bnd))
        return ("\r\n".join(h) + "\r\n" + body).encode()


# --------------------------------------------------------------------------

# --------------------------------------------------------------------------
# codec 3: the transformed stream of storage/lmbox-xform.c, same rules

XF_CHUNK, XF_MIN_L, XF_MAX_L, XF_MIN_LINES = 65536, 16, 1020, 2
B64_RE = re.compile(rb"[A-Za-z0-9+/]*\Z")


def b64_line(content):
    """The bytes a base64 line's chars decode to if encoding gives them
    back exactly; (bytes, padded) or None."""
    if not content or len(content) % 4 or len(content) > XF_MAX_L:
        return None
    try:
        d = base64.b64decode(content, validate=True)
    except ValueError:
        return None
    if base64.b64encode(d) != content:
        return None
    return d, content.endswith(b"=")


def xform(m):
    """The transformed stream of message m: records of a 6-byte header
    (type, line length / 4, u32 LE length) and a payload."""
    out, lit = bytearray(), bytearray()

    def rec(t, q, payload):
        out.extend(struct.pack("<BBI", t, q, len(payload)))
        out.extend(payload)

    def lit_add(b):
        while b:
            if len(lit) == XF_CHUNK:
                rec(1, 0, lit)
                lit.clear()
            k = min(XF_CHUNK - len(lit), len(b))
            lit.extend(b[:k])
            b = b[k:]

    pieces = m.split(b"\n")
    lines = [x + b"\n" for x in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    i = 0
    while i < len(lines):
        p = lines[i]
        if p.endswith(b"\n"):
            eol = 2 if p.endswith(b"\r\n") else 1
            c = p[:-eol]
            d = b64_line(c) if XF_MIN_L <= len(c) <= XF_MAX_L else None
            if d is not None and not d[1]:
                L, run, nl, j = len(c), bytearray(d[0]), 1, i + 1
                while j < len(lines):
                    q = lines[j]
                    qe = 2 if q.endswith(b"\r\n") else 1
                    if not q.endswith(b"\n") or qe != eol or len(q) - qe > L:
                        break
                    dq = b64_line(q[:-qe])
                    if dq is None:
                        break
                    run += dq[0]
                    nl += 1
                    j += 1
                    if len(q) - qe < L or dq[1]:
                        break
                if nl >= XF_MIN_LINES:
                    if lit:
                        rec(1, 0, lit)
                        lit.clear()
                    step = XF_CHUNK // (L * 3 // 4) * (L * 3 // 4)
                    for k in range(0, len(run), step):
                        rec(1 + eol, L // 4, run[k:k + step])
                    i = j
                    continue
        lit_add(p)
        i += 1
    if not out and len(lit) <= XF_CHUNK:
        return None  # no base64 run: lmbox stores codec 2
    if lit:
        rec(1, 0, lit)
    return bytes(out)


def zlen(data, level, mem=8, zdict=None):
    c = zlib.compressobj(level, zlib.DEFLATED, 15, mem, zlib.Z_DEFAULT_STRATEGY,
                         **({"zdict": zdict} if zdict else {}))
    out = c.compress(data) + c.flush()
    if zdict:  # check it round-trips with the dictionary
        d = zlib.decompressobj(15, zdict=zdict)
        assert d.decompress(out) == data
    return len(out)


CLASSES = [("< 8 KB", 8 << 10), ("8-32 KB", 32 << 10), ("32 KB-1 MB", 1 << 20), (">= 1 MB", 1 << 62)]
COLS = ["raw", "d6", "d9m9", "d6+dict", "d9+dict", "b64+d6+dict", "lmbox1", "lmbox2", "lmbox3"]


def study(name, msgs, zdict):
    tot = {c: {k: 0 for k in COLS + ["n", "rawstored1", "rawstored2"]} for c, _ in CLASSES + [("all", 0)]}
    for m in msgs:
        r = {"raw": len(m), "d6": zlen(m, 6), "d9m9": zlen(m, 9, 9),
             "d6+dict": zlen(m, 6, 8, zdict), "d9+dict": zlen(m, 9, 9, zdict)}
        x = xform(m)
        r["b64+d6+dict"] = r["d6+dict"] if x is None else zlen(x, 6, 8, zdict)
        # what lmbox stores: blob header + min(deflated, raw) (raw when deflate does not shrink it)
        r["lmbox1"] = BLOB_HDR + min(r["d6"], r["raw"])
        r["lmbox2"] = BLOB_HDR + min(r["d6+dict"], r["raw"])
        r["lmbox3"] = BLOB_HDR + min(r["b64+d6+dict"], r["raw"])
        cls = next(c for c, lim in CLASSES if len(m) < lim)
        for c in (cls, "all"):
            for k in COLS:
                tot[c][k] += r[k]
            tot[c]["n"] += 1
            tot[c]["rawstored1"] += r["d6"] >= r["raw"]
            tot[c]["rawstored2"] += r["d6+dict"] >= r["raw"]
    print("\n## corpus %s: %d messages; dictionary %d bytes" % (name, len(msgs), len(zdict)))
    print("| class | n | raw | deflate-6 | d9/mem9 | d6+dict | d9+dict | dict vs d6 | b64+d6+dict vs d6 "
          "| lmbox codec 1 | codec 2 | codec 3 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c, _ in CLASSES + [("all", 0)]:
        t = tot[c]
        if not t["n"]:
            continue
        d6 = t["d6"]
        print("| %s | %d | %.2f MB | %.3f MB | %+.2f%% | %.3f MB | %+.2f%% | %+.2f%% (%+d B/msg) "
              "| %+.2f%% (%+d B/msg) | %+.2f%% | %+.2f%% | %+.2f%% |" % (
                  c, t["n"], t["raw"] / 1e6, d6 / 1e6, 100.0 * (t["d9m9"] / d6 - 1), t["d6+dict"] / 1e6,
                  100.0 * (t["d9+dict"] / d6 - 1), 100.0 * (t["d6+dict"] / d6 - 1),
                  (t["d6+dict"] - d6) // t["n"], 100.0 * (t["b64+d6+dict"] / d6 - 1),
                  (t["b64+d6+dict"] - d6) // t["n"], 100.0 * (t["lmbox1"] / d6 - 1),
                  100.0 * (t["lmbox2"] / d6 - 1), 100.0 * (t["lmbox3"] / d6 - 1)))
    t = tot["all"]
    print("blob headers %d B (%.2f%% of deflate-6); stored raw: %d (codec 1), %d (codec 2)"
          % (BLOB_HDR * t["n"], 100.0 * BLOB_HDR * t["n"] / t["d6"], t["rawstored1"], t["rawstored2"]))
    return tot


# --------------------------------------------------------------------------
# per-store dictionaries (a measurement only)

B64_LINE_RE = re.compile(rb"(?m)^[A-Za-z0-9+/=]{16,}\r?\n")


def words_dict(sample, size):
    """The most frequent words of the sample's text, the most frequent last."""
    cnt = collections.Counter()
    for m in sample:
        cnt.update(re.findall(rb"[A-Za-z][A-Za-z'-]+", B64_LINE_RE.sub(b"", m)))
    out = b""
    for w, c in cnt.most_common():
        if c < 2 or len(out) + len(w) + 1 > size:
            break
        out = w + b" " + out
    return out


def tail_dict(sample, size):
    """The last size bytes of the sample's text."""
    return b"".join(B64_LINE_RE.sub(b"", m) for m in sample)[-size:]


def store_dict_study(name, msgs, k, zdict):
    train, test = msgs[:k], msgs[k:]
    xs = [xform(m) or m for m in test]
    d6 = sum(zlen(m, 6) for m in test)
    small = [i for i, m in enumerate(test) if len(m) < (32 << 10)]
    d6s = sum(zlen(test[i], 6) for i in small)
    print("\n## corpus %s: per-store dictionary from the first %d messages, on the other %d"
          % (name, k, len(test)))
    print("| dictionary | bytes | b64 + d6 + dict vs d6, all | messages < 32 KB |")
    print("|---|---|---|---|")
    for dn, d in (("dict 1 (codec 3)", zdict), ("words 32 KB", words_dict(train, 32000)),
                  ("text tail 32 KB", tail_dict(train, 32000)),
                  ("words 16 KB + dict 1", words_dict(train, 16000) + zdict),
                  ("text tail 16 KB + words 16 KB", tail_dict(train, 16000) + words_dict(train, 16000))):
        sizes = [min(zlen(x, 6, 8, d), len(m)) for x, m in zip(xs, test)]
        print("| %s | %d | %+.2f%% | %+.2f%% |" % (dn, len(d), 100.0 * (sum(sizes) / d6 - 1),
                                                 100.0 * (sum(sizes[i] for i in small) / d6s - 1)))


def store_split(builddir, msgs, level):
    """Import msgs into a store and split its files."""
    tmp = tempfile.mkdtemp(prefix="lmbox-study-")
    try:
        md = os.path.join(tmp, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, sub))
        for i, m in enumerate(msgs):
            with open(os.path.join(md, "cur", "%d.M%dP1.study:2," % (1700000000 + i, i)), "wb") as f:
                f.write(m)
        st = os.path.join(tmp, "store")
        subprocess.run([os.path.join(builddir, "storage", "lmbox"), "import-maildir", md, st,
                        "--level", str(level), "--no-fsync"], check=True, stdout=subprocess.DEVNULL)
        parts = {}
        for dp, dns, fns in os.walk(st):
            for fn in fns:
                p = os.path.join(dp, fn)
                k = "segments" if "seg" in p.lower() else fn
                parts[k] = parts.get(k, 0) + os.path.getsize(p)
        return parts
    finally:
        shutil.rmtree(tmp)


def main():
    args = sys.argv[1:]
    builddir = None
    if "--store" in args:
        k = args.index("--store")
        builddir = os.path.abspath(args[k + 1])
        del args[k:k + 2]
    store_dict = None
    if "--store-dict" in args:
        k = args.index("--store-dict")
        store_dict = int(args[k + 1])
        del args[k:k + 2]
    n = int(args[0]) if args else 2000
    zdict = load_dict()
    corpora = [("bench (bench.py, seed 20261123)", [Corpus(20261123).message(i) for i in range(n)]),
               ("other (different header shapes)", [OtherCorpus(4242).message(i) for i in range(n)])]
    for name, msgs in corpora:
        tot = study(name, msgs, zdict)
        if store_dict:
            store_dict_study(name, msgs, store_dict, zdict)
        if builddir:
            d6 = tot["all"]["d6"]
            parts = store_split(builddir, msgs, 6)
            print("store (import-maildir --level 6): " + ", ".join(
                "%s %.3f MB (%+.2f%% of deflate-6)" % (k, v / 1e6, 100.0 * v / d6) for k, v in sorted(parts.items()))
                + "; total %.2f%% of deflate-6" % (100.0 * sum(parts.values()) / d6))


if __name__ == "__main__":
    main()
