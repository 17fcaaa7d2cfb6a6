#!/usr/bin/env python3
"""scripts/aggregators.py end to end on the tiny size with 1 round (hand-run:
label slow; it pretrains a shortened base in a private cache). Checks what a
reader of the table relies on: one row per aggregator plus the DP rows of
every aggregator that admits DP, each with finite held-out and valid
perplexity for every client; the DP rows' noise multiplier is the one
`fp dp --target-epsilon` gives and the epsilon the server reported is within
the target; the default is the secure-capable, non-DP row with the lowest
mean VALID perplexity (recomputed here), and no client evaluated heldout text
during federated training; the server benchmark's numbers are in the output;
table.md lists every row, the DP line, the decision and the benchmark.
usage: test_aggregators_script.py REPO_ROOT FP_BINARY
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

root, fp = sys.argv[1], sys.argv[2]
fails = 0

AGGS = ["fedavg", "fednova", "hetlora", "flexlora", "ties", "dare+ties", "cluster:fedavg", "median", "trimmed-mean"]
SECURE = {"fedavg", "fednova", "hetlora", "flexlora", "ties", "dare+ties"}
DP = ["fedavg", "fednova", "hetlora"]


def check(cond, what):
    global fails
    if not cond:
        fails += 1
        print(f"FAIL: {what}", file=sys.stderr)


tmp = tempfile.mkdtemp(prefix="fp-aggregators-test-")
try:
    env = dict(os.environ, FP_CACHE_DIR=os.path.join(tmp, "cache"))
    out = os.path.join(tmp, "agg")
    r = subprocess.run([sys.executable, os.path.join(root, "scripts", "aggregators.py"), "--size", "tiny",
                        "--rounds", "1", "--clients", "4", "--local-steps", "2", "--base-steps", "20",
                        "--distill-steps", "4", "--client-bytes", "16384", "--lr", "0.001", "--epsilon", "8",
                        "--bench-quick", "--out", out, "--fp", fp, "--quiet"],
                       capture_output=True, text=True, env=env)
    check(r.returncode == 0, f"aggregators.py exit {r.returncode}: {r.stderr[-3000:]}")
    if r.returncode == 0:
        t = json.load(open(os.path.join(out, "table.json")))
        rows = t["rows"]
        got = [(x["aggregator"], x["dp"]) for x in rows]
        check(got == [(a, False) for a in AGGS] + [(a, True) for a in DP], f"rows {got}")
        clients = sorted(t["clients"])
        check(clients == ["0", "1", "2", "3"], f"clients {clients}")
        ranks = [t["clients"][k]["rank"] for k in clients]
        steps = [t["clients"][k]["max_steps"] for k in clients]
        check(len(set(ranks)) > 1 and len(set(steps)) > 1, f"clients differ in rank {ranks} and steps {steps}")
        for x in rows:
            check(x["secure"] == (x["aggregator"] in SECURE), f"{x['key']}: secure {x['secure']}")
            for split in ("heldout", "valid"):
                check(sorted(x[split]) == clients, f"{x['key']} {split}: clients {sorted(x[split])}")
                for k, v in x[split].items():
                    check(math.isfinite(v["ppl"]) and v["ppl"] > 1 and v["tokens"] > 0, f"{x['key']} {k}: {v}")
            m = sum(v["ppl"] for v in x["valid"].values()) / len(clients)
            check(abs(m - x["mean_valid_ppl"]) < 1e-9 * m, f"{x['key']}: mean valid ppl")
            # training never read heldout: the federated evaluation used the valid split
            sim = json.load(open(os.path.join(out, "fed", x["key"], "sim.json")))
            check(all(c["eval"].endswith("valid.txt") for c in sim["clients"]), f"{x['key']}: sim eval split")
            check(sim["server"]["aggregator"] == x["aggregator"], f"{x['key']}: server aggregator")
            check(("dp" in sim["server"]) == x["dp"], f"{x['key']}: dp in server config")
        # DP: z from the accountant CLI; epsilon reported by the server within the target
        d = subprocess.run([fp, "dp", "--q", "1", "--rounds", "1", "--target-epsilon", "8", "--json"],
                           capture_output=True, text=True)
        z = json.loads(d.stdout.strip().splitlines()[-1])["noise_multiplier"]
        check(abs(t["dp"]["noise_multiplier"] - z) < 1e-12, f"noise multiplier {t['dp']['noise_multiplier']} vs {z}")
        for x in rows:
            if x["dp"]:
                e = x.get("epsilon_reported")
                check(e is not None and 0 < e <= 8.0 + 1e-6, f"{x['key']}: reported epsilon {e}")
        # the default: argmin of mean VALID ppl over secure-capable rows without DP
        cands = [x for x in rows if x["secure"] and not x["dp"]]
        want = min(cands, key=lambda x: x["mean_valid_ppl"])["aggregator"]
        check(t["default"]["winner_valid"] == want, f"winner {t['default']['winner_valid']} vs {want}")
        check(t["default"]["recommended"] in (want, "fedavg"), f"recommended {t['default']['recommended']}")
        b = t["bench_aggregators"]["results"]
        check(b and all(y["server_s"] > 0 for y in b), "bench results with server time")
        check({y["aggregator"] for y in b} >= {"fedavg", "median", "ties"}, "bench covers the aggregators")
        md = open(os.path.join(out, "table.md")).read()
        for a in AGGS:
            check(f"| {a} | " in md, f"table.md lists {a}")
        check(md.count("| eps ") == len(DP), "table.md: one eps cell per DP row")
        check("noise multiplier z =" in md and "Default:" in md and "server s" in md, "table.md: DP, decision, bench")
        check("Default:" in r.stdout, "the table is printed")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("test_aggregators_script: " + ("FAILED" if fails else "ok"))
sys.exit(1 if fails else 0)
