#!/usr/bin/env python3
"""scripts/experiment.py's claims: from a table's mean held-out perplexities,
the share of the zero-shot to centralized gap FedProxy closes against the 80%
target, whether it beats Offsite-Tuning and FedAvg-LoRA on the uniform proxy,
and the IP check (the proxy alone after FL clearly worse than the fused LLM),
each stated in table.md (written by write() on a hand-made run) and
table.json as met or not met. Inputs are hand-made tables whose
answers follow from the definitions, including the small benchmark's last
measured rows (FedProxy 170.75, zero-shot 181.02, centralized 164.64: 62.7%).
usage: test_experiment_claims.py REPO
"""
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import check, finish  # noqa: E402

sys.path.insert(0, os.path.join(sys.argv[1], "scripts"))
import experiment  # noqa: E402

small = {"zeroshot": 181.02, "proxy_after": 171.0, "offsite": 173.65, "fedavg_uniform": 174.00,
         "fedproxy": 170.75, "central": 164.64}
cl = experiment.claims(small)
check(abs(cl["gap_closed"] - (181.02 - 170.75) / (181.02 - 164.64)) < 1e-12, f"gap {cl['gap_closed']}")
check(abs(cl["gap_closed"] - 0.627) < 5e-4, "the small benchmark's 62.7%")
check(cl["gap_target_met"] is False, "62.7% is under the 80% target")
check(cl["beats_offsite"] is True and cl["beats_fedavg_uniform"] is True, "FedProxy under both baselines")
check(abs(cl["proxy_over_fused"] - 171.0 / 170.75) < 1e-12, "proxy over fused")
check(cl["ip_check_met"] is False, "a proxy 0.15% worse is not clearly worse")
lines = experiment.claim_lines(cl)
md = "\n".join(lines)
check("62.7%" in md and "target 80%: NOT met" in md, f"gap line: {md}")
check("Offsite-Tuning in mean perplexity: met" in md, f"offsite line: {md}")
check("IP check" in md and "1.05x wanted: NOT met" in md, f"IP line: {md}")

# every claim met: exactly at the target and the margin (both inclusive)
good = {"zeroshot": 200.0, "central": 100.0, "fedproxy": 120.0, "offsite": 130.0, "fedavg_uniform": 125.0,
        "proxy_after": 126.0}
cl = experiment.claims(good)
check(abs(cl["gap_closed"] - 0.8) < 1e-12 and cl["gap_target_met"], f"80% meets the target: {cl}")
check(cl["ip_check_met"] and abs(cl["proxy_over_fused"] - 1.05) < 1e-12, f"1.05x meets the IP check: {cl}")
check(all(" NOT met" not in ln for ln in experiment.claim_lines(cl)), "no claim reported unmet")

# a baseline FedProxy does not beat, and a proxy better than the fused LLM
bad = dict(good, offsite=119.0, proxy_after=110.0)
cl = experiment.claims(bad)
check(cl["beats_offsite"] is False and cl["beats_fedavg_uniform"] is True, f"offsite beats FedProxy: {cl}")
check(cl["ip_check_met"] is False and cl["proxy_over_fused"] < 1, f"proxy better than fused: {cl}")

# missing rows leave their claims out instead of inventing them; zero-shot equal to centralized has no gap
cl = experiment.claims({"zeroshot": 150.0, "central": 150.0, "fedproxy": 140.0})
check(cl == {}, f"no gap, no baselines, no proxy row: {cl}")
check(experiment.claim_lines(cl) == [], "no sentences without claims")
cl = experiment.claims({"fedproxy": 140.0, "offsite": 150.0})
check(cl == {"beats_offsite": True}, f"only the baseline present: {cl}")

# write() end to end on a hand-made run: table.md states the claims, table.json carries them
out = tempfile.mkdtemp(prefix="fp_claims_")
try:
    a = types.SimpleNamespace(size="small", alpha=0.5, seed=1, server_momentum=0.0, server_optimizer="sgd")
    ex = types.SimpleNamespace(
        a=a, clients=["0", "1"], comm={"fedproxy": {"mean_bytes_per_client": 4096, "wall_s": 12.0}},
        results={k: {"0": {"ppl": v - 1.0, "acc": 0.1}, "1": {"ppl": v + 1.0, "acc": 0.2}} for k, v in small.items()},
        llm="llm", llm_cfg={"hidden_size": 256, "vocab_size": 2048}, L=8,
        hp=dict(experiment.SIZES["small"]), lr=3e-3, lr_search={}, middle=2, ot_layers=[0, 1, 6, 7],
        curves={"fedproxy": [(0, 180.0), (1, 171.0)]}, spans={"fedproxy": "none"}, server_lr=1.0, server_lr_search={},
        fed_search=[], aggregator="fedavg", aggregator_search={"ties": 5.19, "fedavg": 5.18}, central_lr=1e-3, central_lr_search={}, span_search={}, total_s=60.0,
        manifest={"client_list": [{"id": 0, "mixture": {}}, {"id": 1, "mixture": {}}]},
        p=lambda *parts: os.path.join(out, *parts))
    with contextlib.redirect_stdout(io.StringIO()):
        experiment.write(ex)
    md = open(os.path.join(out, "table.md")).read()
    tj = json.load(open(os.path.join(out, "table.json")))
    check("62.7% of the perplexity gap" in md and "target 80%: NOT met" in md, f"table.md gap claim: {md}")
    check("FedProxy aggregator fedavg" in md.splitlines()[0], f"table.md names FedProxy's aggregator: {md}")
    check(tj.get("fedproxy_aggregator") == "fedavg"
          and tj.get("aggregator_search_valid_loss") == {"ties": 5.19, "fedavg": 5.18},
          f"table.json carries FedProxy's aggregator and its search: {tj.get('fedproxy_aggregator')}")
    check("IP check" in md and "Offsite-Tuning in mean perplexity: met" in md, f"table.md claims: {md}")
    check(tj.get("claims", {}).get("gap_target_met") is False and tj["claims"]["beats_offsite"] is True,
          f"table.json claims: {tj.get('claims')}")
    check(abs(tj.get("fedproxy_gap_closed", 0) - 0.627) < 5e-4, "table.json keeps fedproxy_gap_closed")
finally:
    shutil.rmtree(out, ignore_errors=True)

finish("test_experiment_claims")
