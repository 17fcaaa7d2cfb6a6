#!/usr/bin/env python3
"""fp init: a config.json becomes a loadable random model directory.

Checks what a user relies on, read back with an independent safetensors parser
(not the project's): every tensor the config implies with HF's names and
shapes, the documented init (norms 1, weights ~ N(0, 0.02)), determinism by
seed, the config's token ids kept, the tokenizer copied, fp eval loading the
result, and clear refusals (unsupported config field, tokenizer larger than
the vocab, non-empty output) that leave nothing on disk.
usage: test_init.py FP_BINARY
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

FP = sys.argv[1]
fails = 0


def check(cond, what):
    global fails
    if not cond:
        fails += 1
        print(f"FAIL: {what}", file=sys.stderr)


def run(*args):
    r = subprocess.run([FP, *args], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + n])
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", name
        a, b = t["data_offsets"]
        data = raw[8 + n + a:8 + n + b]
        out[name] = (t["shape"], struct.unpack(f"<{len(data) // 4}f", data))
    return out


CFG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 24, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 40, "vocab_size": 300,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1,
    "eos_token_id": [0, 2], "max_position_embeddings": 512,
}

tmp = tempfile.mkdtemp(prefix="fp-init-test-")
try:
    cfg = os.path.join(tmp, "config.json")
    with open(cfg, "w") as f:
        json.dump(CFG, f)
    text = os.path.join(tmp, "text.txt")
    with open(text, "w") as f:
        f.write("the quick brown fox jumps over the lazy dog. " * 40)
    rc, out = run("tokenizer", "train", "--files", text, "--vocab-size", "280", "--out", os.path.join(tmp, "tk"))
    check(rc == 0, f"tokenizer train: {out}")
    tok = os.path.join(tmp, "tk", "tokenizer.json")

    m1, m2, m3 = (os.path.join(tmp, n) for n in ("m1", "m2", "m3"))
    rc, out = run("init", "--config", cfg, "--out", m1, "--tokenizer", tok, "--seed", "7")
    check(rc == 0, f"fp init: {out}")
    check(sorted(os.listdir(m1)) == ["config.json", "model.safetensors", "tokenizer.json"],
          f"model dir contents {os.listdir(m1)}")
    with open(tok, "rb") as a, open(os.path.join(m1, "tokenizer.json"), "rb") as b:
        check(a.read() == b.read(), "tokenizer.json copied byte for byte")
    with open(os.path.join(m1, "config.json")) as f:
        got = json.load(f)
    for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "vocab_size", "tie_word_embeddings", "bos_token_id", "max_position_embeddings"):
        check(got.get(k) == CFG[k], f"config.json {k}: {got.get(k)} != {CFG[k]}")
    check(got.get("eos_token_id") == [0, 2], f"eos_token_id kept: {got.get('eos_token_id')}")

    t = read_safetensors(os.path.join(m1, "model.safetensors"))
    C, I, V, D = 24, 40, 300, 6
    want = {"model.embed_tokens.weight": [V, C], "model.norm.weight": [C], "lm_head.weight": [V, C]}
    for l in range(3):
        p = f"model.layers.{l}."
        want.update({p + "input_layernorm.weight": [C], p + "post_attention_layernorm.weight": [C],
                     p + "self_attn.q_proj.weight": [4 * D, C], p + "self_attn.k_proj.weight": [2 * D, C],
                     p + "self_attn.v_proj.weight": [2 * D, C], p + "self_attn.o_proj.weight": [C, 4 * D],
                     p + "mlp.gate_proj.weight": [I, C], p + "mlp.up_proj.weight": [I, C],
                     p + "mlp.down_proj.weight": [C, I]})
    check(set(t) == set(want), f"tensor names: extra {set(t) - set(want)}, missing {set(want) - set(t)}")
    for name, shape in want.items():
        if name not in t:
            continue
        check(list(t[name][0]) == shape, f"{name} shape {t[name][0]} != {shape}")
        vals = t[name][1]
        if "norm" in name:
            check(all(v == 1.0 for v in vals), f"{name}: RMSNorm weights must start at 1")
        else:
            mean = sum(vals) / len(vals)
            std = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5
            check(abs(mean) < 0.004 and 0.017 < std < 0.023, f"{name}: mean {mean:.4f} std {std:.4f}, want N(0, 0.02)")

    rc, out = run("init", "--config", cfg, "--out", m2, "--seed", "7")
    check(rc == 0, f"fp init m2: {out}")
    rc, out = run("init", "--config", cfg, "--out", m3, "--seed", "8")
    check(rc == 0, f"fp init m3: {out}")
    s1, s2, s3 = (open(os.path.join(m, "model.safetensors"), "rb").read() for m in (m1, m2, m3))
    check(s1 == s2, "same seed gives the same weights")
    check(s1 != s3, "another seed gives other weights")
    check(not os.path.exists(os.path.join(m2, "tokenizer.json")), "no tokenizer copied when none is given")

    rc, out = run("eval", "--model", m1, "--text", text, "--seq", "32", "--json")
    check(rc == 0, f"fp eval loads the initialised model: {out}")
    if rc == 0:
        r = json.loads(out.strip().splitlines()[0])
        # A random init with std 0.02 predicts almost uniformly: loss near ln(V).
        check(abs(r["loss"] - 5.7038) < 0.3, f"random model's loss {r['loss']} should be near ln(300)")

    # Refusals: each names the problem and leaves no directory behind.
    bad = dict(CFG, rope_scaling={"type": "linear", "factor": 2.0})
    badp = os.path.join(tmp, "bad.json")
    with open(badp, "w") as f:
        json.dump(bad, f)
    m4 = os.path.join(tmp, "m4")
    rc, out = run("init", "--config", badp, "--out", m4)
    check(rc != 0 and "rope_scaling" in out, f"unsupported config field refused by name: rc {rc}: {out}")
    check(not os.path.exists(m4), "nothing written for a refused config")

    small = dict(CFG, vocab_size=200)
    smallp = os.path.join(tmp, "small.json")
    with open(smallp, "w") as f:
        json.dump(small, f)
    rc, out = run("init", "--config", smallp, "--out", m4, "--tokenizer", tok)
    check(rc != 0 and "vocab_size" in out, f"tokenizer larger than vocab refused: rc {rc}: {out}")
    check(not os.path.exists(m4), "nothing written for a refused tokenizer")

    rc, out = run("init", "--config", cfg, "--out", m1, "--seed", "9")
    check(rc != 0 and "not empty" in out, f"non-empty output refused: {out}")
    check(open(os.path.join(m1, "model.safetensors"), "rb").read() == s1, "refused run left the old model alone")

    rc, out = run("init", "--config", os.path.join(tmp, "nope.json"), "--out", m4)
    check(rc != 0 and "nope.json" in out, f"missing config named: {out}")
    rc, out = run("init", "--config", cfg, "--out", m4, "--seed", "x")
    check(rc != 0 and "--seed" in out, f"bad seed refused: {out}")
    leftovers = [n for n in os.listdir(tmp) if ".init." in n]
    check(not leftovers, f"no temporary directories left: {leftovers}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("test_init: " + ("FAILED" if fails else "ok"))
sys.exit(1 if fails else 0)
