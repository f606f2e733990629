"""scripts/sweeplib/runs.py — one run of a sweep (`ttt train`, then `ttt eval`, then result.json),
the check that a run directory holds the same settings before it is reused, and running many at
once (--jobs), each with its own threads and device.
"""
import concurrent.futures
import json
import os
import queue
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass

import yaml  # python3-yaml, installed by scripts/setup.sh

from . import rows as rowlib

RUN_RECORD = "sweep_run.json"  # what a run directory was made with (written before training)
RESULT = "result.json"         # written after the evaluation: the run is finished

# Keys that do not change what a run computes: a run made with other values of these is reused.
NEUTRAL_KEYS = ("train.device", "train.log_every", "train.max_minutes", "train.peak_tflops",
                "checkpoint.every", "checkpoint.keep_last", "eval.batch", "dist.")


@dataclass
class Spec:
    """One run: a row at a seed, in its directory, with every assignment it is trained with."""
    row: rowlib.Row
    seed: object          # the --seeds value, or None (the config's own seeds)
    sets: list            # row + seed + user --set, in that order
    run_dir: str
    resolved: dict = None  # `ttt config show` of the base config with `sets`


def ttt_cmd(ctx, *words):
    return [ctx.ttt] + list(words)


def resolved_config(ctx, sets):
    """The resolved config (dict) of the base config with `sets`, as `ttt config show` prints it."""
    cmd = ttt_cmd(ctx, "config", "show", "--config", ctx.config)
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"sweep: {' '.join(map(shlex.quote, cmd))} failed:\n{p.stdout}{p.stderr}".rstrip())
    return yaml.safe_load(p.stdout)


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def seed_dir_name(resolved):
    m, t = resolved["model"]["seed"], resolved["train"]["seed"]
    return f"seed{m}" if m == t else f"seed{m}-data{t}"


def settings_differences(old, new):
    """['key: old -> new', ...] over the keys that change what a run computes."""
    a, b = flatten(old), flatten(new)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k == "data.dir" or any(k == n or (n.endswith(".") and k.startswith(n)) for n in NEUTRAL_KEYS):
            continue
        if a.get(k) != b.get(k):
            diffs.append(f"{k}: {a.get(k)!r} there, {b.get(k)!r} here")
    return diffs


def check_reusable(spec, data):
    """None if spec.run_dir is new or holds this run; else why it cannot be reused."""
    if not os.path.isdir(spec.run_dir) or not os.listdir(spec.run_dir):
        return None
    record_path = os.path.join(spec.run_dir, RUN_RECORD)
    if not os.path.exists(record_path):
        return f"{spec.run_dir} exists but was not made by this sweep ({RUN_RECORD} missing)"
    with open(record_path) as f:
        record = json.load(f)
    diffs = settings_differences(record["resolved"], spec.resolved)
    if record.get("data") != data:
        diffs.append(f"--data: {record.get('data')!r} there, {data!r} here")
    if diffs:
        return f"{spec.run_dir} holds a run with other settings:\n    " + "\n    ".join(diffs)
    return None


def read_metrics(run_dir):
    rows = []
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line cut by a crash
    return rows


def newest_checkpoint(run_dir):
    ckpts = []
    d = os.path.join(run_dir, "checkpoints")
    if os.path.isdir(d):
        for f in os.listdir(d):
            m = re.fullmatch(r"step_(\d+)\.h5", f)
            if m:
                ckpts.append((int(m.group(1)), os.path.join(d, f)))
    return max(ckpts)[1] if ckpts else None


def finished_result(run_dir):
    """The run's result (dict) if it finished, else None."""
    path = os.path.join(run_dir, RESULT)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


class RunFailed(Exception):
    pass


def execute(cmd, log_path, env):
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        raise RunFailed(f"exit status {rc} from {os.path.basename(cmd[0])} {cmd[1]}; see {log_path}")


def train_command(ctx, spec, device):
    cmd = ttt_cmd(ctx, "train", "--config", ctx.config, "--run-dir", spec.run_dir)
    if ctx.data:
        cmd += ["--data", ctx.data]
    if device:
        cmd += ["--device", device]
    for s in spec.sets:
        cmd += ["--set", s]
    if newest_checkpoint(spec.run_dir):
        cmd.append("--resume")
    return cmd


def eval_contexts(ctx, spec):
    """The contexts to evaluate: --eval-context, else the run's own training context."""
    cfg = spec.resolved
    text = ctx.eval_context or str(cfg["train"]["seq_len"] or cfg["model"]["max_seq_len"])
    return [int(c) for c in text.split(",") if c.strip()]


def eval_command(ctx, spec, device, ckpt, out, contexts=None):
    contexts = contexts or eval_contexts(ctx, spec)
    cmd = ttt_cmd(ctx, "eval", "--checkpoint", ckpt, "--context", ",".join(map(str, contexts)), "--out", out)
    if ctx.data:
        cmd += ["--data", ctx.data]
    if device:
        cmd += ["--device", device]
    if ctx.eval_windows:
        cmd += ["--max-windows", str(ctx.eval_windows)]
    return cmd


def summarize(spec, ctx, report, metrics):
    """result.json's content: what the run was, and its numbers, each named for what it measures."""
    cfg = spec.resolved
    train = [r["loss"] for r in metrics if "loss" in r]
    val = [r for r in metrics if "val_loss" in r]
    last = train[-10:]
    return {
        "row": spec.row.name,
        "seed": spec.seed,
        "model_seed": cfg["model"]["seed"],
        "train_seed": cfg["train"]["seed"],
        "sets": spec.sets,
        "overrides": ctx.user_sets,
        "config": ctx.config,
        "data": ctx.data,
        "train_context": cfg["train"]["seq_len"] or cfg["model"]["max_seq_len"],
        "parameters": report["model"]["parameters"],
        "steps": report["step"],
        "tokens": report["tokens_trained"],
        # Mean training loss of the last (up to) 10 steps.
        "train_loss_last10": sum(last) / len(last) if last else None,
        # The trainer's last periodic validation (train.eval_every, on train.eval_windows windows).
        "periodic_val_loss": val[-1]["val_loss"] if val else None,
        "periodic_val_step": val[-1].get("step") if val else None,
        "periodic_val_windows": cfg["train"]["eval_windows"] if val else None,
        "elapsed_s": metrics[-1].get("elapsed_s") if metrics else None,
        # `ttt eval` of the final checkpoint: every window of the validation split (or --eval-windows).
        "eval": {str(r["context"]): {"loss": r["loss"], "ppl": r["ppl"], "windows": r["windows"],
                                     "tokens": r["tokens"]} for r in report["results"]},
    }


def evaluate_more(ctx, spec, device, env, done, missing):
    """A finished run evaluated at contexts it lacks; its result.json gets them added."""
    log = os.path.join(spec.run_dir, "sweep.log")
    out = os.path.join(spec.run_dir, "eval_more.json")
    execute(eval_command(ctx, spec, device, newest_checkpoint(spec.run_dir), out, missing), log, env)
    with open(out) as f:
        report = json.load(f)
    done["eval"].update(summarize(spec, ctx, report, [])["eval"])
    with open(os.path.join(spec.run_dir, RESULT), "w") as f:
        json.dump(done, f, indent=2)
    return done


def do_run(ctx, spec, device, env):
    """Trains (or resumes) and evaluates one run; returns (result, what was done). Raises RunFailed."""
    done = finished_result(spec.run_dir)
    if done is not None:
        missing = [c for c in eval_contexts(ctx, spec) if str(c) not in done["eval"]]
        if not missing:
            return done, "reused"
        return evaluate_more(ctx, spec, device, env, done, missing), "evaluated"
    os.makedirs(spec.run_dir, exist_ok=True)
    with open(os.path.join(spec.run_dir, RUN_RECORD), "w") as f:
        json.dump({"config": ctx.config, "data": ctx.data, "sets": spec.sets, "resolved": spec.resolved}, f, indent=2)
    log = os.path.join(spec.run_dir, "sweep.log")
    execute(train_command(ctx, spec, device), log, env)
    ckpt = newest_checkpoint(spec.run_dir)
    if ckpt is None:
        raise RunFailed(f"training left no checkpoint in {spec.run_dir}; see {log}")
    eval_json = os.path.join(spec.run_dir, "eval.json")
    execute(eval_command(ctx, spec, device, ckpt, eval_json), log, env)
    with open(eval_json) as f:
        report = json.load(f)
    result = summarize(spec, ctx, report, read_metrics(spec.run_dir))
    with open(os.path.join(spec.run_dir, RESULT), "w") as f:
        json.dump(result, f, indent=2)
    return result, "trained"


def job_env(threads):
    """The environment of a job: its own thread count; a passive OpenMP wait policy unless set
    (spinning threads of several jobs, or of a busy machine, slow everyone down: trainer/README)."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    return env


def run_all(ctx, specs, jobs, devices, threads, log=print):
    """Runs `specs` on `jobs` workers; each worker holds one of `devices` (round robin) while it
    runs. Returns ([result or None per spec], [(spec, error)])."""
    slots = queue.Queue()
    for i in range(jobs):
        slots.put(devices[i % len(devices)])
    env = job_env(threads)
    lock = threading.Lock()
    results, failures = [None] * len(specs), []

    def one(i):
        spec = specs[i]
        device = slots.get()
        t0 = time.time()
        try:
            if finished_result(spec.run_dir) is None:
                with lock:
                    log(f"sweep: start  {spec.run_dir}" + (f" on {device}" if device else ""))
            result, how = do_run(ctx, spec, device, env)
            results[i] = result
            with lock:
                log(f"sweep: {how} {spec.run_dir} ({time.time() - t0:.1f} s)")
        except RunFailed as e:
            with lock:
                failures.append((spec, str(e)))
                log(f"sweep: FAILED {spec.run_dir}: {e}")
        finally:
            slots.put(device)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, range(len(specs))))
    return results, failures
