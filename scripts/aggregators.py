#!/usr/bin/env python3
"""Issue 7's aggregator table: every aggregator on the non-IID benchmark, with
and without differential privacy, the default picked on the valid split.

  scripts/aggregators.py [--size tiny|small] [--rounds R] [--out DIR]
                         [--epsilon 8] [--delta 1e-5] [--dp-clip C] [--only a,b]

Reuses scripts/experiment.py (imported, not copied): the same data
(scripts/data/build.sh, Dirichlet non-IID client shards), the cached base LLM,
the FedProxy proxy (influence-selected, distilled), the learning rate picked on
the pooled valid split, fp sim, fp fuse and fp eval. Each row is R rounds of
federated LoRA on the proxy with one aggregator, fused into the LLM; the table
gives held-out perplexity per client (its domain mixture) and the mean, and the
mean valid perplexity the default is chosen on.

The clients are heterogeneous in the two ways the aggregators address, the
same for every row: LoRA ranks R, R/2, R/4, R, ... (server "overrides"; the
server's layout has rank R) and per-round step budgets of 100%, 50%, 75%,
100%, ... of the local steps (sim client "max_steps": slower devices stop
early and report the steps they took, which fednova normalises by).
Aggregators that compose with secure aggregation run under SecAgg+ (as the
FedProxy row of experiment.py does); median, trimmed-mean and cluster:fedavg
need the individual updates and run without it.

DP rows: every aggregator that admits DP (fedavg, fednova, hetlora) again with
"dp": {"clip": C, "noise_multiplier": z}, z = the smallest noise multiplier
that keeps epsilon <= --epsilon at --delta over R rounds with every client
sampled (q = 1), from `fp dp --target-epsilon`; the table reports the epsilon
the server's accountant reported after the last round.

The default aggregator is the secure-capable aggregator with the lowest mean
VALID perplexity (never heldout; FedProxy runs with secure aggregation, so
median/trimmed-mean/cluster are reported but not candidates). It is
recommended over fedavg only if it beats fedavg's mean valid perplexity by
at least --min-gain (0.1%: one seed, so smaller gaps are noise) and is lower on
a majority of clients; the script prints the decision.

Server-side time and memory of each aggregator at 100 clients with a 4 MiB
update come from `fp bench fed --aggregators --json`, run once, and go into the
output too (--no-bench skips it). Writes DIR/table.md, DIR/table.json. Python 3
standard library only.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import experiment  # noqa: E402  (scripts/experiment.py)
from experiment import Exp, last_json, mean, step  # noqa: E402

# name, runs under secure aggregation, admits DP (aggregator.h's dp_ok)
AGGREGATORS = [
    ("fedavg", True, True),
    ("fednova", True, True),
    ("hetlora", True, True),
    ("flexlora", True, False),
    ("ties", True, False),
    ("dare+ties", True, False),
    ("cluster:fedavg", False, False),
    ("median", False, False),
    ("trimmed-mean", False, False),
]
RANK_CYCLE = [1, 2, 4, 1]           # client rank = R / this
BUDGET_CYCLE = [1.0, 0.5, 0.75, 1.0]  # client step budget = local steps * this


class AggExp(Exp):
    def __init__(self, a):
        super().__init__(a)
        self.agg_rows = []

    def hetero(self):
        """Per-client rank overrides and step budgets (the same for every row)."""
        R, S = self.hp["rank"], self.hp["local_steps"]
        over, extra, self.client_setup = {}, {}, {}
        for i, k in enumerate(self.clients):
            r = max(1, R // RANK_CYCLE[i % len(RANK_CYCLE)])
            b = max(1, int(round(S * BUDGET_CYCLE[i % len(BUDGET_CYCLE)])))
            over[f"c{k}"] = {"rank": r, "batch": self.hp["batch"], "seq": self.hp["seq"]}
            # the federated evaluation during rounds reads valid text, so nothing touches heldout
            # before the final evaluation
            extra[k] = {"max_steps": b, "eval": self.split(k, "valid")}
            self.client_setup[k] = {"rank": r, "max_steps": b}
        return over, extra

    def noise_for_epsilon(self):
        out, _ = self.r.run(["dp", "--q", "1", "--rounds", str(self.hp["rounds"]), "--target-epsilon",
                             str(self.a.epsilon), "--delta", str(self.a.delta), "--json"], "fp dp --target-epsilon")
        j = last_json(out)
        return j["noise_multiplier"], j["epsilon"]

    def agg_row(self, name, secure, dp=None):
        key = name.replace(":", "-").replace("+", "-") + ("-dp" if dp else "")
        step(f"aggregator {name}{' with DP' if dp else ''} ({'secure' if secure else 'plain'})")
        over, extra = self.hetero()
        server = {"aggregator": name, "secagg": secure, "overrides": over}
        if dp:
            server["dp"] = dp
        t0 = time.time()
        adapter, rounds = self.sim(key, self.px["fedproxy"], server_extra=server, client_extra=extra)
        merged = self.fuse(self.px["fedproxy"], adapter, self.p("fed", key, "fused"))
        valid = self.eval_model(merged, split="valid")
        held = self.eval_model(merged, split="heldout")
        row = {"key": key, "aggregator": name, "secure": secure, "dp": bool(dp), "heldout": held, "valid": valid,
               "mean_heldout_ppl": mean(v["ppl"] for v in held.values()),
               "mean_valid_ppl": mean(v["ppl"] for v in valid.values()),
               "wall_s": time.time() - t0, "sim_wall_s": self.comm[key]["wall_s"],
               "mean_bytes_per_client": self.comm[key]["mean_bytes_per_client"],
               "federated_valid_loss_by_round": self.comm[key]["proxy_heldout_loss_by_round"]}
        if dp:
            rep = rounds[-1]["report"].get("dp") if rounds else None
            row["dp_config"] = dp
            row["epsilon_reported"] = rep.get("epsilon") if rep else None
            row["delta"] = rep.get("delta") if rep else None
        self.agg_rows.append(row)
        print(f"   {name}{' +DP' if dp else ''}: mean valid ppl {row['mean_valid_ppl']:.3f}, heldout "
              f"{row['mean_heldout_ppl']:.3f}", file=sys.stderr)
        return row

    def bench(self):
        self.bench_rows, self.bench_meta = None, {}
        if self.a.no_bench:
            return
        step("fp bench fed --aggregators (100 clients x 4 MiB)")
        out, dt = self.r.run(["bench", "fed", "--aggregators", "--json"] + (["--quick"] if self.a.bench_quick else []),
                             "fp bench fed --aggregators")
        j = json.loads(out[out.index("{"):])
        j = j.get("aggregators", j)
        if "results" not in j:
            raise SystemExit(f"aggregators: fp bench fed --aggregators gave no results: {j.get('error', j)}")
        self.bench_meta = {k: v for k, v in j.items() if k != "results"}
        self.bench_rows = j["results"]
        self.bench_s = dt

    def run(self):
        t_start = time.time()
        self.data()
        self.base()
        self.proxies()
        self.pick_lr()
        step("LLM zero-shot (valid and heldout)")
        self.zs = {"heldout": self.eval_model(self.llm), "valid": self.eval_model(self.llm, split="valid")}
        only = set(self.a.only.split(",")) if self.a.only else None
        for name, secure, _ in AGGREGATORS:
            if only is None or name in only:
                self.agg_row(name, secure)
        self.z, self.z_eps = None, None
        if self.a.epsilon > 0:
            self.z, self.z_eps = self.noise_for_epsilon()
            dp = {"clip": self.a.dp_clip, "noise_multiplier": self.z, "delta": self.a.delta}
            for name, secure, dp_ok in AGGREGATORS:
                if dp_ok and (only is None or name in only):
                    self.agg_row(name, secure, dp)
        self.bench()
        self.choose()
        self.total_s = time.time() - t_start
        self.write_agg()

    def choose(self):
        """The default: lowest mean valid perplexity among the secure-capable rows without DP; recommended over
        fedavg only if it beats fedavg's mean by --min-gain and is lower on most clients."""
        cands = [r for r in self.agg_rows if r["secure"] and not r["dp"]]
        self.winner = min(cands, key=lambda r: r["mean_valid_ppl"]) if cands else None
        self.overall = min((r for r in self.agg_rows if not r["dp"]), key=lambda r: r["mean_valid_ppl"],
                           default=None)
        base = next((r for r in cands if r["aggregator"] == "fedavg"), None)
        self.decision = "no candidates"
        self.recommend = None
        if self.winner and base:
            w = self.winner
            better = sum(w["valid"][k]["ppl"] < base["valid"][k]["ppl"] for k in self.clients)
            if w is base:
                self.recommend = "fedavg"
                self.decision = "fedavg has the lowest mean valid perplexity: it stays the default"
            elif (w["mean_valid_ppl"] < base["mean_valid_ppl"] * (1 - self.a.min_gain)
                  and better * 2 > len(self.clients)):
                self.recommend = w["aggregator"]
                self.decision = (f"{w['aggregator']} beats fedavg on the valid split (mean ppl "
                                 f"{w['mean_valid_ppl']:.3f} vs {base['mean_valid_ppl']:.3f}, lower on {better} of "
                                 f"{len(self.clients)} clients): make it the default")
            else:
                self.recommend = "fedavg"
                self.decision = (f"{w['aggregator']} has the lowest mean valid ppl ({w['mean_valid_ppl']:.3f} vs "
                                 f"fedavg {base['mean_valid_ppl']:.3f}, lower on {better} of {len(self.clients)} "
                                 f"clients) but not by {100 * self.a.min_gain:g}% and on most clients: not enough "
                                 "to change the default (fedavg)")

    def write_agg(self):
        cl = self.clients
        table = {"size": self.a.size, "llm": self.llm, "llm_config": self.llm_cfg, "hyper": self.hp, "lr": self.lr,
                 "lr_search_valid_loss": self.lr_search, "alpha": self.a.alpha, "seed": self.a.seed,
                 "clients": self.client_setup,
                 "mixtures": {str(c["id"]): c["mixture"] for c in self.manifest["client_list"]},
                 "zeroshot": self.zs, "rows": self.agg_rows,
                 "dp": {"target_epsilon": self.a.epsilon, "delta": self.a.delta, "clip": self.a.dp_clip,
                        "noise_multiplier": self.z, "epsilon_accountant": self.z_eps, "q": 1},
                 "default": {"winner_valid": self.winner["aggregator"] if self.winner else None,
                             "overall_winner_valid": self.overall["aggregator"] if self.overall else None,
                             "recommended": self.recommend, "decision": self.decision},
                 "bench_aggregators": {"meta": self.bench_meta, "results": self.bench_rows}, "total_s": self.total_s}
        with open(self.p("table.json"), "w") as fh:
            json.dump(table, fh, indent=1)
        mix = {str(c["id"]): c["mixture"] for c in self.manifest["client_list"]}

        def top(m):
            d = sorted(m.items(), key=lambda kv: -kv[1])[:2]
            return "/".join(f"{n} {v:.2f}" for n, v in d)

        L = [f"# Aggregators on the non-IID benchmark ({self.a.size}: LLM {self.L} layers, hidden "
             f"{self.llm_cfg['hidden_size']}; {len(cl)} clients, Dirichlet alpha {self.a.alpha}; "
             f"{self.hp['rounds']} rounds x {self.hp['local_steps']} local steps, LoRA rank "
             f"{self.hp['rank']} on the FedProxy proxy, fused into the LLM; lr {self.lr:g} chosen on valid)", "",
             "Clients (rank, step budget, main domains): " + "; ".join(
                 f"{k}: r{self.client_setup[k]['rank']}, {self.client_setup[k]['max_steps']} steps, {top(mix[k])}"
                 for k in cl), "",
             "Held-out perplexity per client; mean held-out and mean valid perplexity (the default is chosen on "
             "valid).", "",
             "| aggregator | secure | DP | " + " | ".join(f"client {k}" for k in cl)
             + " | mean heldout | mean valid | wall s |",
             "|---|---|---|" + "---|" * (len(cl) + 3)]
        zs = self.zs
        L.append("| LLM zero-shot | - | - | " + " | ".join(f"{zs['heldout'][k]['ppl']:.3f}" for k in cl)
                 + f" | {mean(v['ppl'] for v in zs['heldout'].values()):.3f} | "
                 f"{mean(v['ppl'] for v in zs['valid'].values()):.3f} | - |")
        for r in self.agg_rows:
            dp = f"eps {r['epsilon_reported']:.2f}" if r["dp"] and r.get("epsilon_reported") is not None else (
                "yes" if r["dp"] else "no")
            L.append(f"| {r['aggregator']} | {'yes' if r['secure'] else 'no'} | {dp} | "
                     + " | ".join(f"{r['heldout'][k]['ppl']:.3f}" for k in cl)
                     + f" | {r['mean_heldout_ppl']:.3f} | {r['mean_valid_ppl']:.3f} | {r['wall_s']:.0f} |")
        L.append("")
        if self.z is not None:
            L.append(f"DP: clip {self.a.dp_clip:g} (L2 per client update), noise multiplier z = {self.z:.4f} from "
                     f"`fp dp --q 1 --rounds {self.hp['rounds']} --target-epsilon {self.a.epsilon:g} --delta "
                     f"{self.a.delta:g}` (accountant: eps {self.z_eps:.3f}); the DP rows' eps is what the server "
                     "reported after the last round.")
        if self.winner:
            L.append(f"Lowest mean valid perplexity, secure-capable: **{self.winner['aggregator']}**; over all "
                     f"aggregators: {self.overall['aggregator']}.")
        L.append(f"Default: {self.decision}.")
        if self.bench_rows:
            m = self.bench_meta
            L += ["", f"Server-side time and peak extra memory per aggregator at {m.get('clients')} clients x "
                  f"{m.get('update_mib', 0):.2f} MiB update ({m.get('layout')}; `fp bench fed --aggregators "
                  "--json`; secure: all passes of SecAgg+ on the server, peak of the final unmasking/finish):", "",
                  "| aggregator | mode | passes | server s | peak extra MiB |", "|---|---|---|---|---|"]
            for b in self.bench_rows:
                mib = b.get("peak_extra_mib", b.get("finish_peak_extra_mib"))
                L.append(f"| {b.get('aggregator')} | {b.get('mode')} | {b.get('passes', '-')} | "
                         f"{fmt(b.get('server_s'))} | {fmt(mib)} |")
            if m.get("not_run"):
                L.append(f"\nNot benchmarked: {m['not_run']}.")
        L.append("")
        L.append(f"Total wall time {self.total_s:.0f} s.")
        with open(self.p("table.md"), "w") as fh:
            fh.write("\n".join(L) + "\n")
        print("\n".join(L))


def fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def main():
    ap = argparse.ArgumentParser(description="Aggregators on the non-IID benchmark: table.md, table.json")
    ap.add_argument("--size", choices=sorted(experiment.SIZES), default="tiny")
    ap.add_argument("--rounds", type=int, default=0, help="federated rounds (default: the size's)")
    ap.add_argument("--clients", type=int, default=0, help="clients (default: the size's)")
    ap.add_argument("--local-steps", type=int, default=0, help="local steps per round (default: the size's)")
    ap.add_argument("--alpha", type=float, default=0.5, help="Dirichlet alpha over domains")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base-steps", type=int, default=0, help="pretraining steps (default: the size's; for tests)")
    ap.add_argument("--distill-steps", type=int, default=0, help="proxy distillation steps (default: the size's)")
    ap.add_argument("--client-bytes", type=int, default=0, help="text per client (default: the size's)")
    ap.add_argument("--lr", type=float, default=0, help="skip the valid-split search and use this learning rate")
    ap.add_argument("--epsilon", type=float, default=8.0, help="target epsilon of the DP rows (0: no DP rows)")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--dp-clip", type=float, default=1.0, help="L2 clip of each client's update in the DP rows")
    ap.add_argument("--min-gain", type=float, default=0.001,
                    help="relative mean valid ppl gain over fedavg needed to recommend another default (0.1%%)")
    ap.add_argument("--only", default="", help="comma-separated aggregators (default: all)")
    ap.add_argument("--bench-quick", action="store_true", help="fp bench fed --aggregators --quick (tests)")
    ap.add_argument("--no-bench", action="store_true", help="skip fp bench fed --aggregators")
    ap.add_argument("--out", default=None, help="output directory (default: experiments/aggregators-<size>)")
    ap.add_argument("--fp", default=os.path.join(experiment.REPO, "build", "tools", "fp"))
    ap.add_argument("--rebuild", action="store_true", help="rebuild the data even if DIR/data exists")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    if a.rounds < 0 or a.clients < 0 or a.local_steps < 0:
        ap.error("--rounds, --clients and --local-steps must be positive")
    if a.epsilon < 0 or not (0 < a.delta < 1) or not (a.dp_clip > 0):
        ap.error("--epsilon must be >= 0, --delta in (0, 1), --dp-clip > 0")
    names = {n for n, _, _ in AGGREGATORS}
    bad = [n for n in a.only.split(",") if n and n not in names] if a.only else []
    if bad:
        ap.error(f"--only: unknown aggregator(s) {', '.join(bad)} (known: {', '.join(sorted(names))})")
    if not os.access(a.fp, os.X_OK):
        ap.error(f"{a.fp} is not an executable fp; build first or pass --fp")
    a.per_round = False
    a.out = a.out or os.path.join(experiment.REPO, "experiments", f"aggregators-{a.size}")
    AggExp(a).run()


if __name__ == "__main__":
    main()
