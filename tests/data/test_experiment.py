#!/usr/bin/env python3
"""scripts/experiment.py end to end on a shortened tiny setting (hand-run: label
slow). Checks the outputs a reader relies on, not the numbers: every row of
the table for every client with finite perplexity and accuracy in [0, 1];
federated rows carry bytes for every client and a wall time; the local-only
row evaluates each client on its own held-out text; the learning rate, the
server step and FedProxy's aggregator came from the valid-split search;
table.md lists every row; ppl.svg is well-formed SVG with one polyline per
federated row.
usage: test_experiment.py REPO_ROOT FP_BINARY
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import xml.dom.minidom

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import check, finish  # noqa: E402

root, fp = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(root, "scripts"))
import experiment as exp_mod  # noqa: E402


tmp = tempfile.mkdtemp(prefix="fp-experiment-test-")
try:
    env = dict(os.environ, FP_CACHE_DIR=os.path.join(tmp, "cache"))
    out = os.path.join(tmp, "exp")
    r = subprocess.run([sys.executable, os.path.join(root, "scripts", "experiment.py"), "--size", "tiny",
                        "--clients", "2", "--rounds", "2", "--local-steps", "2", "--base-steps", "20",
                        "--distill-steps", "4", "--client-bytes", "16384", "--out", out, "--fp", fp, "--quiet"],
                       capture_output=True, text=True, env=env)
    check(r.returncode == 0, f"experiment.py exit {r.returncode}: {r.stderr[-3000:]}")
    if r.returncode == 0:
        t = json.load(open(os.path.join(out, "table.json")))
        keys = [row["key"] for row in t["rows"]]
        want = ["zeroshot", "proxy_before", "proxy_after", "offsite", "fedavg_uniform", "fedproxy", "central", "local"]
        check(keys == want, f"rows {keys}")
        for row in t["rows"]:
            check(sorted(row["clients"]) == ["0", "1"], f"{row['key']}: clients {sorted(row['clients'])}")
            for k, v in row["clients"].items():
                check(math.isfinite(v["ppl"]) and v["ppl"] > 1 and 0 <= v["acc"] <= 1 and v["tokens"] > 0,
                      f"{row['key']} client {k}: {v}")
            if row["key"] in ("offsite", "fedavg_uniform", "fedproxy"):
                pc = row.get("per_client", {})
                check(sorted(pc) == ["0", "1"] and all(c["sent"] > 0 and c["recv"] > 0 for c in pc.values()),
                      f"{row['key']}: bytes per client {pc}")
                check(row.get("wall_s", 0) > 0, f"{row['key']}: wall time")
                check(len(row.get("proxy_heldout_loss_by_round", [])) == 2, f"{row['key']}: one loss per round")
        # The clients' lr, the server step and FedProxy's aggregator come from full FedProxy federations
        # scored on valid: every lr at server_lr_start with the first aggregator, then every server step at
        # the best lr, then the other aggregators at the best pair; the best of each coordinate is chosen,
        # and the chosen run is FedProxy's row.
        hp = t["hyper"]
        aggs = list(exp_mod.FEDPROXY_AGGREGATORS)
        fs = {(e["lr"], e["server_lr"], e["aggregator"]): e["valid_loss"] for e in t["fed_search"]}
        lrs, slrs = hp["lr_grid"], sorted(set(hp["server_lr_grid"]) | {hp["server_lr_start"]})
        a0, s0 = aggs[0], hp["server_lr_start"]
        check(all((lr, s0, a0) in fs for lr in lrs), f"every lr federated at the start step: {fs}")
        best_lr = min(lrs, key=lambda lr: fs[(lr, s0, a0)]) if fs else None
        check(all((best_lr, s, a0) in fs for s in slrs), f"every server step federated at the best lr {best_lr}: {fs}")
        best_s = min(slrs, key=lambda s: fs[(best_lr, s, a0)]) if fs else None
        check(all((best_lr, best_s, a) in fs for a in aggs), f"every aggregator federated at the best pair: {fs}")
        check(len(fs) == len(lrs) + len(slrs) - 1 + len(aggs) - 1, f"no other federation was run: {sorted(fs)}")
        check(fs and (t["lr"], t["server_lr"]) == (best_lr, best_s)
              and t["fedproxy_aggregator"] == min(aggs, key=lambda a: fs[(best_lr, best_s, a)]),
              f"the chosen lr, step and aggregator have the lowest valid loss: {fs} -> {t['lr']}, {t['server_lr']}, "
              f"{t['fedproxy_aggregator']}")
        check(t["lr_search_valid_loss"] == {f"{lr:g}": fs[(lr, s0, a0)] for lr in lrs}
              and t["server_lr_search_valid_loss"] == {f"{s:g}": fs[(best_lr, s, a0)] for s in slrs}
              and t["aggregator_search_valid_loss"] == {a: fs[(best_lr, best_s, a)] for a in aggs},
              "table.json's lr, server_lr and aggregator searches are the federations'")
        agg = t["fedproxy_aggregator"]
        chosen = json.load(open(os.path.join(out, "fed", f"fedproxy-lr{t['lr']:g}-slr{t['server_lr']:g}"
                                             + ("" if agg == a0 else f"-{agg}"), "sim.json")))["server"]
        check(chosen["lr"] == t["lr"] and chosen["server_lr"] == t["server_lr"] and chosen["aggregator"] == agg,
              "the chosen run's config")
        cl = t["central_lr_search_valid_loss"]
        check(set(cl) == {f"{lr:g}" for lr in lrs} and min(cl, key=cl.get) == f"{t['central_lr']:g}",
              f"the centralized row's lr searched on valid, the lowest chosen: {cl} -> {t['central_lr']}")
        sp = t["span_search_valid_loss"].get("fedproxy", {})
        check(set(sp) == {"none", "spread"} and min(sp, key=sp.get) == t["fuse_span"]["fedproxy"],
              f"FedProxy's span chosen on valid: {sp} -> {t['fuse_span']}")
        check(t["fuse_span"].get("offsite") == "none" and t["fuse_span"].get("fedavg_uniform") == "none",
              f"the baselines plug in plainly: {t['fuse_span']}")
        sims = {}
        for row in ("offsite", "fedavg_uniform"):
            sv = json.load(open(os.path.join(out, "fed", row, "sim.json")))["server"]
            sims[row] = (sv.get("lr"), sv.get("server_lr"))
        check(all(v == (t["lr"], t["server_lr"]) for v in sims.values()),
              f"every federated row uses the chosen lr and server_lr: {sims}")
        md = open(os.path.join(out, "table.md")).read()
        for row in t["rows"]:
            check(row["row"] in md, f"table.md lists {row['row']}")
        svg = xml.dom.minidom.parse(os.path.join(out, "ppl.svg"))
        check(len(svg.getElementsByTagName("polyline")) == 3, "ppl.svg: one polyline per federated row")
        check("FedProxy" in r.stdout, "the table is printed")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

finish("test_experiment")
