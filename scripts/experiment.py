#!/usr/bin/env python3
"""FedProxy's evaluation over the fp CLI: one run builds the data, the base LLM
(cached), the proxies, runs every federated baseline with `fp sim`, fuses, and
evaluates every row on every client's held-out text.

  scripts/experiment.py [--size tiny|small] [--rounds R] [--clients N] [--out DIR]

Writes DIR/table.md, DIR/table.json and DIR/ppl.svg (mean held-out perplexity
per round of the federated rows) and prints the table. Rows:
  1 LLM zero-shot
  2 proxy alone, before and after federated fine-tuning (the IP check)
  3 Offsite-Tuning: uniform emulator distilled with LM + hidden-state MSE (no
    logit KD), LoRA only on its first 2 and last 2 layers, federated, plugged
    back (those layers map one to one onto the LLM's)
  4 FedAvg-LoRA on a uniform, undistilled proxy, plain plug-in
  5 FedProxy: influence-selected, distilled proxy, federated LoRA with secure
    aggregation (ties or fedavg) and fused (plug-in span none or spread), the
    aggregator and span chosen by pooled valid loss of the fused LLM
  6 centralized LoRA on the LLM, all clients' train text pooled (upper bound;
    its learning rate chosen on valid for its budget)
  7 local only: each client's LoRA on the FedProxy proxy, fused (FedProxy's
    span), on its own data
Every federated row uses secure aggregation (SecAgg+) so that their
communication is comparable. Hyper-parameters are the same for every row: the
clients' learning rate and the server's step size (server.json "server_lr")
are chosen through the federation itself, by pooled valid loss of the LLM
fused with FedProxy's final global adapter (never on heldout; lr first at a
fixed server step, then the server step at the best lr, then FedProxy's
aggregator at that pair; the baselines keep fedavg); the training budget
of each row is rounds x local steps per client (centralized: that times the
client count, the same number of samples). The centralized upper bound picks
its own learning rate from the same grid by pooled valid loss for its own
budget. The server's optimizer is FedAvg (server SGD) unless --server-momentum
(FedAvgM) or --server-optimizer adam|yogi (FedAdam/FedYogi, with
--server-beta1/--server-beta2/--server-tau) say otherwise, for every federated
row alike. Python 3 standard library only.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# FedProxy's aggregator candidates, the last coordinate of its valid-split search (pick_fed_hyper). The
# first is fed.h's FP_FED_FEDPROXY_AGGREGATOR (ties: the secure-capable aggregator with the lowest mean
# valid perplexity in scripts/aggregators.py --size tiny); the lr and server step are searched with it.
# fedavg is the other because on small the better of the two depends on the clients' lr (pooled valid
# loss, FedProxy's proxy, server step 1, span none; session notes of 2026-11-28): at lr 3e-3 fedavg 5.1842,
# ties 5.1944 (and 5.2009 in a rerun: secure aggregation's stochastic rounding draws fresh randomness, and
# at that lr the runs drift apart; at 1e-3 two runs agreed within 0.0002); at lr 1e-3 ties 5.1877, fedavg
# 5.1965. The baselines (Offsite-Tuning, FedAvg-LoRA) keep fedavg, as in their papers.
FEDPROXY_AGGREGATORS = ("ties", "fedavg")

SIZES = {
    # rank/alpha of LoRA, batch x seq of every training run (clients', local-only and centralized alike),
    # local steps per round, distillation steps, lr grid (the clients' and, for its own budget, the centralized
    # row's), client text size, the server step sizes tried and the one the clients' lr search runs at
    # (pick_fed_hyper).
    # Small runs batch 1 x 40 local steps: the same samples as 4 x 10, four times the sequential steps. The
    # federation matches centralized training at the federation's own number of sequential steps (40 steps
    # of batch 24 = 6 clients x 4: valid 5.2251 at lr 3e-4 against the federation's 5.2211), so with 4 x 10
    # the share of the gap it could close was capped by its 40 sequential steps (centralized 40 x 24 at its
    # best lr: 72% of the loss gap; the federation: 39%). At batch 1 x 40 (fedavg, server step 1, small-priv
    # data): lr 3e-3 valid 5.1969 (ties 5.1986), server step 2 5.2221, lr 1e-3 with ties and server step 2
    # 5.3018 (worse than zero-shot 5.2505: batch-1 updates are noisy, extrapolating them overshoots), lr 1e-2
    # 5.2363. The centralized row gains from batch 1 too (960 x 1 at lr 1e-3: 5.1614 against 240 x 4:
    # 5.1756), and it trains at the same batch, so the comparison stays like for like (session notes of
    # 2026-11-26, diagnostics d9 to d15). Tiny keeps 4 x 8: it is the README's main job and batch 1 would slow it.
    # Small runs 4 rounds: more gained little at 4 x 10 (FedProxy, lr 3e-4, server step 2: valid 5.2211
    # after 4 rounds, 5.2186 after 8), and the centralized budget grows with them.
    "tiny": dict(rank=8, alpha=16, batch=4, seq=64, local_steps=8, distill_steps=60, distill_batch=4,
                 lr_grid=[1e-4, 3e-4, 1e-3], client_bytes=48 * 1024, clients=4, rounds=6, eval_seq=64,
                 server_lr_grid=[1.0, 2.0, 4.0, 8.0], server_lr_start=2.0),
    "small": dict(rank=8, alpha=16, batch=1, seq=128, local_steps=40, distill_steps=60, distill_batch=4,
                  lr_grid=[1e-3, 3e-3, 6e-3], client_bytes=96 * 1024, clients=6, rounds=4, eval_seq=128,
                  server_lr_grid=[1.0, 2.0], server_lr_start=1.0),
}
# With --server-optimizer adam or yogi, server_lr is a per-coordinate step size (about server_lr * sign(aggregate)
# in the first round, server.json docs in include/fedproxy/fed.h), not a multiple of the clients' mean step as
# under SGD, so the sizes' SGD grids (1..8) would be steps hundreds of times the clients' own: the search uses
# this grid instead (Reddi et al. 2021 found 10^-2..10^-1.5 best for FedAdam on their tasks). Used only then.
ADAPTIVE_SERVER_LR = dict(server_lr_grid=[0.003, 0.01, 0.03], server_lr_start=0.01)


def server_opt_keys(a):
    """The server.json keys of --server-optimizer and its options, for every federated row's server config
    ({} for sgd, the default, so its configs stay as they were). Only the options given are passed; the server
    supplies the other defaults and validates the values."""
    opt = getattr(a, "server_optimizer", "sgd")  # scripts/aggregators.py has no such option
    if opt == "sgd":
        return {}
    keys = {"server_optimizer": opt}
    for k in ("server_beta1", "server_beta2", "server_tau"):
        if getattr(a, k, None) is not None:
            keys[k] = getattr(a, k)
    return keys


class Runner:
    def __init__(self, out, fp, verbose):
        self.out, self.fp, self.verbose = out, fp, verbose
        self.log = open(os.path.join(out, "commands.log"), "a")

    def run(self, args, what, capture=True):
        cmd = [self.fp, *args] if args[0] != "bash" and not args[0].endswith((".sh", ".py")) else args
        self.log.write(" ".join(cmd) + "\n")
        self.log.flush()
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.time() - t0
        if self.verbose:
            print(f"  [{dt:6.1f}s] {what}", file=sys.stderr)
        if r.returncode:
            sys.stderr.write(r.stderr[-4000:])
            raise SystemExit(f"experiment: {what} failed (exit {r.returncode}): {' '.join(cmd)}")
        return r.stdout, dt


def step(msg):
    print(f"== {msg}", file=sys.stderr, flush=True)


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in output")


class Exp:
    def __init__(self, a):
        self.a = a
        self.hp = dict(SIZES[a.size])
        if a.clients:
            self.hp["clients"] = a.clients
        if a.rounds:
            self.hp["rounds"] = a.rounds
        if a.local_steps:
            self.hp["local_steps"] = a.local_steps
        if getattr(a, "batch", 0):  # scripts/aggregators.py has no such option
            self.hp["batch"] = a.batch
        if a.distill_steps:
            self.hp["distill_steps"] = a.distill_steps
        if a.client_bytes:
            self.hp["client_bytes"] = a.client_bytes
        os.makedirs(a.out, exist_ok=True)
        self.out = os.path.abspath(a.out)
        self.r = Runner(self.out, a.fp, not a.quiet)
        self.results = {}
        self.curves = {}
        self.comm = {}
        self.spans = {}
        self.pooled_done = set()
        self.server_lr, self.server_lr_search = 1.0, {}
        self.lr, self.lr_search, self.fed_search = None, {}, []
        self.aggregator, self.aggregator_search = FEDPROXY_AGGREGATORS[0], {}
        self.central_lr, self.central_lr_search = None, {}
        self.span_search = {}

    def p(self, *parts):
        return os.path.join(self.out, *parts)

    # ---- setup ---------------------------------------------------------------
    def data(self):
        step("data")
        d = self.p("data")
        if not os.path.exists(os.path.join(d, "manifest.json")) or self.a.rebuild:
            self.r.run([os.path.join(REPO, "scripts", "data", "build.sh"), "--out", d, "--clients",
                        str(self.hp["clients"]), "--alpha", str(self.a.alpha), "--seed", str(self.a.seed),
                        "--client-bytes", str(self.hp["client_bytes"])]
                       + (["--private", self.a.private] if getattr(self.a, "private", None) is not None else []),
                       "data build")  # scripts/aggregators.py has no --private
        with open(os.path.join(d, "manifest.json")) as f:
            self.manifest = json.load(f)
        if self.manifest["clients"] != self.hp["clients"]:
            raise SystemExit(f"experiment: {d} has {self.manifest['clients']} clients, not {self.hp['clients']}; "
                             "use --rebuild or another --out")
        self.clients = [str(c["id"]) for c in self.manifest["client_list"]]
        self.split = lambda k, s: os.path.join(d, "clients", k, s + ".txt")
        self.public = os.path.join(d, "public.txt")

    def base(self):
        step(f"base LLM ({self.a.size})")
        args = [os.path.join(REPO, "scripts", "pretrain-base.sh"), "--size", self.a.size, "--data", self.p("data"),
                "--fp", self.a.fp]
        if self.a.base_steps:
            args += ["--steps", str(self.a.base_steps)]
        out, dt = self.r.run(args, "pretrain-base")
        self.llm = out.strip().splitlines()[-1]
        with open(os.path.join(self.llm, "config.json")) as f:
            self.llm_cfg = json.load(f)
        self.L = self.llm_cfg["num_hidden_layers"]
        self.middle = max(1, (self.L - 4) // 2)
        keys = self.p("keys")
        if not os.path.isdir(keys):
            self.r.run(["keygen", "--out", keys], "server keys")
        self.keys = keys

    def compress(self, name, select, distill_steps, kd_weight=1.0, hidden_weight=1.0):
        out = self.p("proxies", name)
        if os.path.exists(os.path.join(out, "proxy.json")):
            return out
        args = ["compress", "--model", self.llm, "--keys", self.keys, "--out", out, "--keep-first", "2",
                "--keep-last", "2", "--middle", str(self.middle), "--select", select, "--calib", self.public,
                "--distill-steps", str(distill_steps), "--seed", str(self.a.seed), "--json"]
        if distill_steps:
            args += ["--distill-data", self.public, "--kd-weight", str(kd_weight), "--hidden-weight",
                     str(hidden_weight), "--batch", str(self.hp["distill_batch"]), "--seq", str(self.hp["seq"])]
            # fp compress's default distillation lr (1e-4): small, so the proxy's layers stay close to
            # the LLM's they were copied from, which is what plugging deltas back in relies on
        self.r.run(args, f"compress {name}")
        return out

    def proxies(self):
        step("proxies")
        self.px = {
            "fedproxy": self.compress("fedproxy", "influence", self.hp["distill_steps"]),
            "offsite": self.compress("offsite", "uniform", self.hp["distill_steps"], kd_weight=0.0, hidden_weight=1.0),
            "uniform": self.compress("uniform", "uniform", 0),
        }
        with open(os.path.join(self.px["offsite"], "config.json")) as f:
            P = json.load(f)["num_hidden_layers"]
        self.ot_layers = ",".join(str(i) for i in sorted({0, 1, P - 2, P - 1}))

    # ---- evaluation ------------------------------------------------------------
    def eval_model(self, model, adapter=None, clients=None, split="heldout"):
        res = {}
        for k in clients or self.clients:
            args = ["eval", "--model", model, "--text", self.split(k, split), "--seq", str(self.hp["eval_seq"]),
                    "--json"]
            if adapter:
                args += ["--adapter", adapter]
            out, _ = self.r.run(args, f"eval {os.path.basename(model)} client {k} {split}")
            j = last_json(out)
            res[k] = {"ppl": j["perplexity"], "acc": j["accuracy"], "loss": j["loss"], "tokens": j["tokens"]}
        return res

    def fuse(self, proxy, adapter, out, span="none"):
        if os.path.exists(out):
            shutil.rmtree(out)
        self.r.run(["fuse", "--model", self.llm, "--proxy", proxy, "--adapter", adapter, "--keys", self.keys,
                    "--span", span, "--merge", out], f"fuse {os.path.basename(out)} span {span}")
        return out

    def valid_loss(self, model, adapter=None):
        args = ["eval", "--model", model, "--text", self.pooled("valid"), "--seq", str(self.hp["eval_seq"]), "--json"]
        if adapter:
            args += ["--adapter", adapter]
        out, _ = self.r.run(args, f"valid loss {os.path.basename(model)}")
        loss = last_json(out).get("loss")
        # a candidate that diverged (NaN, or null in JSON) loses every search instead of breaking min()
        return loss if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf

    def pick_span(self, key, proxy, adapter):
        """FedProxy's plug-in mode (fp fuse --span none|spread), chosen by pooled valid loss of the LLM
        fused with the final global adapter; held-out text is never looked at."""
        losses = {}
        for span in ("none", "spread"):
            merged = self.fuse(proxy, adapter, self.p("fed", key, f"span-{span}"), span)
            losses[span] = self.valid_loss(merged)
            shutil.rmtree(merged)
        span = min(losses, key=losses.get)
        self.span_search[key] = losses
        print(f"   span {span} (pooled valid loss by span: {losses})", file=sys.stderr)
        return span

    def train_lora(self, model, text, steps, out, lr):
        args = ["train", "--model", model, "--text", text, "--lora-rank", str(self.hp["rank"]), "--lora-alpha",
                str(self.hp["alpha"]), "--steps", str(steps), "--batch", str(self.hp["batch"]), "--seq",
                str(self.hp["seq"]), "--lr", str(lr), "--seed", str(self.a.seed), "--out", out, "--json"]
        _, dt = self.r.run(args, f"train {os.path.basename(out)}")
        return dt

    # ---- hyper-parameters ------------------------------------------------------
    def pooled(self, split):
        """Every client's split in one file, written once per run."""
        path = self.p(f"pooled-{split}.txt")
        if split in self.pooled_done:
            return path
        self.pooled_done.add(split)
        with open(path, "w", encoding="utf-8") as f:
            for k in self.clients:
                with open(self.split(k, split), encoding="utf-8") as g:
                    f.write(g.read().rstrip("\n") + "\n\n")
        return path

    def pick_lr(self):
        step("learning rate on the valid split")
        if self.a.lr:
            self.lr = self.a.lr
            self.lr_search = {}
            return
        train = self.pooled("train")
        steps = self.hp["rounds"] * self.hp["local_steps"]
        self.lr_search = {}
        for lr in self.hp["lr_grid"]:
            out = self.p("lr", f"{lr:g}")
            self.train_lora(self.px["fedproxy"], train, steps, out, lr)
            self.lr_search[f"{lr:g}"] = self.valid_loss(self.px["fedproxy"], out)
        self.lr = float(min(self.lr_search, key=self.lr_search.get))
        print(f"   lr {self.lr:g} (valid loss by lr: {self.lr_search})", file=sys.stderr)

    # ---- federated rows ----------------------------------------------------------
    def sim(self, name, proxy, layers=None, server_extra=None, client_extra=None):
        """server_extra: server.json keys that replace this row's defaults (scripts/aggregators.py: the
        aggregator, DP, per-client rank overrides); client_extra: client id -> extra sim client keys."""
        d = self.p("fed", name)
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        adapter_out = os.path.join(d, "global-adapter")
        lora = {"rank": self.hp["rank"], "alpha": self.hp["alpha"], "targets": "all"}
        if layers:
            lora["layers"] = layers
        n = len(self.clients)
        server = {"rounds": self.hp["rounds"], "secagg": True, "aggregator": "fedavg", "min_clients": n,
                  "quorum": n, "steps": self.hp["local_steps"], "lr": self.lr, "lora": lora, "proxy_dir": proxy,
                  "adapter_out": adapter_out, "state_dir": os.path.join(d, "state"), "seed": self.a.seed + 1,
                  "stage_timeout_ms": 600000, "register_timeout_ms": 120000,
                  "overrides": {f"c{k}": {"rank": self.hp["rank"], "batch": self.hp["batch"], "seq": self.hp["seq"]}
                                for k in self.clients}}
        server["server_lr"] = getattr(self, "server_lr", 1.0)
        if getattr(self.a, "server_momentum", 0):  # scripts/aggregators.py has no such option
            server["server_momentum"] = self.a.server_momentum
        server.update(server_opt_keys(self.a))
        server.update(server_extra or {})
        clients = []
        for c in self.manifest["client_list"]:
            k = str(c["id"])
            clients.append({"name": f"c{k}", "samples": c["splits"]["train"]["bytes"],
                            "data": self.split(k, "train"), "eval": self.split(k, "heldout")})
            clients[-1].update((client_extra or {}).get(k, {}))
        cfg = os.path.join(d, "sim.json")
        with open(cfg, "w") as f:
            json.dump({"server": server, "clients": clients}, f, indent=1)
        # Snapshot the global adapter after every round (rewritten atomically per round).
        cmd = [self.a.fp, "sim", "--config", cfg, "--json"]
        self.r.log.write(" ".join(cmd) + "\n")
        t0 = time.time()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(os.path.join(d, "sim.log"), "w"), text=True)
        rounds, summary = [], None
        for line in p.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            j = json.loads(line)
            if j.get("summary"):
                summary = j
                continue
            if j.get("status") == "ok":
                snap = os.path.join(d, f"round-{len(rounds) + 1}")
                if os.path.isdir(adapter_out):
                    shutil.copytree(adapter_out, snap)
                rounds.append({"report": j, "adapter": snap})
                if not self.a.quiet:
                    print(f"  round {len(rounds)}: loss {j.get('loss')} sent {j.get('bytes_sent')} B "
                          f"({time.time() - t0:.0f}s)", file=sys.stderr)
        rc = p.wait()
        wall = time.time() - t0
        if rc or not summary or summary.get("rc", 0) != 0:
            sys.stderr.write(open(os.path.join(d, "sim.log")).read()[-4000:])
            raise SystemExit(f"experiment: fp sim {name} failed (exit {rc}); see {d}/sim.log")
        comm = {c["name"][1:]: {"sent": c["bytes_sent"], "recv": c["bytes_recv"]} for c in summary["clients"]}
        self.comm[name] = {"per_client": comm, "wall_s": summary.get("wall_s", wall),
                           # each round's sample-weighted held-out loss of the proxy with the global
                           # adapter it started from (the clients' federated evaluation)
                           "proxy_heldout_loss_by_round": [r["report"].get("loss") for r in rounds],
                           "mean_bytes_per_client": sum(c["sent"] + c["recv"] for c in comm.values()) / len(comm)}
        return adapter_out, rounds

    def pick_fed_hyper(self, proxy):
        """The clients' learning rate, the server's step size (server.json "server_lr", FedOpt's server SGD;
        1 is FedAvg) and FedProxy's aggregator, chosen through the federation itself: each candidate is a full
        FedProxy run, scored by the pooled valid loss of the LLM fused (span none) with its final global
        adapter; held-out text is never looked at. Coordinate search: every lr of the size's grid at its
        server_lr_start with the first of FEDPROXY_AGGREGATORS, then every server_lr of its grid at the best
        lr, then the other aggregators at the best pair. A single pooled run of one client's budget (pick_lr,
        which scripts/aggregators.py still uses) cannot see how averaging damps each client's noise: on small
        it preferred 3e-4 by 0.01 nats, a third of what the centralized run picks for itself.
        Every federated row then uses the lr and server step, so the rows differ only in their proxy and
        aggregator. Returns the chosen run, which becomes FedProxy's row, and its server.json extra keys."""
        step("client learning rate, server step and aggregator on the valid split, through the federation")
        trials = {}

        def trial(lr, slr, agg):
            self.lr, self.server_lr = lr, slr
            key = f"fedproxy-lr{lr:g}-slr{slr:g}" + ("" if agg == FEDPROXY_AGGREGATORS[0] else f"-{agg}")
            run = self.sim(key, proxy, server_extra={"aggregator": agg})
            merged = self.fuse(proxy, run[1][-1]["adapter"], self.p("fed", key, "valid-fused"))
            trials[(lr, slr, agg)] = (key, run, self.valid_loss(merged))
            shutil.rmtree(merged)
            print(f"   lr {lr:g} server_lr {slr:g} {agg}: pooled valid loss {trials[(lr, slr, agg)][2]}",
                  file=sys.stderr)

        lrs = [self.a.lr] if self.a.lr else self.hp["lr_grid"]
        shp = ADAPTIVE_SERVER_LR if server_opt_keys(self.a) else self.hp
        slr0 = self.a.server_lr or shp["server_lr_start"]
        slrs = [self.a.server_lr] if self.a.server_lr else sorted(set(shp["server_lr_grid"]) | {slr0})
        agg0 = FEDPROXY_AGGREGATORS[0]
        for lr in lrs:
            trial(lr, slr0, agg0)
        best_lr = min(lrs, key=lambda lr: trials[(lr, slr0, agg0)][2])
        for slr in slrs:
            if (best_lr, slr, agg0) not in trials:
                trial(best_lr, slr, agg0)
        best_slr = min(slrs, key=lambda slr: trials[(best_lr, slr, agg0)][2])
        for agg in FEDPROXY_AGGREGATORS[1:]:
            trial(best_lr, best_slr, agg)
        self.lr_search = {f"{lr:g}": trials[(lr, slr0, agg0)][2] for lr in lrs}
        self.server_lr_search = {f"{slr:g}": trials[(best_lr, slr, agg0)][2] for slr in slrs}
        self.aggregator_search = {agg: trials[(best_lr, best_slr, agg)][2] for agg in FEDPROXY_AGGREGATORS}
        self.fed_search = [{"lr": lr, "server_lr": slr, "aggregator": agg, "valid_loss": t[2]}
                           for (lr, slr, agg), t in trials.items()]
        self.aggregator = min(FEDPROXY_AGGREGATORS, key=self.aggregator_search.get)
        self.lr, self.server_lr = best_lr, best_slr
        print(f"   lr {self.lr:g} (pooled valid loss at server_lr {slr0:g}, {agg0}: {self.lr_search}), server_lr "
              f"{self.server_lr:g} (at lr {best_lr:g}: {self.server_lr_search}), aggregator {self.aggregator} "
              f"({self.aggregator_search})", file=sys.stderr)
        key, run, _ = trials[(self.lr, self.server_lr, self.aggregator)]
        self.comm["fedproxy"] = self.comm[key]
        return run, {"aggregator": self.aggregator}

    def federated_row(self, key, proxy, layers=None, label="", server_extra=None, choose_span=False, run=None):
        step(f"federated: {label}")
        adapter, rounds = run or self.sim(key, proxy, layers, server_extra=server_extra)
        os.makedirs(self.p("fed", key), exist_ok=True)
        span = self.pick_span(key, proxy, rounds[-1]["adapter"]) if choose_span and rounds else "none"
        self.spans[key] = span
        curve = []
        final = None
        for i, r in enumerate(rounds):
            if i + 1 < len(rounds) and not self.a.per_round:
                continue
            merged = self.fuse(proxy, r["adapter"], self.p("fed", key, f"fused-{i + 1}"), span)
            res = self.eval_model(merged)
            curve.append((i + 1, mean([v["ppl"] for v in res.values()])))
            final = res
            if i + 1 < len(rounds):
                shutil.rmtree(merged)
        self.curves[key] = curve
        self.results[key] = final
        return adapter

    # ---- the experiment ----------------------------------------------------------
    def run(self):
        t_start = time.time()
        self.data()
        self.base()
        self.proxies()

        step("LLM zero-shot")
        self.results["zeroshot"] = self.eval_model(self.llm)
        step("proxy alone, before fine-tuning")
        self.results["proxy_before"] = self.eval_model(self.px["fedproxy"])

        run, fp_extra = self.pick_fed_hyper(self.px["fedproxy"])
        ad = self.federated_row("fedproxy", self.px["fedproxy"], label="FedProxy", server_extra=fp_extra,
                                choose_span=True, run=run)
        step("proxy alone, after federated fine-tuning")
        self.results["proxy_after"] = self.eval_model(self.px["fedproxy"], adapter=ad)
        self.federated_row("offsite", self.px["offsite"], layers=self.ot_layers, label="Offsite-Tuning")
        self.federated_row("fedavg_uniform", self.px["uniform"], label="FedAvg-LoRA, uniform undistilled proxy")

        step("centralized LoRA on the LLM (pooled train), its learning rate chosen on valid")
        # The upper bound gets its own learning rate for its own budget: with the federated rows' lr and
        # server step it would be a weaker bound than it can be (on tiny, FedProxy then beat it).
        steps = self.hp["rounds"] * self.hp["local_steps"] * len(self.clients)
        self.central_lr_search, runs = {}, {}
        for lr in ([self.a.central_lr] if self.a.central_lr else self.hp["lr_grid"]):
            out = self.p("central", f"{lr:g}")
            runs[lr] = (out, self.train_lora(self.llm, self.pooled("train"), steps, out, lr))
            self.central_lr_search[f"{lr:g}"] = self.valid_loss(self.llm, out)
        self.central_lr = min(runs, key=lambda x: self.central_lr_search[f"{x:g}"])
        print(f"   central lr {self.central_lr:g} (pooled valid loss: {self.central_lr_search})", file=sys.stderr)
        out, dt = runs[self.central_lr]
        self.results["central"] = self.eval_model(self.llm, adapter=out)
        self.comm["central"] = {"wall_s": dt}

        step("local only (each client alone, fused)")
        local, t0 = {}, time.time()
        for k in self.clients:
            out = self.p("local", k)
            self.train_lora(self.px["fedproxy"], self.split(k, "train"),
                            self.hp["rounds"] * self.hp["local_steps"], out, self.lr)
            merged = self.fuse(self.px["fedproxy"], out, self.p("local", k + "-fused"), self.spans.get("fedproxy", "none"))
            local.update(self.eval_model(merged, clients=[k]))
            shutil.rmtree(merged)
        self.results["local"] = local
        self.comm["local"] = {"wall_s": time.time() - t0}
        self.curves["zeroshot"] = [(0, mean([v["ppl"] for v in self.results["zeroshot"].values()]))]
        self.total_s = time.time() - t_start
        self.write()


ROWS = [
    ("zeroshot", "1 LLM zero-shot"),
    ("proxy_before", "2a proxy alone, before FL"),
    ("proxy_after", "2b proxy alone, after FL"),
    ("offsite", "3 Offsite-Tuning (fused)"),
    ("fedavg_uniform", "4 FedAvg-LoRA, uniform undistilled proxy (plug-in)"),
    ("fedproxy", "5 FedProxy (fused)"),
    ("central", "6 centralized LoRA on the LLM (upper bound)"),
    ("local", "7 local only (fused, own held-out)"),
]


# How this script reads issue 6's "the proxy must stay clearly worse than the fused LLM" (the issue gives no
# figure): the proxy alone after federated fine-tuning at least this much higher mean held-out perplexity than
# the fused LLM (5%: more than the spread between the federated rows on small, which lie within 2% of each
# other). GAP_TARGET is the issue's own 80%.
IP_MARGIN = 0.05
GAP_TARGET = 0.80


def claims(means):
    """The benchmark's claims checked on mean held-out perplexities by row key (lower is better); a claim
    whose rows are missing is left out. gap_closed: FedProxy's share of the zero-shot to centralized gap
    (target GAP_TARGET); beats_offsite / beats_fedavg_uniform: FedProxy's perplexity below that row's;
    proxy_over_fused: the proxy alone after FL over fused FedProxy (the IP check wants >= 1 + IP_MARGIN)."""
    z, c, f = means.get("zeroshot"), means.get("central"), means.get("fedproxy")
    out = {}
    if None not in (z, c, f) and z != c:
        out["gap_closed"] = (z - f) / (z - c)
        out["gap_target_met"] = out["gap_closed"] >= GAP_TARGET
    for k in ("offsite", "fedavg_uniform"):
        if f is not None and means.get(k) is not None:
            out["beats_" + k] = f < means[k]
    if f is not None and f > 0 and means.get("proxy_after") is not None:
        out["proxy_over_fused"] = means["proxy_after"] / f
        out["ip_check_met"] = out["proxy_over_fused"] >= 1 + IP_MARGIN
    return out


def claim_lines(cl):
    """table.md's sentences for claims(): each claim with its figure and met or not met."""
    yn = lambda b: "met" if b else "NOT met"  # noqa: E731
    lines = []
    if "gap_closed" in cl:
        lines.append(f"FedProxy closes {100 * cl['gap_closed']:.1f}% of the perplexity gap between the LLM zero-shot "
                     f"and centralized LoRA (target {100 * GAP_TARGET:.0f}%: {yn(cl['gap_target_met'])}).")
    for k, name in (("offsite", "Offsite-Tuning"), ("fedavg_uniform", "FedAvg-LoRA on the uniform proxy")):
        if "beats_" + k in cl:
            lines.append(f"FedProxy below {name} in mean perplexity: {yn(cl['beats_' + k])}.")
    if "proxy_over_fused" in cl:
        lines.append(f"IP check: the proxy alone after FL has {cl['proxy_over_fused']:.3f}x the fused LLM's mean "
                     f"perplexity (at least {1 + IP_MARGIN:.2f}x wanted: {yn(cl['ip_check_met'])}).")
    return lines


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def write(self):
    clients = self.clients
    rows = []
    for key, label in ROWS:
        res = self.results.get(key)
        if not res:
            continue
        row = {"key": key, "row": label, "clients": res,
               "mean_ppl": mean(v["ppl"] for v in res.values()), "mean_acc": mean(v["acc"] for v in res.values())}
        if key in self.comm:
            row.update({k: v for k, v in self.comm[key].items()})
        rows.append(row)
    by = {r["key"]: r for r in rows}
    cl = claims({k: r["mean_ppl"] for k, r in by.items()})
    gap = cl.get("gap_closed")
    table = {"size": self.a.size, "llm": self.llm, "llm_config": self.llm_cfg, "hyper": self.hp, "lr": self.lr,
             "lr_search_valid_loss": self.lr_search, "alpha": self.a.alpha, "seed": self.a.seed,
             "middle": self.middle, "offsite_lora_layers": self.ot_layers, "rows": rows, "curves": self.curves,
             "fedproxy_gap_closed": gap, "claims": cl, "fuse_span": self.spans, "server_lr": self.server_lr,
             "server_lr_search_valid_loss": self.server_lr_search, "fed_search": self.fed_search,
             "fedproxy_aggregator": self.aggregator, "aggregator_search_valid_loss": self.aggregator_search,
             "server_momentum": getattr(self.a, "server_momentum", 0.0),
             "server_optimizer": getattr(self.a, "server_optimizer", "sgd"),
             "server_optimizer_options": {k: v for k, v in server_opt_keys(self.a).items() if k != "server_optimizer"},
             "central_lr": self.central_lr, "central_lr_search_valid_loss": self.central_lr_search, "span_search_valid_loss": self.span_search, "total_s": self.total_s,
             "mixtures": {str(c["id"]): c["mixture"] for c in self.manifest["client_list"]}}
    with open(self.p("table.json"), "w") as fh:
        json.dump(table, fh, indent=1)
    lines = [f"# FedProxy benchmark ({self.a.size}: LLM {self.L} layers, hidden {self.llm_cfg['hidden_size']}, "
             f"vocab {self.llm_cfg['vocab_size']}; {len(clients)} clients, alpha {self.a.alpha}, "
             f"{self.hp['rounds']} rounds x {self.hp['local_steps']} local steps of batch {self.hp['batch']} x seq "
             f"{self.hp['seq']}, LoRA rank {self.hp['rank']}, "
             f"lr {self.lr:g}, server lr {self.server_lr:g}"
             + "".join(f", {k.replace('_', ' ')} {v}" for k, v in server_opt_keys(self.a).items()) + f", FedProxy aggregator {self.aggregator}, span {self.spans.get('fedproxy', 'none')} "
             + (f", centralized lr {self.central_lr:g} " if self.central_lr else "") + "chosen on valid)", "",
             "Held-out perplexity (accuracy) per client; mean over clients.", "",
             "| row | " + " | ".join(f"client {k}" for k in clients) + " | mean ppl | mean acc | bytes/client | wall s |",
             "|---|" + "---|" * (len(clients) + 4)]
    for r in rows:
        cells = [f"{r['clients'][k]['ppl']:.2f} ({r['clients'][k]['acc']:.3f})" if k in r["clients"] else "-"
                 for k in clients]
        b, w = r.get("mean_bytes_per_client"), r.get("wall_s")
        lines.append(f"| {r['row']} | " + " | ".join(cells) + f" | {r['mean_ppl']:.2f} | {r['mean_acc']:.3f} | "
                     + (f"{b / 1024:.0f} KiB" if b is not None else "-") + " | "
                     + (f"{w:.0f}" if w is not None else "-") + " |")
    lines.append("")
    lines += claim_lines(cl)
    for k in ("offsite", "fedavg_uniform"):
        if k in by and "fedproxy" in by:
            lines.append(f"FedProxy vs {by[k]['row'][2:]}: mean ppl {by['fedproxy']['mean_ppl']:.2f} vs "
                         f"{by[k]['mean_ppl']:.2f}.")
    lines.append(f"Total wall time {self.total_s:.0f} s.")
    with open(self.p("table.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(self.p("ppl.svg"), "w") as fh:
        fh.write(svg(self.curves, self.hp["rounds"], by))
    print("\n".join(lines))


Exp.write = write


def svg(curves, rounds, by):
    """Mean held-out perplexity per round, one polyline per federated row, with
    the zero-shot and centralized levels as dashed lines."""
    W, H, L, R, T, B = 640, 400, 70, 220, 30, 50
    series = {k: v for k, v in curves.items() if k != "zeroshot" and v}
    names = {"fedproxy": "FedProxy", "offsite": "Offsite-Tuning", "fedavg_uniform": "FedAvg-LoRA uniform"}
    colors = {"fedproxy": "#d62728", "offsite": "#1f77b4", "fedavg_uniform": "#2ca02c"}
    levels = {}
    if "zeroshot" in by:
        levels["LLM zero-shot"] = (by["zeroshot"]["mean_ppl"], "#7f7f7f")
    if "central" in by:
        levels["centralized LoRA"] = (by["central"]["mean_ppl"], "#9467bd")
    ys = [y for v in series.values() for _, y in v] + [v[0] for v in levels.values()]
    if not ys:
        ys = [1.0]
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-9:
        hi = lo + 1
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    xmax = max(1, rounds)
    X = lambda r: L + (W - L - R) * (r / xmax)
    Y = lambda p: T + (H - T - B) * (1 - (p - lo) / (hi - lo))
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2 - 80}" y="18" font-size="14">Mean held-out perplexity per round</text>',
         f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
         f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
         f'<text x="{(L + W - R) / 2 - 20}" y="{H - 12}">round</text>',
         f'<text x="14" y="{T + (H - T - B) / 2}" transform="rotate(-90 14 {T + (H - T - B) / 2})">perplexity</text>']
    for r in range(0, xmax + 1):
        o.append(f'<line x1="{X(r):.1f}" y1="{H - B}" x2="{X(r):.1f}" y2="{H - B + 5}" stroke="black"/>'
                 f'<text x="{X(r) - 4:.1f}" y="{H - B + 18}">{r}</text>')
    for i in range(6):
        p = lo + (hi - lo) * i / 5
        o.append(f'<line x1="{L - 5}" y1="{Y(p):.1f}" x2="{L}" y2="{Y(p):.1f}" stroke="black"/>'
                 f'<text x="{L - 8}" y="{Y(p) + 4:.1f}" text-anchor="end">{p:.1f}</text>')
    ly = T + 10
    for name, (p, col) in levels.items():
        o.append(f'<line x1="{L}" y1="{Y(p):.1f}" x2="{W - R}" y2="{Y(p):.1f}" stroke="{col}" stroke-dasharray="6,4"/>')
        o.append(f'<line x1="{W - R + 15}" y1="{ly}" x2="{W - R + 40}" y2="{ly}" stroke="{col}" stroke-dasharray="6,4"/>'
                 f'<text x="{W - R + 45}" y="{ly + 4}">{name} ({p:.2f})</text>')
        ly += 20
    z = levels.get("LLM zero-shot", (None,))[0]
    for k, pts in series.items():
        col = colors.get(k, "black")
        if z is not None:
            pts = [(0, z)] + [q for q in pts if q[0] > 0]
        path = " ".join(f"{X(r):.1f},{Y(p):.1f}" for r, p in pts)
        o.append(f'<polyline points="{path}" fill="none" stroke="{col}" stroke-width="2"/>')
        for r, p in pts:
            o.append(f'<circle cx="{X(r):.1f}" cy="{Y(p):.1f}" r="3" fill="{col}"/>')
        o.append(f'<line x1="{W - R + 15}" y1="{ly}" x2="{W - R + 40}" y2="{ly}" stroke="{col}" stroke-width="2"/>'
                 f'<text x="{W - R + 45}" y="{ly + 4}">{names.get(k, k)} ({pts[-1][1]:.2f})</text>')
        ly += 20
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    ap = argparse.ArgumentParser(description="FedProxy evaluation: table.md, table.json, ppl.svg")
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--rounds", type=int, default=0, help="federated rounds (default: the size's)")
    ap.add_argument("--clients", type=int, default=0, help="clients (default: the size's)")
    ap.add_argument("--local-steps", type=int, default=0, help="local steps per round (default: the size's)")
    ap.add_argument("--batch", type=int, default=0,
                    help="sequences per training step of every LoRA run, clients' and centralized (default: the size's)")
    ap.add_argument("--alpha", type=float, default=0.5, help="Dirichlet alpha over domains")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--private", default=None,
                    help="domains the server never sees (scripts/data/build.sh --private; default: its default)")
    ap.add_argument("--base-steps", type=int, default=0, help="pretraining steps (default: the size's; for tests)")
    ap.add_argument("--distill-steps", type=int, default=0, help="proxy distillation steps (default: the size's)")
    ap.add_argument("--client-bytes", type=int, default=0, help="text per client (default: the size's)")
    ap.add_argument("--lr", type=float, default=0, help="skip the valid-split search and use this learning rate")
    ap.add_argument("--central-lr", type=float, default=0,
                    help="skip the valid-split search of the centralized row's learning rate and use this one")
    ap.add_argument("--server-lr", type=float, default=0,
                    help="skip the valid-split search of the server's step size and use this one")
    ap.add_argument("--server-momentum", type=float, default=0.0,
                    help="server.json \"server_momentum\" (FedAvgM) for every federated row (default 0: none)")
    ap.add_argument("--server-optimizer", choices=["sgd", "adam", "yogi"], default="sgd",
                    help="server.json \"server_optimizer\" for every federated row: sgd (default: FedAvg, or FedAvgM "
                         "with --server-momentum), adam or yogi (FedAdam/FedYogi; the server_lr search then uses "
                         f"{ADAPTIVE_SERVER_LR['server_lr_grid']})")
    ap.add_argument("--server-beta1", type=float, default=None,
                    help="server.json \"server_beta1\" (adam/yogi only; default the server's, 0.9)")
    ap.add_argument("--server-beta2", type=float, default=None,
                    help="server.json \"server_beta2\" (adam/yogi only; default the server's, 0.99)")
    ap.add_argument("--server-tau", type=float, default=None,
                    help="server.json \"server_tau\", the adaptivity epsilon (adam/yogi only; default the server's, 1e-3)")
    ap.add_argument("--out", default=None, help="output directory (default: experiments/<size>)")
    ap.add_argument("--fp", default=os.path.join(REPO, "build", "tools", "fp"))
    ap.add_argument("--per-round", action=argparse.BooleanOptionalAction, default=True,
                    help="fuse and evaluate after every round for the plot (default on)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the data even if DIR/data exists")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    if a.rounds < 0 or a.clients < 0 or a.local_steps < 0:
        ap.error("--rounds, --clients and --local-steps must be positive")
    if not os.access(a.fp, os.X_OK):
        ap.error(f"{a.fp} is not an executable fp; build first or pass --fp")
    if a.server_optimizer == "sgd" and any(x is not None for x in (a.server_beta1, a.server_beta2, a.server_tau)):
        ap.error("--server-beta1, --server-beta2 and --server-tau need --server-optimizer adam or yogi")
    if a.server_optimizer != "sgd" and a.server_momentum:
        ap.error("--server-momentum is FedAvgM (--server-optimizer sgd); adam and yogi keep their own (--server-beta1)")
    a.out = a.out or os.path.join(REPO, "experiments", a.size)
    Exp(a).run()


if __name__ == "__main__":
    main()
