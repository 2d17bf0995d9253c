#!/usr/bin/env python3
"""The checks of `mdc export torch` that need PyTorch (scripts/torch_check.sh runs them).

    python3 scripts/torch_check.py forward MODEL_PY REF        # module vs interpreter, fp32
    python3 scripts/torch_check.py step TRAIN_PY REF           # one training step vs mdc's
    python3 scripts/torch_check.py same CKPT_A CKPT_B TOL      # two checkpoints' tensors agree
    python3 scripts/torch_check.py onnx MODEL_PY CKPT ONNX     # onnxruntime vs the module (EMA weights)
    python3 scripts/torch_check.py compile MODEL_PY            # torch.compile and torch.onnx.export run

REF files come from `cargo run --example torch_reference`. Every comparison prints the largest
difference relative to the reference's largest magnitude and fails above the tolerance.
"""

import importlib.util
import json
import os
import struct
import sys

import torch

TOL = 1e-5


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", None) or {}
    body = raw[8 + n :]
    dt = {"F32": torch.float32, "I64": torch.int64}
    out = {}
    for k, v in header.items():
        s, e = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(body[s:e]), dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out, meta


def rel(a, b):
    """max |a - b| / max |b|."""
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-30)).item()


def report(what, r, tol=TOL, info=False):
    """Prints the comparison; a failure unless it is within the tolerance or only information."""
    ok = r <= tol
    mark = ("ok  " if ok else "FAIL") if not info else "info"
    print(f"  {mark} {what}: relative difference {r:.2e} ({'tolerance' if not info else 'compare'} {tol:.0e})")
    return ok or info


def forward(model_py, ref):
    m = load(model_py, "model")
    tensors, _ = read_safetensors(ref)
    net = m.Model()
    sd = {k[len("param.") :]: v for k, v in tensors.items() if k.startswith("param.")}
    net.load_state_dict(sd, strict=True)
    assert list(net.state_dict()) == [n for n, _ in m.PARAMETERS], "state_dict order differs from PARAMETERS"
    net.eval()
    x, t = tensors["x"], tensors["t"]
    ok = True
    with torch.no_grad():
        if m.CLASSES is None:
            ok &= report(f"{m.MODEL_FILE} forward", rel(net(x, t), tensors["out"]))
        else:
            y = tensors["y"].long()
            ok &= report(f"{m.MODEL_FILE} forward with labels {y.tolist()}", rel(net(x, t, y), tensors["out"]))
            ok &= report(f"{m.MODEL_FILE} forward without labels (null)", rel(net(x, t), tensors["out_null"]))
    return ok


def step(train_py, ref):
    tr = load(train_py, "train")
    tensors, meta = read_safetensors(ref)
    recipe = json.loads(meta["config"])
    run = tr.Run(recipe, torch.device("cpu"))
    before = {p: [tensors[f"before.{p}.{n}"] for n in tr.PARAM_NAMES] for p in ("model", "ema", "adam_m", "adam_v")}
    step_no = int(meta["step"])
    run.restore({"step": step_no - 1, "model": before["model"], "ema": before["ema"], "adam_m": before["adam_m"],
                 "adam_v": before["adam_v"], "guide": None, "class_names": []})
    y = tensors["y"].long() if "y" in tensors else None
    lr = tr.learning_rate(recipe, step_no)
    ok = report("learning rate", abs(lr - float(meta["lr"])) / float(meta["lr"]), 1e-12)
    loss, norm = tr.train_step(run, tensors["x0"], tensors["t"].long(), tensors["noise"], y, lr, step_no)
    ok &= report(f"loss ({loss:.6f} vs mdc {float(meta['loss']):.6f})", abs(loss - float(meta["loss"])) / float(meta["loss"]))
    ok &= report(f"gradient norm ({norm:.6f} vs mdc {float(meta['grad_norm']):.6f})",
                 abs(norm - float(meta["grad_norm"])) / float(meta["grad_norm"]))
    grads = torch.cat([p.grad.flatten() for p in run.params])
    ok &= report("clipped gradients (all)", rel(grads, torch.cat([tensors[f"grad.{n}"].flatten() for n in tr.PARAM_NAMES])))
    after = {
        "model": [p.detach() for p in run.params],
        "ema": run.ema,
        "adam_m": [run.opt.state[p]["exp_avg"] for p in run.params],
        "adam_v": [run.opt.state[p]["exp_avg_sq"] for p in run.params],
    }
    # From fresh moments (step 1) AdamW moves each weight by lr * g / (|g| + 1e-8): a weight whose
    # gradient is at the noise floor of the fp32 sums (|g| ~ 1e-8) moves by a different fraction
    # of lr in any two implementations, so step 1 is shown, and the weights checked from step 2 on.
    # The moments are gradient sums, compared as the gradients are: over the whole set.
    info = step_no == 1
    for part, mine in after.items():
        theirs = [tensors[f"after.{part}.{n}"] for n in tr.PARAM_NAMES]
        if part in ("model", "ema"):
            worst = max(rel(a, b) for a, b in zip(mine, theirs))
            ok &= report(f"updated {part} (worst tensor)", worst, TOL, info)
        else:
            whole = rel(torch.cat([a.flatten() for a in mine]), torch.cat([b.flatten() for b in theirs]))
            ok &= report(f"updated {part} (all)", whole)
    # The update itself, after - before, per tensor: AdamW divides each gradient by its own size,
    # so this shows the fp32 sums' noise where gradients are small (information, no tolerance).
    theirs = [tensors[f"after.model.{n}"] for n in tr.PARAM_NAMES]
    worst = max(rel(a - b0, b - b0) for a, b, b0 in zip(after["model"], theirs, before["model"]))
    report("the update after - before (worst tensor)", worst, TOL, info=True)
    return ok


def same(a, b, tol):
    ta, ma = read_safetensors(a)
    tb, mb = read_safetensors(b)
    assert ta.keys() == tb.keys(), "different tensors"
    ok = True
    for part in ("model.", "ema.", "adam_m.", "adam_v."):
        worst = max(rel(ta[k], tb[k]) for k in ta if k.startswith(part))
        ok &= report(f"{part[:-1]} (worst tensor)", worst, tol)
    ok &= report("step", 0.0 if ma["step"] == mb["step"] else 1.0, 0)
    return ok


def onnx(model_py, ckpt, onnx_path):
    import numpy as np
    import onnxruntime as ort

    m = load(model_py, "model")
    tensors, _ = read_safetensors(ckpt)
    net = m.Model()
    net.load_state_dict({k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")})
    net.eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn((5, *m.IMAGE), generator=g)
    t = torch.tensor([0.0, 10.0, 300.0, 700.0, 999.0])
    feeds = {"x": x.numpy(), "t": t.numpy()}
    args = (x, t)
    if m.CLASSES is not None:
        y = torch.tensor([0, 1, 2, 3, m.CLASSES])
        feeds["y"] = y.numpy().astype(np.int64)
        args = (x, t, y)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    out = sess.run(None, feeds)[0]
    with torch.no_grad():
        ref = net(*args)
    return report(f"onnxruntime ({os.path.basename(onnx_path)}) vs the PyTorch module, EMA weights", rel(torch.from_numpy(out), ref))


def compile_check(model_py):
    m = load(model_py, "model")
    net = m.Model().eval()
    x = torch.randn((2, *m.IMAGE))
    t = torch.tensor([3.0, 900.0])
    args = (x, t) if m.CLASSES is None else (x, t, torch.tensor([1, m.CLASSES]))
    with torch.no_grad():
        ref = net(*args)
        out = torch.compile(net)(*args)
    ok = report(f"{m.MODEL_FILE} torch.compile", rel(out, ref), 1e-4)
    import onnxruntime as ort

    names = ["x", "t", "y"][: len(args)]
    feeds = {n: a.numpy() for n, a in zip(names, args)}
    for dynamo, exporter in ((True, "dynamo exporter, the default"), (False, "TorchScript exporter")):
        path = f"{model_py}.{'dynamo' if dynamo else 'ts'}.onnx"
        try:
            torch.onnx.export(net, args, path, dynamo=dynamo, input_names=names, output_names=["out"])
        except Exception as e:  # noqa: BLE001 - reported, and a failure
            print(f"  FAIL torch.onnx.export ({exporter}): {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
            ok = False
            continue
        out = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        ok &= report(f"{m.MODEL_FILE} torch.onnx.export ({exporter}) in onnxruntime", rel(torch.from_numpy(out), ref))
    return ok


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    fn = {"forward": forward, "step": step, "onnx": onnx, "compile": compile_check}.get(cmd)
    if cmd == "same":
        ok = same(rest[0], rest[1], float(rest[2]))
    else:
        ok = fn(*rest)
    sys.exit(0 if ok else 1)
