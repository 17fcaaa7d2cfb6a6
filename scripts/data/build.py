#!/usr/bin/env python3
"""Builds fedproxy's evaluation corpus: domain corpora from Debian text packages
(and any plain-text files given with --extra), the server's public text, and
one domain-skewed shard per client with train/valid/heldout splits.

Python 3 standard library only; called by scripts/data/build.sh, which installs
the Debian packages first. Deterministic for a seed (and package versions, which
manifest.json records).

How the data is split (in this order):
 1. Every source is cut into documents (a fortune, a dictionary entry, four
    verses of a Bible chapter, a paragraph of an --extra file), each normalised
    (Unicode NFC, no control characters, whitespace collapsed, no blank lines
    inside a document). Exact duplicates are dropped across all domains: a
    document exists once, in the first domain that has it.
 2. Each domain's documents are shuffled with the seed and cut once, by bytes:
    the first --public-frac go to the server's side, the rest to the clients'
    side. This happens before anything else looks at the documents, so no
    document (hence no text) is ever both public and private, whatever the
    client count or alpha. The --private domains have no server side at all:
    every document of theirs is client text, as a hospital's notes or a
    company's tickets would be; the server's LLM never saw that kind of text,
    which is what federated fine-tuning is for.
 3. public.txt takes up to --public-bytes / D' from each public domain's
    server side (D' = the number of domains that are not --private).
 4. Client k draws a mixture p_k ~ Dirichlet(alpha) over the D domains and a
    budget of --client-bytes; from domain d it takes about p_k[d] * budget
    bytes of the domain's client side, documents without replacement (scaled
    down for every client alike where a small domain cannot serve the demand).
 5. Each client's documents of each domain are cut 80/10/10 by bytes into
    train/valid/heldout (so every split has the client's mixture), then each
    split is shuffled.
Files hold documents separated by one blank line ("\\n\\n"); no document contains
a blank line, so that separator is unambiguous.
"""
import argparse
import base64
import glob
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import unicodedata

SEP = "\n\n"
FORTUNES = "/usr/share/games/fortunes"
DICTD = "/usr/share/dictd"

# Debian domains: name -> (package, extractor kind, argument). One package or
# fortune category is one domain (DESIGN.md section 10).
DEBIAN_DOMAINS = [
    ("bible-kjv", "bible-kjv", "bible", None),
    ("fortunes-computers", "fortunes", "fortune", [FORTUNES + "/computers", FORTUNES + "/linux", FORTUNES + "/perl"]),
    ("fortunes-science", "fortunes", "fortune", [FORTUNES + "/science", FORTUNES + "/education"]),
    ("fortunes-songs-poems", "fortunes", "fortune", [FORTUNES + "/songs-poems"]),
    ("fortunes-people", "fortunes", "fortune", [FORTUNES + "/people", FORTUNES + "/politics", FORTUNES + "/law"]),
    ("fortunes-de", "fortunes-de", "fortune-dir", FORTUNES + "/de"),
    ("fortunes-es", "fortunes-es", "fortune-dir", FORTUNES + "/es"),
    ("dict-gcide", "dict-gcide", "dictd", "gcide"),
    ("dict-foldoc", "dict-foldoc", "dictd", "foldoc"),
    ("dict-jargon", "dict-jargon", "dictd", "jargon"),
]
# Client-only domains by default: another language, an archaic register and a
# technical dictionary, so the clients hold kinds of text the server's public
# text lacks (fixed before any benchmark ran with them; --private overrides).
DEFAULT_PRIVATE = "fortunes-de,bible-kjv,dict-foldoc"
# Fortune files that are pictures, not text.
FORTUNE_SKIP = {"asciiart", "ascii-art", "art"}


class BuildError(Exception):
    pass


def normalise(text):
    """One document's canonical form: NFC, no control characters, every line
    stripped with inner runs of spaces collapsed, empty lines removed."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(c if c == "\n" or unicodedata.category(c)[0] != "C" else " " for c in text)
    lines = [re.sub(r"[ \u00a0]+", " ", ln).strip() for ln in text.split("\n")]
    return "\n".join(ln for ln in lines if ln)


def read_text(path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # old fortune files; every byte is a character


def fortune_docs(paths):
    docs = []
    for p in paths:
        for chunk in re.split(r"(?m)^%\s*$", read_text(p)):
            docs.append(chunk)
    return docs


def fortune_dir_docs(d):
    if not os.path.isdir(d):
        raise BuildError(f"{d} is missing (is the package installed?)")
    paths = []
    for p in sorted(os.listdir(d)):
        full = os.path.join(d, p)
        if p.endswith((".dat", ".u8", "-pre")) or p in FORTUNE_SKIP or p == "off":
            continue
        if os.path.isfile(full) and not os.path.islink(full):
            paths.append(full)
    return fortune_docs(paths)


B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def b64num(s):
    v = 0
    for c in s:
        v = v * 64 + B64[c]
    return v


def dictd_docs(name):
    """Entries of a dictd database (.index: headword, base64 offset, length;
    .dict.dz: dictzip, which gzip reads whole). One entry is one document."""
    idx, dz = f"{DICTD}/{name}.index", f"{DICTD}/{name}.dict.dz"
    if not os.path.exists(idx) or not os.path.exists(dz):
        raise BuildError(f"{idx} or {dz} is missing (is dict-{name} installed?)")
    with gzip.open(dz, "rb") as f:
        raw = f.read()
    seen, docs = set(), []
    with open(idx, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
                continue
            off, n = b64num(parts[1]), b64num(parts[2])
            if (off, n) in seen or off + n > len(raw):
                continue
            seen.add((off, n))
            docs.append(raw[off:off + n].decode("utf-8", errors="replace"))
    return docs


def bible_docs():
    """The KJV through bible-kjv's `bible` reader: four verses of a chapter
    per document, verse numbers dropped, the chapter's lines rejoined."""
    try:
        out = subprocess.run(["bible", "-m", "8192", "Gen1:1-Rev22:21"], check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"cannot run `bible` (package bible-kjv): {e}")
    docs, verses = [], []

    def flush():
        for i in range(0, len(verses), 4):
            docs.append(" ".join(verses[i:i + 4]))
        verses.clear()

    for line in out.decode("utf-8", errors="replace").split("\n"):
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            verses.append(m.group(2).strip())
        elif re.match(r"^\S.* \d+$", line):  # "Genesis 1": a new chapter
            flush()
        elif line.strip() and verses:
            verses[-1] += " " + line.strip()
    flush()
    return docs


def extra_docs(path):
    """Paragraphs (blank-line separated) of a plain-text file; a paragraph over
    2 KiB is cut at line ends so that documents stay comparable in size."""
    if not os.path.isfile(path):
        raise BuildError(f"--extra {path}: no such file")
    text = read_text(path)
    docs = []
    for para in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        cur = []
        size = 0
        for ln in para.split("\n"):
            cur.append(ln)
            size += len(ln) + 1
            if size >= 2048:
                docs.append("\n".join(cur))
                cur, size = [], 0
        if cur:
            docs.append("\n".join(cur))
    return docs


def package_version(pkg):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, check=True)
        return r.stdout.decode().strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def domain_seed(seed, name, what):
    """A per-domain RNG seed that does not depend on the set or order of domains."""
    h = hashlib.sha256(f"{seed}\0{name}\0{what}".encode()).digest()
    return int.from_bytes(h[:8], "big")


def nbytes(doc):
    return len(doc.encode("utf-8"))


def take_bytes(docs, target):
    """The longest prefix of docs whose size stays within target (at least one
    document when target > 0 and any exist), and the rest."""
    out, size = [], 0
    for i, d in enumerate(docs):
        b = nbytes(d) + len(SEP)
        if out and size + b > target:
            return out, docs[i:]
        if target <= 0:
            return out, docs[i:]
        out.append(d)
        size += b
    return out, []


def split_three(docs, fracs):
    """Cuts a document list by cumulative bytes at fracs[0] and fracs[0]+fracs[1];
    each part gets at least one document when there are three or more."""
    total = sum(nbytes(d) for d in docs)
    cut1, cut2 = total * fracs[0], total * (fracs[0] + fracs[1])
    parts, acc = ([], [], []), 0
    for d in docs:
        mid = acc + nbytes(d) / 2
        parts[0 if mid < cut1 else 1 if mid < cut2 else 2].append(d)
        acc += nbytes(d)
    if len(docs) >= 3:  # keep every split non-empty: move one document at a boundary
        if not parts[2]:
            parts[2].append((parts[1] or parts[0]).pop())
        if not parts[1]:
            parts[1].append(parts[0].pop())
    return parts


def write_docs(path, docs):
    with open(path, "w", encoding="utf-8") as f:
        f.write(SEP.join(docs))
        if docs:
            f.write("\n")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration over domains (small = skewed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", nargs="+", action="extend", default=[], metavar="FILE",
                    help="plain-text files, one extra domain each")
    ap.add_argument("--no-packages", action="store_true", help="use only the --extra files")
    ap.add_argument("--domains", default=None, help="comma list of Debian domains to use (default: all)")
    ap.add_argument("--client-bytes", type=int, default=256 * 1024, help="text per client (all splits)")
    ap.add_argument("--public-bytes", type=int, default=3 * 1024 * 1024, help="size of public.txt")
    ap.add_argument("--public-frac", type=float, default=0.3, help="share of each domain reserved for the server")
    ap.add_argument("--private", default=DEFAULT_PRIVATE,
                    help="comma list of domains the server never sees (no public text from them), 'none' for "
                         f"none (default: {DEFAULT_PRIVATE}, those of them that are used)")
    ap.add_argument("--min-doc-bytes", type=int, default=16)
    a = ap.parse_args(argv)
    if a.clients < 1 or a.clients > 10000:
        ap.error("--clients must be between 1 and 10000")
    if not (a.alpha > 0):
        ap.error("--alpha must be > 0")
    if not (0 < a.public_frac < 1):
        ap.error("--public-frac must be in (0, 1)")
    if a.client_bytes < 64 or a.public_bytes < 64:
        ap.error("--client-bytes and --public-bytes must be at least 64")
    if a.no_packages and not a.extra:
        ap.error("--no-packages needs at least one --extra FILE")
    return a


def collect(a):
    """[(name, source, docs)] in a fixed order: Debian domains, then extras."""
    sources = []
    if not a.no_packages:
        wanted = set(a.domains.split(",")) if a.domains else None
        known = {d[0] for d in DEBIAN_DOMAINS}
        if wanted and wanted - known:
            raise BuildError(f"unknown --domains {sorted(wanted - known)}; known: {sorted(known)}")
        for name, pkg, kind, arg in DEBIAN_DOMAINS:
            if wanted and name not in wanted:
                continue
            if kind == "bible":
                docs = bible_docs()
            elif kind == "fortune":
                missing = [p for p in arg if not os.path.isfile(p)]
                if missing:
                    raise BuildError(f"{missing[0]} is missing (is {pkg} installed?)")
                docs = fortune_docs(arg)
            elif kind == "fortune-dir":
                docs = fortune_dir_docs(arg)
            else:
                docs = dictd_docs(arg)
            sources.append((name, {"package": pkg, "version": package_version(pkg)}, docs))
    used = {s[0] for s in sources}
    for path in a.extra:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.splitext(os.path.basename(path))[0]) or "file"
        name, i = "extra-" + base, 2
        while name in used:
            name, i = f"extra-{base}-{i}", i + 1
        used.add(name)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        sources.append((name, {"file": os.path.abspath(path), "sha256": digest}, extra_docs(path)))
    return sources


def build(a):
    sources = collect(a)
    names = [s[0] for s in sources]
    if a.private in ("", "none"):
        private = set()
    else:
        private = set(a.private.split(","))
        unknown = private - set(names)
        if unknown and a.private != DEFAULT_PRIVATE:
            raise BuildError(f"--private names {sorted(unknown)}, which are not among the domains {names}")
        private &= set(names)
    if private and private >= set(names):
        raise BuildError("--private covers every domain: the server would have no public text")
    seen = set()
    domains = []
    for name, src, raw_docs in sources:
        docs, dup = [], 0
        for d in raw_docs:
            d = normalise(d)
            if nbytes(d) < a.min_doc_bytes:
                continue
            h = hashlib.sha256(d.encode()).digest()
            if h in seen:
                dup += 1
                continue
            seen.add(h)
            docs.append(d)
        if len(docs) < 6:
            raise BuildError(f"domain {name} has only {len(docs)} usable documents (need at least 6)")
        random.Random(domain_seed(a.seed, name, "order")).shuffle(docs)
        total = sum(nbytes(d) for d in docs)
        if name in private:
            pub, priv = [], docs
        else:
            pub, priv = take_bytes(docs, a.public_frac * total)
        domains.append({"name": name, "source": src, "private": name in private, "documents": len(docs),
                        "bytes": total,
                        "duplicates_dropped": dup, "server_docs": pub, "client_docs": priv})
    D = len(domains)

    # 3. public text: an equal share of every public domain's server side.
    quota = a.public_bytes / sum(1 for dm in domains if not dm["private"])
    public = []
    for dm in domains:
        got, _ = take_bytes(dm["server_docs"], quota)
        dm["public_bytes"] = sum(nbytes(d) for d in got)
        dm["public_documents"] = len(got)
        public.extend(got)
    random.Random(domain_seed(a.seed, "", "public")).shuffle(public)

    # 4. client mixtures and allocation.
    rng = random.Random(domain_seed(a.seed, "", "dirichlet"))
    mix = []
    for _ in range(a.clients):
        g = [rng.gammavariate(a.alpha, 1.0) for _ in range(D)]
        s = sum(g)
        mix.append([x / s for x in g] if s > 0 else [1.0 / D] * D)
    client_docs = [[[] for _ in range(D)] for _ in range(a.clients)]
    for j, dm in enumerate(domains):
        supply = sum(nbytes(d) + len(SEP) for d in dm["client_docs"])
        demand = [mix[k][j] * a.client_bytes for k in range(a.clients)]
        scale = min(1.0, supply / sum(demand)) if sum(demand) > 0 else 1.0
        dm["client_scale"] = round(scale, 6)
        rest = dm["client_docs"]
        for k in range(a.clients):
            got, rest = take_bytes(rest, demand[k] * scale) if demand[k] * scale >= 1 else ([], rest)
            client_docs[k][j] = got

    # 5. splits.
    clients = []
    splits_out = []
    for k in range(a.clients):
        parts = {"train": [], "valid": [], "heldout": []}
        per_domain = {}
        for j, dm in enumerate(domains):
            tr, va, he = split_three(client_docs[k][j], (0.8, 0.1, 0.1))
            parts["train"] += tr
            parts["valid"] += va
            parts["heldout"] += he
            b = sum(nbytes(d) for d in client_docs[k][j])
            if b:
                per_domain[dm["name"]] = b
        for s in parts:
            random.Random(domain_seed(a.seed, f"client{k}", s)).shuffle(parts[s])
        total = sum(per_domain.values())
        clients.append({
            "id": k,
            "dirichlet": {domains[j]["name"]: round(mix[k][j], 6) for j in range(D)},
            "bytes_by_domain": per_domain,
            "mixture": {n: round(b / total, 6) for n, b in per_domain.items()} if total else {},
            "splits": {s: {"documents": len(v), "bytes": sum(nbytes(d) + len(SEP) for d in v)} for s, v in parts.items()},
        })
        splits_out.append(parts)
    for k, c in enumerate(clients):
        for s in ("train", "valid", "heldout"):
            if not splits_out[k][s]:
                raise BuildError(f"client {k} got no {s} documents; raise --client-bytes or give more text")
    return domains, public, clients, splits_out


def main(argv):
    a = parse_args(argv)
    try:
        domains, public, clients, splits = build(a)
    except BuildError as e:
        print(f"data/build: {e}", file=sys.stderr)
        return 1
    out = a.out.rstrip("/") or "/"
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(out) and not os.path.isfile(os.path.join(out, "manifest.json")) and os.listdir(out):
        print(f"data/build: {out} exists, is not empty and holds no manifest.json; refusing to replace it",
              file=sys.stderr)
        return 1
    # Everything is written under a temporary sibling and renamed into place,
    # so DIR is never a half-built corpus.
    tmp = f"{out}.tmp.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    write_docs(os.path.join(tmp, "public.txt"), public)
    for k, parts in enumerate(splits):
        cd = os.path.join(tmp, "clients", str(k))
        os.makedirs(cd)
        for s, docs in parts.items():
            write_docs(os.path.join(cd, s + ".txt"), docs)
    manifest = {
        "format": "fedproxy-data/1",
        "seed": a.seed, "alpha": a.alpha, "clients": a.clients,
        "client_bytes": a.client_bytes, "public_bytes_target": a.public_bytes, "public_frac": a.public_frac,
        "private_domains": [dm["name"] for dm in domains if dm["private"]],
        "split_fractions": {"train": 0.8, "valid": 0.1, "heldout": 0.1},
        "document_separator": "\\n\\n",
        "disjointness": "each domain's documents (normalised, exact duplicates dropped across domains) are "
                        "shuffled with the seed and cut once by bytes into a server side (public_frac) and a "
                        "client side before anything else (a private domain is all client side); public.txt uses "
                        "only server sides, clients only client sides, each client document goes to exactly one client and one split",
        "public": {"documents": len(public), "bytes": sum(nbytes(d) + len(SEP) for d in public)},
        "domains": [{k: v for k, v in dm.items() if k not in ("server_docs", "client_docs")} for dm in domains],
        "client_list": clients,
    }
    with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for root, _, files in os.walk(tmp):
        for fn in files:
            with open(os.path.join(root, fn), "rb") as f:
                os.fsync(f.fileno())
    old = None
    if os.path.exists(out):
        old = f"{out}.old.{os.getpid()}"
        os.rename(out, old)
    os.rename(tmp, out)
    if old:
        shutil.rmtree(old, ignore_errors=True)
    pb = manifest["public"]["bytes"]
    print(f"data/build: {out}: {len(domains)} domains, public.txt {pb / 1024:.0f} KiB, {a.clients} clients "
          f"(alpha {a.alpha}, seed {a.seed}), "
          f"{sum(sum(c['splits'][s]['bytes'] for s in c['splits']) for c in clients) / a.clients / 1024:.0f} KiB each on average",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
