
import argparse
import gzip
import hashlib
import importlib.util
import json
import math
import os
import struct
import sys
import time
import zlib

import torch
import torch.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))


def load_model_module():
    """The model file written beside this script."""
    spec = importlib.util.spec_from_file_location("mdc_model", os.path.join(HERE, MODEL_PY))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


M = load_model_module()
PARAM_NAMES = [name for name, _ in M.PARAMETERS]
PARAM_SHAPES = [list(shape) for _, shape in M.PARAMETERS]


class RecipeError(Exception):
    """A problem a user can act on (a checkpoint for another model, data that does not fit)."""


# ---------------------------------------------------------------------------------------------
# The recipe's arithmetic, as mdc computes it (src/diffusion/schedule.rs, src/train/lr.rs, ema.rs,
# state.rs, src/diffusion/prediction.rs).


def alphas_cumprod(kind, timesteps):
    """alpha_bar_t for t in 0..T-1 (float64): linear betas 1e-4..0.02 scaled to T, or cosine."""
    if kind == "linear":
        scale = 1000.0 / timesteps
        lo, hi = scale * 1e-4, min(scale * 0.02, 0.999)
        betas = [lo if timesteps == 1 else lo + (hi - lo) * i / (timesteps - 1.0) for i in range(timesteps)]
    elif kind == "cosine":
        f = lambda t: math.cos((t / timesteps + 0.008) / 1.008 * (math.pi / 2)) ** 2  # noqa: E731
        betas = [min(1.0 - f(i + 1.0) / f(float(i)), 0.999) for i in range(timesteps)]
    else:
        raise RecipeError(f"unknown schedule {kind!r}")
    out, acc = [], 1.0
    for b in betas:
        acc *= 1.0 - b
        out.append(acc)
    return torch.tensor(out, dtype=torch.float64)


def learning_rate(recipe, step):
    """Linear warmup to `lr`, then cosine decay towards zero; `step` counts from 1."""
    i, warmup, lr = step - 1, recipe["warmup"], recipe["lr"]
    if i < warmup:
        return lr * (i + 1) / warmup
    decay = max(recipe["steps"] - warmup, 1)
    progress = min((i - warmup) / decay, 1.0)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay(recipe, step):
    """The EMA's decay after step `step`: warms up as (1 + step) / (10 + step), capped."""
    return min(recipe["ema_decay"], (1.0 + step) / (10.0 + step))


def guide_step(recipe):
    """The step after which the EMA weights are kept as the autoguidance guide (None: none)."""
    if recipe["guide_at"] <= 0:
        return None
    return max(int(math.floor(recipe["guide_at"] * recipe["steps"] + 0.5)), 1)


def loss_weights(recipe, ab):
    """min-SNR-gamma weight of each image's MSE (1 when gamma is 0), for the prediction target."""
    gamma = recipe["min_snr_gamma"]
    if gamma <= 0:
        return torch.ones_like(ab)
    snr = ab / (1.0 - ab)
    if recipe["prediction"] == "velocity":
        return snr.clamp(max=gamma) / (snr + 1.0)
    return snr.clamp(max=gamma) / snr


def bcast(v):
    return v[:, None, None, None]


def train_step(run, x0, t, noise, y, lr, step):
    """One optimizer step of the recipe on this process's images: noise them at timesteps t,
    the weighted MSE to the noise or velocity, backward (DDP averages the gradients over the
    processes), clipping, AdamW at learning rate lr, EMA. Returns (loss, gradient norm) of the
    global batch; raises RecipeError when either is not finite."""
    recipe = run.recipe
    ab = run.alphas[t]
    a, s = ab.sqrt(), (1.0 - ab).sqrt()
    xt = bcast(a.float()) * x0 + bcast(s.float()) * noise
    if recipe["prediction"] == "velocity":
        target = (bcast(a) * noise.double() - bcast(s) * x0.double()).float()
    else:
        target = noise
    weights = loss_weights(recipe, ab).float()
    args = (xt, t.float()) if y is None else (xt, t.float(), y)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.autocast):
        pred = run.net(*args)
    per_image = (pred.float() - target).pow(2).flatten(1).mean(1)
    loss = (weights * per_image).mean()
    run.opt.zero_grad(set_to_none=False)
    loss.backward()
    params = run.params
    for p in params:
        if p.grad is None:  # a parameter the output does not read: mdc gives it a zero gradient
            p.grad = torch.zeros_like(p)
    clip = recipe["clip_grad"] if recipe["clip_grad"] > 0 else math.inf
    norm = torch.nn.utils.clip_grad_norm_(params, clip)
    global_loss = loss.detach().clone()
    if run.world > 1:
        dist.all_reduce(global_loss)
        global_loss /= run.world
    loss_value, norm_value = global_loss.item(), norm.item()
    if not math.isfinite(loss_value) or not math.isfinite(norm_value):
        what, value = ("loss", loss_value) if not math.isfinite(loss_value) else ("gradient norm", norm_value)
        raise RecipeError(
            f"training diverged at step {step}: the {what} became {value} (learning rate {lr:e}); "
            "lower the learning rate or keep gradient clipping on, then start from the last checkpoint"
        )
    for group in run.opt.param_groups:
        group["lr"] = lr
    run.opt.step()
    d = float(torch.tensor(ema_decay(recipe, step), dtype=torch.float32))
    with torch.no_grad():
        torch._foreach_mul_(run.ema, d)
        torch._foreach_add_(run.ema, [p.detach() for p in params], alpha=1.0 - d)
    g = guide_step(recipe)
    if run.guide is None and g is not None and step >= g:
        run.guide = (step, [e.clone() for e in run.ema])
    return loss_value, norm_value


# ---------------------------------------------------------------------------------------------
# safetensors and mdc's checkpoint format (src/params.rs, src/train/checkpoint.rs).

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "U8": torch.uint8}


def tensor_bytes(t):
    return t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()


def write_safetensors(path, tensors, metadata):
    """tensors: name -> float32 tensor; written atomically (a temporary file, then a rename)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = tensor_bytes(t)
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """(name -> tensor, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise RecipeError(f"{path} is not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", raw[:8])
    try:
        header = json.loads(raw[8 : 8 + n])
    except ValueError as e:
        raise RecipeError(f"{path} is not a safetensors file ({e})") from None
    meta = header.pop("__metadata__", None) or {}
    body = memoryview(raw)[8 + n :]
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[start:end]), dtype=DTYPES[info["dtype"]]) if end > start else None
        if t is None:
            t = torch.zeros(0, dtype=DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"])
    return tensors, meta


def digest(parts):
    """SHA-256 over the little-endian bytes of every tensor, part by part, each in mdc's
    parameter order: what mdc checks a checkpoint's tensors against."""
    h = hashlib.sha256()
    for part in parts:
        for t in part:
            h.update(tensor_bytes(t))
    return h.hexdigest()


def metadata_digest(meta):
    """mdc-checkpoint-v2's `metadata_sha256`: SHA-256 over every other entry in key order, each as
    its key's and value's UTF-8 lengths (u64 little-endian) and bytes."""
    h = hashlib.sha256()
    for k in sorted(k for k in meta if k != "metadata_sha256"):
        kb, vb = k.encode(), meta[k].encode()
        h.update(struct.pack("<Q", len(kb)) + kb + struct.pack("<Q", len(vb)) + vb)
    return h.hexdigest()


def save_checkpoint(path, run, step):
    """Writes mdc's training checkpoint (`format` CHECKPOINT_FORMAT): `mdc sample`, `mdc export
    onnx` and `mdc train --resume` read it, and so does this script."""
    names = PARAM_NAMES
    model = [p.detach() for p in run.params]
    m = [run.opt.state[p]["exp_avg"] if p in run.opt.state else torch.zeros_like(p) for p in run.params]
    v = [run.opt.state[p]["exp_avg_sq"] if p in run.opt.state else torch.zeros_like(p) for p in run.params]
    parts = [model, run.ema, m, v]
    tensors = {}
    for prefix, part in zip(("model.", "ema.", "adam_m.", "adam_v."), parts):
        tensors.update({prefix + n: t for n, t in zip(names, part)})
    words = hashlib.sha256(f"{run.recipe['seed']}:{step}".encode()).digest()
    epoch, position = run.order.state()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "step": str(step),
        "rng": ",".join(words[i : i + 8].hex() for i in range(0, 32, 8)),
        "data_epoch": str(epoch),
        "data_position": str(position),
        "model_hash": M.MODEL_HASH,
        "schedule": run.recipe["schedule"],
        "timesteps": str(run.recipe["timesteps"]),
        "prediction": run.recipe["prediction"],
        "config": json.dumps(run.recipe, separators=(",", ":")),
        "tensors_sha256": digest(parts),
        "mdc_version": MDC_VERSION,
    }
    if run.class_names:
        meta["class_names"] = json.dumps(run.class_names)
    if run.guide is not None:
        g_step, g = run.guide
        tensors.update({"guide." + n: t for n, t in zip(names, g)})
        meta["guide_step"] = str(g_step)
        meta["guide_sha256"] = digest([g])
    if CHECKPOINT_FORMAT != "mdc-checkpoint-v1":
        meta["metadata_sha256"] = metadata_digest(meta)
    write_safetensors(path, tensors, meta)


def load_checkpoint(path):
    """An mdc training checkpoint (from `mdc train` or this script), checked as mdc checks it:
    the format, the model file's hash, every tensor's name and shape, the digests."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") not in ("mdc-checkpoint-v1", CHECKPOINT_FORMAT):
        raise RecipeError(f"{path} is not an mdc training checkpoint (no `format = {CHECKPOINT_FORMAT}` metadata)")
    if meta["format"] != "mdc-checkpoint-v1" and meta.get("metadata_sha256") != metadata_digest(meta):
        raise RecipeError(f"checkpoint {path} is corrupt: its metadata does not match its recorded SHA-256")
    if meta.get("model_hash") != M.MODEL_HASH:
        raise RecipeError(
            f"checkpoint {path} was trained from a different model file (sha256 {meta.get('model_hash', '?')[:12]}...; "
            f"{M.MODEL_FILE} as exported is {M.MODEL_HASH[:12]}...): export the model file the run trains, "
            "or start a new run"
        )
    shapes = dict(zip(PARAM_NAMES, PARAM_SHAPES))

    def part(prefix):
        out, problems = [], []
        for n in PARAM_NAMES:
            t = tensors.get(prefix + n)
            if t is None:
                problems.append(f"missing tensor `{prefix}{n}`")
            elif list(t.shape) != shapes[n] or t.dtype != torch.float32:
                problems.append(f"`{prefix}{n}`: expected f32 {shapes[n]}, found {t.dtype} {list(t.shape)}")
            else:
                out.append(t)
        extra = sorted(k for k in tensors if k.startswith(prefix) and k[len(prefix) :] not in shapes)
        problems += [f"unexpected tensor `{k}`" for k in extra[:10]]
        if problems:
            raise RecipeError(f"{path} does not fit {M.MODEL_FILE}:\n  " + "\n  ".join(problems))
        return out

    parts = [part(p) for p in ("model.", "ema.", "adam_m.", "adam_v.")]
    if digest(parts) != meta.get("tensors_sha256"):
        raise RecipeError(f"checkpoint {path} is corrupt: the tensor data does not match its recorded SHA-256")
    guide = None
    if "guide_step" in meta:
        g = part("guide.")
        if digest([g]) != meta.get("guide_sha256"):
            raise RecipeError(f"checkpoint {path} is corrupt: the guide does not match its recorded SHA-256")
        guide = (int(meta["guide_step"]), g)
    return {
        "step": int(meta["step"]),
        "model": parts[0],
        "ema": parts[1],
        "adam_m": parts[2],
        "adam_v": parts[3],
        "guide": guide,
        "config": json.loads(meta["config"]),
        "class_names": json.loads(meta.get("class_names", "[]")),
        "data": (int(meta.get("data_epoch", 0)), int(meta.get("data_position", 0))),
    }


# ---------------------------------------------------------------------------------------------
# Data: IDX files (gzipped or raw, with an IDX1 label file) or a tensor file mdc wrote.


def read_idx(path, ndims):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:4] != bytes([0, 0, 8, ndims]):
        raise RecipeError(f"{path} is not an IDX file of {ndims} dimension(s) of bytes (magic 00 00 08 {ndims:02x})")
    dims = struct.unpack(f">{ndims}I", raw[4 : 4 + 4 * ndims])
    body = raw[4 + 4 * ndims :]
    if len(body) != math.prod(dims):
        raise RecipeError(f"{path}: the header says {dims}, the file holds {len(body)} bytes")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def load_data(kind, images, labels):
    """Images [N, C, H, W] in [-1, 1] (float32) and their labels (int64) or None."""
    resolve = lambda p: p if os.path.isabs(p) else os.path.join(HERE, p)  # noqa: E731
    if kind == "idx":
        x = read_idx(resolve(images), 3)[:, None].float() / 127.5 - 1.0
        y = read_idx(resolve(labels), 1).long() if labels else None
    else:
        tensors, _ = read_safetensors(resolve(images))
        x, y = tensors["images"].float(), tensors.get("labels")
        y = y.long() if y is not None else None
    if y is not None and len(y) != len(x):
        raise RecipeError(f"{labels or images}: {len(y)} labels for {len(x)} images")
    if tuple(x.shape[1:]) != tuple(M.IMAGE):
        raise RecipeError(
            f"the data's images are {tuple(x.shape[1:])} (channels, height, width) but {M.MODEL_FILE} takes "
            f"{tuple(M.IMAGE)}; give data that fits (--data)"
        )
    if M.CLASSES is not None:
        if y is None:
            raise RecipeError(f"{M.MODEL_FILE} is class-conditional, but the data has no labels")
        if int(y.max()) >= M.CLASSES:
            raise RecipeError(f"a label is {int(y.max())}, but {M.MODEL_FILE} knows {M.CLASSES} classes")
    return x, y


class DataOrder:
    """A fresh seeded shuffle of the whole data set every epoch, the same on every process;
    (epoch, position) is its whole state. (Not mdc's shuffle: the same idea, torch's generator.)"""

    def __init__(self, n, seed, epoch=0, position=0):
        self.n, self.seed, self.epoch, self.position = n, seed, epoch, min(position, n)
        self.perm = self._perm()

    def _perm(self):
        g = torch.Generator().manual_seed((self.seed * 1000003 + self.epoch) % (2**63))
        return torch.randperm(self.n, generator=g)

    def state(self):
        return self.epoch, self.position

    def next_batch(self, size):
        out, have = [], 0
        while have < size:
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
                self.perm = self._perm()
            take = min(size - have, self.n - self.position)
            out.append(self.perm[self.position : self.position + take])
            self.position, have = self.position + take, have + take
        return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Preview grids: DDIM (eta 0) from the EMA weights, written as PNG.


@torch.no_grad()
def preview(run, path, count=16, steps=10):
    model = M.Model().to(run.device)
    model.load_state_dict(dict(zip(PARAM_NAMES, run.ema)))
    model.eval()
    g = torch.Generator(device=run.device).manual_seed(run.recipe["seed"])
    x = torch.randn((count, *M.IMAGE), generator=g, device=run.device)
    y = None if M.CLASSES is None else torch.arange(count, device=run.device) % M.CLASSES
    T = run.recipe["timesteps"]
    ts = [round((T - 1) * (1 - k / steps)) for k in range(steps)]
    for k, t in enumerate(ts):
        ab = run.alphas[t].item()
        ab_next = run.alphas[ts[k + 1]].item() if k + 1 < steps else 1.0
        tt = torch.full((count,), float(t), device=run.device)
        out = model(x, tt) if y is None else model(x, tt, y)
        a, s = math.sqrt(ab), math.sqrt(1 - ab)
        if run.recipe["prediction"] == "velocity":
            x0, eps = a * x - s * out, s * x + a * out
        else:
            x0, eps = (x - s * out) / a, out
        x0 = x0.clamp(-1, 1)
        x = math.sqrt(ab_next) * x0 + math.sqrt(1 - ab_next) * eps
    write_grid(path, x.clamp(-1, 1).cpu())


def write_grid(path, images, columns=4, pad=2):
    n, c, h, w = images.shape
    rows = (n + columns - 1) // columns
    grid = torch.zeros((c, rows * (h + pad) + pad, columns * (w + pad) + pad), dtype=torch.uint8)
    pixels = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = pixels[i]
    height, width = grid.shape[1:]
    rows_bytes = grid.permute(1, 2, 0).reshape(height, width * c).numpy().tobytes()
    stride = width * c
    raw = b"".join(b"\x00" + rows_bytes[y * stride : (y + 1) * stride] for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    color = 0 if c == 1 else 2
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(png)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------
# The run.


class Run:
    """Everything a run changes: the network (wrapped in DDP over several processes), AdamW,
    the EMA, the guide, the data order."""

    def __init__(self, recipe, device, rank=0, world=1, autocast=False):
        self.recipe, self.device, self.rank, self.world, self.autocast = recipe, device, rank, world, autocast
        torch.manual_seed(recipe["seed"])
        self.model = M.Model().to(device)
        self.params = [dict(self.model.named_parameters())[n] for n in PARAM_NAMES]
        self.net = self.model
        if world > 1:
            kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
            unused = bool(M.UNUSED_PARAMETERS)
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=unused, **kw)
        b1, b2 = recipe["adam_beta1"], recipe["adam_beta2"]
        self.opt = torch.optim.AdamW(
            self.params, lr=recipe["lr"], betas=(b1, b2), eps=1e-8, weight_decay=recipe["weight_decay"], foreach=False
        )
        self.ema = [p.detach().clone() for p in self.params]
        self.guide = None
        self.step = 0
        self.alphas = alphas_cumprod(recipe["schedule"], recipe["timesteps"]).to(device)
        self.class_names = []
        self.order = None

    def restore(self, ck):
        """Takes a checkpoint's weights, EMA, AdamW moments, guide and step."""
        with torch.no_grad():
            for p, w, m, v in zip(self.params, ck["model"], ck["adam_m"], ck["adam_v"]):
                p.copy_(w)
                self.opt.state[p] = {
                    "step": torch.tensor(float(ck["step"])),
                    "exp_avg": m.to(self.device).clone(),
                    "exp_avg_sq": v.to(self.device).clone(),
                }
            self.ema = [e.to(self.device).clone() for e in ck["ema"]]
        if ck["guide"] is not None:
            self.guide = (ck["guide"][0], [g.to(self.device) for g in ck["guide"][1]])
        self.step = ck["step"]
        self.class_names = ck["class_names"]


def recipe_for(args, ck):
    """The model file's recipe, or a checkpoint's (a run keeps the recipe it started with), with
    the command line's changes; a change to a setting that decides what a resumed run computes
    is refused, as `mdc train --resume` refuses it."""
    recipe = dict(ck["config"]) if ck else json.loads(RECIPE_JSON)
    changes = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("checkpoint_every", args.checkpoint_every),
                                 ("sample_every", args.sample_every)) if v is not None}
    if args.data is not None:
        changes["data"] = args.data
    for key, value in changes.items():
        if ck and key in FIXED_KEYS and value != recipe[key]:
            raise RecipeError(
                f"--{key.replace('_', '-')} {value}: a resumed run keeps its recipe, and the checkpoint's {key} is "
                f"{recipe[key]!r}; drop the flag or start a new run"
            )
        recipe[key] = value
    if ck and recipe["steps"] <= ck["step"]:
        raise RecipeError(f"the checkpoint has completed {ck['step']} of {recipe['steps']} steps; pass --steps N (more)")
    return recipe


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder: checkpoint.safetensors, log.csv, samples/")
    p.add_argument("--resume", metavar="CKPT", help="continue from an mdc training checkpoint (mdc's or this script's)")
    p.add_argument("--steps", type=int, help="optimizer steps of the whole run")
    p.add_argument("--batch", type=int, help="images per step, over all processes")
    p.add_argument("--stop-after", type=int, metavar="STEP", help="stop after this step (a checkpoint is written)")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--sample-every", type=int, help="steps between preview grids (0: none)")
    p.add_argument("--data", help="an IDX image file, or a tensor file `mdc export torch --train` wrote")
    p.add_argument("--labels", help="the IDX1 label file of --data")
    p.add_argument("--device", help="cpu or cuda (default: cuda when there is a GPU)")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on a GPU")
    args = p.parse_args()
    try:
        run_training(args)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def run_training(args):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    kind = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RecipeError("--device cuda: PyTorch sees no GPU (torch.cuda.is_available() is False)")
    device = torch.device(kind, local) if kind == "cuda" else torch.device("cpu")
    if kind == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    ck = load_checkpoint(args.resume) if args.resume else None
    recipe = recipe_for(args, ck)
    if recipe["batch"] % world:
        raise RecipeError(f"batch {recipe['batch']} does not split over {world} processes")
    if args.data is not None:
        data = ("tensors" if args.data.endswith(".safetensors") else "idx", args.data, args.labels)
    elif recipe["data"] != DATA_RECIPE:
        raise RecipeError(f"the run trains on {recipe['data']!r}, this script was exported for {DATA_RECIPE!r}: give --data")
    else:
        data = DATA
    x_all, y_all = load_data(*data)
    run = Run(recipe, device, rank, world, autocast=(kind == "cuda" and not args.fp32))
    if ck:
        run.restore(ck)
    run.class_names = run.class_names or CLASS_NAMES
    run.order = DataOrder(len(x_all), recipe["seed"], *(ck["data"] if ck else (0, 0)))
    x_all = x_all.to(device)
    y_all = y_all.to(device) if y_all is not None else None
    gen = torch.Generator(device=device).manual_seed((recipe["seed"] * 1000003 + run.step + 0x5EED) % (2**63))
    end = min(recipe["steps"], args.stop_after or recipe["steps"])
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoint.safetensors")
    local_batch = recipe["batch"] // world
    start, t0, smoothed, previews = run.step, time.time(), None, 0.0
    if rank == 0:
        print(f"{M.MODEL_FILE}: {sum(p.numel() for p in run.params)} parameters; {len(x_all)} images; "
              f"{world} process(es) on {kind}{' (bf16 autocast)' if run.autocast else ''}; steps {start + 1}..{end}")
    while run.step < end:
        step = run.step + 1
        batch = run.order.next_batch(recipe["batch"]).to(device)
        t = torch.randint(recipe["timesteps"], (recipe["batch"],), generator=gen, device=device)
        noise = torch.randn((recipe["batch"], *M.IMAGE), generator=gen, device=device)
        y = None
        if M.CLASSES is not None:
            drop = torch.rand(recipe["batch"], generator=gen, device=device) < LABEL_DROP
            y = torch.where(drop, torch.full_like(y_all[batch], M.CLASSES), y_all[batch])
        mine = slice(rank * local_batch, (rank + 1) * local_batch)
        x0 = x_all[batch[mine]]
        loss, norm = train_step(run, x0, t[mine], noise[mine], None if y is None else y[mine], learning_rate(recipe, step), step)
        run.step = step
        smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss
        if rank != 0:
            continue
        seconds = time.time() - t0 - previews
        if step % max(recipe["steps"] // 20, 1) == 0 or step == end:
            ips = (step - start) * recipe["batch"] / max(seconds, 1e-9)
            print(f"step {step}/{recipe['steps']} loss {smoothed:.4f} lr {learning_rate(recipe, step):.2e} "
                  f"grad norm {norm:.3f} {ips:.1f} img/s elapsed {seconds:.0f}s", flush=True)
        with open(os.path.join(args.out, "log.csv"), "a") as f:
            f.write(f"{step},{loss:.6f},{learning_rate(recipe, step):.6e},{norm:.6f},{seconds:.3f}\n")
        if recipe["sample_every"] and step % recipe["sample_every"] == 0 and step < recipe["steps"]:
            p0 = time.time()
            preview(run, os.path.join(args.out, "samples", f"step-{step:06d}.png"))
            previews += time.time() - p0
        if step % recipe["checkpoint_every"] == 0 or step == end:
            save_checkpoint(ckpt, run, step)
    if rank == 0:
        seconds = time.time() - t0 - previews
        print(f"trained steps {start + 1}..{end} in {seconds:.1f}s "
              f"({(end - start) * recipe['batch'] / max(seconds, 1e-9):.1f} images/s); checkpoint {ckpt}")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
