#!/usr/bin/env python3
"""scripts/data/build.sh on --extra files only (no apt, no Debian text).

Asserts what the evaluation relies on, from the files themselves: the server's
public text shares no document with any client; clients share none with each
other; a client's train/valid/heldout share none; every output document comes
from an input; the splits are non-empty and near 80/10/10; the manifest's
sizes match the files; the same seed rebuilds byte-identical output and
another seed does not; a small alpha gives skewed clients; bad input gets a
clear error and leaves no directory behind.
usage: test_build.py REPO_ROOT
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import check, finish  # noqa: E402

ROOT = sys.argv[1]
BUILD = os.path.join(ROOT, "scripts", "data", "build.sh")


def run(*args):
    env = dict(os.environ, PATH="/usr/bin:/bin")  # no apt-get needed; dpkg still absent from the flow
    r = subprocess.run(["bash", BUILD, *args], capture_output=True, text=True, env=env)
    return r.returncode, r.stdout + r.stderr


def docs_of(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [d.strip("\n") for d in text.split("\n\n") if d.strip("\n")]


def make_domain(path, rng, vocab, n_para):
    """Paragraphs of words from one vocabulary (a domain), separated by blank
    lines, each unique (it carries its own serial); one paragraph repeated to
    exercise deduplication."""
    paras = []
    for i in range(n_para):
        lines = []
        for _ in range(rng.randint(1, 4)):
            lines.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(4, 12))))
        lines[0] = f"{os.path.basename(path)} {i}: " + lines[0]
        paras.append("\n".join(lines))
    paras.append(paras[3])
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(paras) + "\n")
    return paras


def read_all(d):
    files = {}
    for root, _, names in os.walk(d):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                files[os.path.relpath(p, d)] = f.read()
    return files


tmp = tempfile.mkdtemp(prefix="fp-data-test-")
try:
    rng = random.Random(5)
    extras, inputs = [], set()
    vocabs = [["alpha", "beta", "gamma", "delta", "epsilon"], ["rouge", "vert", "bleu", "jaune", "noir", "blanc"],
              ["zahl", "wort", "satz", "buch", "seite"], ["uno", "dos", "tres", "cuatro", "cinco", "seis"]]
    for i, v in enumerate(vocabs):
        p = os.path.join(tmp, f"dom{i}.txt")
        for para in make_domain(p, rng, v, 300):
            inputs.add(para)
        extras.append(p)
    N = 4
    common = ["--no-packages", "--clients", str(N), "--client-bytes", "12000", "--public-bytes", "16000",
              "--extra", *extras]
    d1, d2, d3, d4 = (os.path.join(tmp, n) for n in ("d1", "d2", "d3", "d4"))
    rc, out = run("--out", d1, "--seed", "1", "--alpha", "0.3", *common)
    check(rc == 0, f"build d1: {out}")
    rc, out = run("--out", d2, "--seed", "1", "--alpha", "0.3", *common)
    check(rc == 0, f"build d2: {out}")
    rc, out = run("--out", d3, "--seed", "2", "--alpha", "0.3", *common)
    check(rc == 0, f"build d3: {out}")

    f1, f2, f3 = read_all(d1), read_all(d2), read_all(d3)
    want = {"public.txt", "manifest.json"} | {f"clients/{k}/{s}.txt" for k in range(N)
                                              for s in ("train", "valid", "heldout")}
    check(set(f1) == want, f"output files: {sorted(f1)}")
    check(f1 == f2, "same seed: byte-identical output")
    check(f1.get("public.txt") != f3.get("public.txt") and f1.get("clients/0/train.txt") != f3.get("clients/0/train.txt"),
          "another seed: other output")

    man = json.loads(f1["manifest.json"])
    check(len(man["domains"]) == 4 and [d["name"] for d in man["domains"]] == [f"extra-dom{i}" for i in range(4)],
          f"one domain per --extra file: {[d['name'] for d in man['domains']]}")
    check(sum(d["duplicates_dropped"] for d in man["domains"]) == 4, "the repeated paragraph of each file dropped once")

    public = docs_of(os.path.join(d1, "public.txt"))
    check(len(public) == len(set(public)), "public.txt has no repeated document")
    check(all(p in inputs for p in public), "public documents come from the inputs")
    check(man["public"]["documents"] == len(public), "manifest counts public documents")
    seen = {p: "public" for p in public}
    clients = {c["id"]: c for c in man["client_list"]}
    skews = []
    for k in range(N):
        sizes = {}
        for s in ("train", "valid", "heldout"):
            path = os.path.join(d1, "clients", str(k), f"{s}.txt")
            docs = docs_of(path)
            check(len(docs) > 0, f"client {k} {s} is not empty")
            sizes[s] = os.path.getsize(path)
            check(clients[k]["splits"][s]["documents"] == len(docs), f"manifest counts client {k} {s} documents")
            for d in docs:
                check(d in inputs, f"client {k} {s}: document not from an input: {d[:40]!r}")
                check(d not in seen, f"client {k} {s}: document also in {seen.get(d)}: {d[:40]!r}")
                seen[d] = f"client {k} {s}"
        total = sum(sizes.values())
        check(0.7 < sizes["train"] / total < 0.9 and 0.05 < sizes["heldout"] / total < 0.15,
              f"client {k} split sizes {sizes} near 80/10/10")
        mix = clients[k]["mixture"]
        check(abs(sum(mix.values()) - 1) < 1e-3, f"client {k} mixture sums to 1: {mix}")
        skews.append(max(mix.values()))
        # The client's train text holds documents only of the domains its manifest lists.
        words = set(open(os.path.join(d1, "clients", str(k), "train.txt"), encoding="utf-8").read().split())
        for i, v in enumerate(vocabs):
            present = any(w in words for w in v)
            check(present == (f"extra-dom{i}" in mix), f"client {k}: domain {i} present {present} vs manifest {mix}")
    check(max(skews) > 0.6, f"alpha 0.3 skews some client towards one domain: top shares {skews}")

    check(man["private_domains"] == [], f"--extra domains are public unless named: {man['private_domains']}")

    # A private domain gives the server nothing: no public document has its words,
    # every client document of it is still there.
    dp = os.path.join(tmp, "dp")
    rc, out = run("--out", dp, "--seed", "1", "--alpha", "0.3", "--private", "extra-dom2", *common)
    check(rc == 0, f"build with --private: {out}")
    manp = json.loads(read_all(dp)["manifest.json"])
    check(manp["private_domains"] == ["extra-dom2"], f"manifest names the private domain: {manp['private_domains']}")
    pub_words = set(open(os.path.join(dp, "public.txt"), encoding="utf-8").read().split())
    check(not pub_words & set(vocabs[2]), "no text of the private domain in public.txt")
    check(all(pub_words & set(v) for i, v in enumerate(vocabs) if i != 2), "every other domain is in public.txt")
    holders = [c for c in manp["client_list"] if "extra-dom2" in c["mixture"]]
    check(holders, "some client holds the private domain")
    rc, out = run("--out", d4, "--private", "extra-nope", *common)
    check(rc != 0 and "extra-nope" in out, f"an unknown --private domain is named: {out}")
    rc, out = run("--out", d4, "--private", ",".join(f"extra-dom{i}" for i in range(4)), *common)
    check(rc != 0 and "every domain" in out, f"all domains private refused: {out}")

    # Bad input: clear errors, nothing left behind.
    rc, out = run("--out", d4, "--no-packages", "--extra", os.path.join(tmp, "missing.txt"))
    check(rc != 0 and "missing.txt" in out, f"missing --extra file named: {out}")
    rc, out = run("--out", d4, "--no-packages", "--alpha", "0", "--extra", extras[0])
    check(rc != 0 and "--alpha" in out, f"bad alpha refused: {out}")
    rc, out = run("--out", d4, "--no-packages")
    check(rc != 0 and "--extra" in out, f"--no-packages without files refused: {out}")
    tiny = os.path.join(tmp, "tiny.txt")
    with open(tiny, "w") as f:
        f.write("one short paragraph only, far too little text\n")
    rc, out = run("--out", d4, "--no-packages", "--extra", tiny)
    check(rc != 0 and "tiny" in out, f"a domain too small is named: {out}")
    check(not os.path.exists(d4), "no output directory after a failure")
    leftovers = [n for n in os.listdir(tmp) if ".tmp." in n or ".old." in n]
    check(not leftovers, f"no temporary directories left: {leftovers}")
    notmine = os.path.join(tmp, "notmine")
    os.makedirs(notmine)
    open(os.path.join(notmine, "keep.txt"), "w").close()
    rc, out = run("--out", notmine, "--seed", "1", *common)
    check(rc != 0 and os.path.exists(os.path.join(notmine, "keep.txt")), f"a foreign non-empty --out is refused: {out}")
    # Rebuilding over an earlier corpus replaces it whole.
    rc, out = run("--out", d1, "--seed", "2", "--alpha", "0.3", *common)
    check(rc == 0 and read_all(d1) == f3, f"rebuild over an existing corpus: {out}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

finish("test_build")
