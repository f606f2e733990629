#!/usr/bin/python3
"""scripts/load_export.py — read a `ttt export` directory (model.safetensors + config.json in the
schema of the official TTT PyTorch model, ttt-lm-pytorch ttt.py, or of HF Llama) with numpy, and,
where torch is installed, rebuild the independent PyTorch reference model of scripts/golden from
it and compute logits.

  /usr/bin/python3 scripts/load_export.py DIR                      # schema, sizes, tensor count (numpy only)
  /usr/bin/python3 scripts/load_export.py DIR --ids 5,17,3,9        # logits of one sequence (needs torch)
  /usr/bin/python3 scripts/load_export.py DIR --inputs ids.safetensors --out logits.safetensors [--dtype float64]

--inputs holds an int64 tensor "ids" [B, T]; --out gets "logits" [B, T, V] from the scripts/golden
reference (ttt_lm_reference.forward for TTT models, transformer_reference.forward for Llama), and
for Llama exports also "logits_hf": the same model computed directly on the exported tensors the
way HF's LlamaForCausalLM does (rotate-half RoPE on the permuted q/k rows), which checks that the
export is a Llama checkpoint and not only something this script can undo.

As a module:
  read_safetensors(path) -> {name: numpy array};  write_safetensors(path, {name: numpy array})
  load_export(dir) -> (config dict, {external name: array})
  reference_params(config, tensors) -> (golden config, {our name: array})   # the layouts undone
  reference_logits(dir, ids, dtype) -> numpy logits                          # torch

The name mapping is written here from the two schemas (ttt.py's modules, transformers'
modeling_llama.py), independently of the C++ exporter (trainer/export_schema.cpp).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# --- safetensors (8-byte header length, JSON header, raw little-endian data) ------------------------

_NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
       "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[b:end]
        if e["dtype"] == "BF16":  # bfloat16 = the high half of a float32
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, dtype=_NP[e["dtype"]])
        out[name] = a.reshape(e["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    header, chunks, at = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        a = a.astype(a.dtype.newbyteorder("<"))
        code = {"float64": "F64", "float32": "F32", "int64": "I64", "int32": "I32"}[a.dtype.name]
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [at, at + a.nbytes]}
        chunks.append(a.tobytes())
        at += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    os.replace(path + ".tmp", path)


# --- export directory -> the reference model's parameters ----------------------------------------

def load_export(directory):
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    single = os.path.join(directory, "model.safetensors")
    if os.path.exists(single):
        tensors = read_safetensors(single)
    else:  # sharded (model.safetensors.index.json)
        with open(os.path.join(directory, "model.safetensors.index.json")) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        tensors = {}
        for s in shards:
            tensors.update(read_safetensors(os.path.join(directory, s)))
    return config, tensors


def golden_config(config):
    """The config dict of scripts/golden (our key names) for an export's config.json."""
    kind = config["model_type"]
    D, nh = config["hidden_size"], config["num_attention_heads"]
    c = {"vocab_size": config["vocab_size"], "d_model": D, "n_layers": config["num_hidden_layers"], "n_heads": nh,
         "d_ff": config["intermediate_size"], "rope_theta": float(config.get("rope_theta", 10000.0)),
         "norm_eps": float(config.get("rms_norm_eps", 1e-6)), "tie_embeddings": config.get("tie_word_embeddings", kind == "ttt")}
    if kind == "llama":
        assert config.get("num_key_value_heads", nh) == nh, "grouped-query attention is not supported"
        c.update(mixer="attention", backbone="transformer", conv_width=4)
    elif kind == "ttt":
        flags = {config.get(k, False) for k in ("pre_conv", "share_qk", "use_gate")}
        assert len(flags) == 1, "pre_conv, share_qk and use_gate must agree (Mamba or Transformer backbone)"
        c.update(mixer="ttt_" + config.get("ttt_layer_type", "linear"), backbone="mamba" if flags.pop() else "transformer",
                 conv_width=config.get("conv_kernel", 4), mini_batch=config.get("mini_batch_size", 16),
                 base_lr=float(config.get("ttt_base_lr", 1.0)), ln_eps=1e-6)
    else:
        raise ValueError("model_type %r: expected 'ttt' or 'llama'" % kind)
    return c


def unpermute_rope_rows(w, n_heads):
    """HF Llama q/k rows (per head: the d/2 first elements of each pair, then the second ones) back
    to adjacent pairs (x[2i], x[2i+1]): row j * d/2 + i -> 2i + j."""
    rows, cols = w.shape
    f = rows // n_heads
    return w.reshape(n_heads, 2, f // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def reference_params(config, tensors):
    """(golden config, {our parameter name: array}) from an export's config and tensors."""
    c = golden_config(config)
    nh, L = c["n_heads"], c["n_layers"]
    P = {"embed.weight": tensors["model.embed_tokens.weight"], "final_norm.weight": tensors["model.norm.weight"]}
    if not c["tie_embeddings"]:
        P["lm_head.weight"] = tensors["lm_head.weight"]
    mlp = {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}
    for i in range(L):
        t, p = "model.layers.%d." % i, "blocks.%d." % i
        for theirs, ours in mlp.items():
            P[p + "mlp.%s.weight" % ours] = tensors[t + "mlp.%s.weight" % theirs]
        if c["mixer"] == "attention":
            P[p + "seq_norm.weight"] = tensors[t + "input_layernorm.weight"]
            P[p + "ffn_norm.weight"] = tensors[t + "post_attention_layernorm.weight"]
            P[p + "mixer.wq.weight"] = unpermute_rope_rows(tensors[t + "self_attn.q_proj.weight"], nh)
            P[p + "mixer.wk.weight"] = unpermute_rope_rows(tensors[t + "self_attn.k_proj.weight"], nh)
            P[p + "mixer.wv.weight"] = tensors[t + "self_attn.v_proj.weight"]
            P[p + "mixer.wo.weight"] = tensors[t + "self_attn.o_proj.weight"]
            continue
        P[p + "seq_norm.weight"] = tensors[t + "seq_norm.weight"]
        P[p + "ffn_norm.weight"] = tensors[t + "ffn_norm.weight"]
        if c["backbone"] == "mamba":
            P[p + "pre_conv_norm.weight"] = tensors[t + "conv.norm.weight"]
            P[p + "pre_conv.weight"] = tensors[t + "conv.conv.weight"][:, 0, :]  # nn.Conv1d [C, 1, k]
            P[p + "pre_conv.bias"] = tensors[t + "conv.conv.bias"]
        s = t + "seq_modeling_block."
        names = ["q_proj.weight", "v_proj.weight", "o_proj.weight", "learnable_token_idx", "ttt_norm_weight",
                 "ttt_norm_bias", "post_norm.weight", "post_norm.bias"]
        names += ["g_proj.weight", "conv_q.bias", "conv_k.bias"] if c["backbone"] == "mamba" else ["k_proj.weight"]
        for n in names:
            P[p + "mixer." + n] = tensors[s + n]
        if c["backbone"] == "mamba":
            P[p + "mixer.conv_q.weight"] = tensors[s + "conv_q.weight"][:, 0, :]
            P[p + "mixer.conv_k.weight"] = tensors[s + "conv_k.weight"][:, 0, :]
        P[p + "mixer.learnable_ttt_lr_weight"] = tensors[s + "learnable_ttt_lr_weight"][:, 0, :]  # [nh, 1, D]
        P[p + "mixer.learnable_ttt_lr_bias"] = tensors[s + "learnable_ttt_lr_bias"][:, 0]          # [nh, 1]
        for n in (["W1", "b1"] + (["W2", "b2"] if c["mixer"] == "ttt_mlp" else [])):
            P[p + "mixer.inner." + n] = tensors[s + n]
    return c, P


# --- logits (torch) -----------------------------------------------------------------------------

def _torch_reference():
    import torch
    sys.path.insert(0, os.path.join(HERE, "golden"))
    import transformer_reference  # noqa: E402
    import ttt_lm_reference  # noqa: E402  (sets torch's default dtype to float64; tensors below are typed)
    return torch, transformer_reference, ttt_lm_reference


def reference_logits(directory, ids, dtype="float32"):
    torch, transformer_reference, ttt_lm_reference = _torch_reference()
    config, tensors = load_export(directory)
    c, P = reference_params(config, tensors)
    dt = getattr(torch, dtype)
    P = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dt) for k, v in P.items()}
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.int64)
    with torch.no_grad():
        fwd = transformer_reference.forward if c["mixer"] == "attention" else ttt_lm_reference.forward
        return fwd(c, P, ids).numpy()


def hf_llama_logits(directory, ids, dtype="float32"):
    """LlamaForCausalLM's forward written out (transformers modeling_llama.py: RMSNorm, rotate_half
    RoPE with inv_freq = theta^(-2i/d) repeated over both halves, causal softmax attention scaled by
    1/sqrt(d), SwiGLU MLP), run on the exported tensors unchanged."""
    import torch
    config, W = load_export(directory)
    dt = getattr(torch, dtype)
    W = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dt) for k, v in W.items()}
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.int64)
    D, H, eps = config["hidden_size"], config["num_attention_heads"], config.get("rms_norm_eps", 1e-6)
    d = D // H
    B, T = ids.shape
    norm = lambda x, w: w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    inv_freq = 1.0 / (config.get("rope_theta", 10000.0) ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(dt), emb.sin().to(dt)
    rotate_half = lambda x: torch.cat((-x[..., d // 2:], x[..., : d // 2]), dim=-1)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    with torch.no_grad():
        h = W["model.embed_tokens.weight"][ids]
        for i in range(config["num_hidden_layers"]):
            t = "model.layers.%d." % i
            x = norm(h, W[t + "input_layernorm.weight"])
            heads = lambda n: (x @ W[t + "self_attn.%s_proj.weight" % n].T).view(B, T, H, d).transpose(1, 2)
            q, k, v = heads("q"), heads("k"), heads("v")
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            s = (q @ k.transpose(-1, -2)) / d ** 0.5
            a = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1) @ v
            h = h + a.transpose(1, 2).reshape(B, T, D) @ W[t + "self_attn.o_proj.weight"].T
            x = norm(h, W[t + "post_attention_layernorm.weight"])
            g = torch.nn.functional.silu(x @ W[t + "mlp.gate_proj.weight"].T) * (x @ W[t + "mlp.up_proj.weight"].T)
            h = h + g @ W[t + "mlp.down_proj.weight"].T
        head = W["model.embed_tokens.weight"] if config.get("tie_word_embeddings", False) else W["lm_head.weight"]
        return (norm(h, W["model.norm.weight"]) @ head.T).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="export directory (ttt export --out DIR)")
    ap.add_argument("--ids", help="comma-separated token ids of one sequence: print its logits' argmax and a checksum")
    ap.add_argument("--inputs", help="safetensors file with an int64 'ids' [B, T]")
    ap.add_argument("--out", help="safetensors file to write 'logits' (and 'logits_hf' for Llama) to")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    a = ap.parse_args()
    config, tensors = load_export(a.dir)
    c, P = reference_params(config, tensors)
    n = sum(int(np.prod(v.shape)) for v in P.values())
    print("%s: %s (%s, %s backbone), %d layers, d_model %d, %d tensors, %d parameters" % (
        a.dir, config["model_type"], c["mixer"], c["backbone"], c["n_layers"], c["d_model"], len(tensors), n))
    if a.ids:
        ids = np.array([[int(x) for x in a.ids.split(",")]], dtype=np.int64)
        logits = reference_logits(a.dir, ids, a.dtype)
        print("argmax:", logits[0].argmax(-1).tolist(), "sum: %.6f" % float(logits.sum()))
    if a.inputs:
        ids = read_safetensors(a.inputs)["ids"]
        out = {"logits": reference_logits(a.dir, ids, a.dtype)}
        if config["model_type"] == "llama":
            out["logits_hf"] = hf_llama_logits(a.dir, ids, a.dtype)
        if a.out:
            write_safetensors(a.out, out)
            print("wrote", a.out)


if __name__ == "__main__":
    main()
