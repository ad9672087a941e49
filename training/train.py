"""Training loops: the toy backbone from scratch, and the attention head on a frozen backbone.

Stages: ``backbone`` (the backbone alone), ``head`` (K, Q, alpha on a frozen backbone) and
``joint`` (backbone and head together, the paper's second open question). All share ``fit``:
Adam (or SGD, with a cosine schedule, for ResNets from scratch), seeded shuffling, the recipe's augmentation (training/augment.py), per-epoch metrics to a
JSONL log, early stopping on validation accuracy, ``best.pt`` / ``last.pt`` checkpoints and
``--resume`` from ``last.pt``. Head training also runs data-parallel under ``torchrun``
(gloo on CPU, nccl on GPU); only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gatta.model.families import family_of
from gatta.model.checkpoint import CheckpointMeta, load_checkpoint, read_checkpoint, save_checkpoint
from .augment import check_augmentation
from .dataset import ImageSet
from gatta.model.network import GattaNet


@dataclass
class FitOptions:
    stage: str  # "backbone", "head" or "joint"
    out_dir: Path
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    l2: float = 0.0  # L2 penalty on K/Q weights (head) or all weights (backbone)
    patience: int = 50
    augmentation: str | None = None  # training/augment.py's name; None: the model family's
    seed: int = 0
    device: str = "cpu"  # resolved already: see ``resolve_device``
    resume: bool = False
    progress: bool | None = None  # None: bars only on a terminal
    channels_last: bool = True  # oneDNN's fast layout for convolutions and pooling on CPU
    clip_grad: float | None = None  # clip the gradient's global norm (stabilises T >= 2)
    precision: str = "fp32"  # bf16: autocast for the training steps only (validation is fp32); auto: see resolve_precision
    optimizer: str = "adam"  # adam | sgd (momentum 0.9, Nesterov)
    schedule: str = "constant"  # constant | cosine (to 0 over ``epochs``)
    run_meta: CheckpointMeta = field(default_factory=CheckpointMeta)  # data, split, origin


STAGES = ("backbone", "head", "joint")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")


def make_optimizer(params, opts: FitOptions) -> torch.optim.Optimizer:
    if opts.optimizer == "adam":
        return torch.optim.Adam(params, lr=opts.lr)
    if opts.optimizer == "sgd":
        return torch.optim.SGD(params, lr=opts.lr, momentum=0.9, nesterov=True)
    raise ValueError(f"optimizer {opts.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")


def epoch_lr(opts: FitOptions, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (1-based): a function of the epoch alone, so a
    resumed run continues the schedule where it stopped."""
    if opts.schedule == "constant":
        return opts.lr
    if opts.schedule == "cosine":
        return opts.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(opts.epochs, 1)))
    raise ValueError(f"schedule {opts.schedule!r}: choose one of {', '.join(SCHEDULES)}")
PRECISIONS = ("fp32", "bf16", "auto")


def resolve_precision(precision: str, stage: str, device: str, cpu_head_bf16: bool = True) -> str:
    """``auto``: bf16 where a short run showed the same accuracy as fp32 (toy-model head training
    on the CPU: 3 CIFAR-10 epochs within 0.02 points, docs/results.md), fp32 everywhere else until
    measured (the backbone, joint fine-tuning, CUDA, ResNet heads: a ResNet18 head step at 64 px,
    batch 8, was no faster in bf16 on the CPU, 101 vs 110 img/s)."""
    if precision != "auto":
        return precision
    return "bf16" if cpu_head_bf16 and stage == "head" and torch.device(device).type == "cpu" else "fp32"


def resolve_device(device: str = "auto") -> str:
    """``auto``: the first CUDA GPU when there is one, else the CPU. On CUDA, TF32 is turned off
    (``ieee_fp32``)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is available here (use --device auto or cpu)")
        ieee_fp32()
    return device


def ieee_fp32() -> None:
    """TF32 off: PyTorch runs fp32 convolutions in TF32 by default, so without this "fp32" on a
    GPU would carry a 10-bit mantissa that the CPU runs and the served model (export/verify.py)
    do not. bf16 is asked for explicitly (``--precision bf16``). Legacy flags, as the tests read
    them: mixing them with the newer ``fp32_precision`` API raises on reading."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def describe_device(device: str) -> str:
    """One line for the first line of a run's output."""
    if device.startswith("cuda"):
        tf32 = "on" if torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32 else "off"
        return f"device: {device} ({torch.cuda.get_device_name(torch.device(device))}, TF32 {tf32})"
    gpu = "" if torch.cuda.is_available() else ", no CUDA GPU found"
    return f"device: cpu ({torch.get_num_threads()} threads{gpu})"


# -- distributed helpers --------------------------------------------------------------------
def dist_info() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _all_sum(values: list[float], device) -> list[float]:
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


class _Objective(nn.Module):
    """What one training step differentiates, as a module so DDP can wrap it: the backbone's
    logits (stage ``backbone``) or GAttANet's (``head``, ``joint``)."""

    def __init__(self, model: GattaNet, stage: str):
        super().__init__()
        self.model, self.stage = model, stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stage == "backbone":
            return self.model.forward_backbone(x)
        return self.model(x).logits


def trainable_parameters(model: GattaNet, stage: str) -> list[nn.Parameter]:
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; choose one of {', '.join(STAGES)}")
    # Whatever does not train is marked so: DDP waits for a gradient of every parameter that
    # requires one, and the backbone stage's forward never reaches the head.
    model.head.requires_grad_(stage != "backbone")
    if stage == "head":
        model.freeze_backbone()
        return list(model.head.parameters())
    model.unfreeze_backbone()
    if stage == "joint":
        return [*model.backbone.parameters(), *model.head.parameters()]
    return list(model.backbone.parameters())


def _l2_penalty(model: GattaNet, stage: str) -> torch.Tensor:
    if stage in ("head", "joint"):  # the head's recipe: L2 on K and Q only
        mats = [m.weight for m in (*model.head.keys, *model.head.queries)]
    else:
        mats = [p for n, p in model.backbone.named_parameters() if n.endswith("weight")]
    return sum((w * w).sum() for w in mats)


# -- evaluation ------------------------------------------------------------------------------
@torch.no_grad()
def predict(model: GattaNet, data: ImageSet, indices: torch.Tensor, batch_size: int = 256,
            noise_sigma: float = 0.0, lesion_masks: dict[str, list[float]] | None = None,
            device="cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-image correctness (bool [N]) for ``baseline``, ``gattanet`` and each lesion
    pattern. Gaussian noise (pixel scale [0, 1], seeded, not clipped) is added first."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    results: dict[str, list[torch.Tensor]] = {"baseline": [], "gattanet": []}
    for name in lesion_masks or {}:
        results[name] = []
    for x, y in data.eval_batches(indices, batch_size, device):
        if noise_sigma:
            x = x + noise_sigma * torch.randn(x.shape, generator=g).to(device)
        out = model(x)
        results["baseline"].append((out.baseline_logits.argmax(1) == y).cpu())
        results["gattanet"].append((out.logits.argmax(1) == y).cpu())
        for name, mask in (lesion_masks or {}).items():
            m = torch.tensor(mask, device=device)
            results[name].append((model(x, lesion_mask=m).logits.argmax(1) == y).cpu())
    return {k: torch.cat(v) for k, v in results.items()}


def _validate(model: GattaNet, data: ImageSet, val_idx: torch.Tensor, opts: FitOptions,
              rank: int, world: int) -> dict[str, float]:
    model.eval()
    shard = val_idx[rank::world]
    loss_sum = correct = base_correct = 0.0
    with torch.no_grad():
        for x, y in data.eval_batches(shard, 512, opts.device):
            x = x.contiguous(memory_format=torch.channels_last if opts.channels_last else torch.contiguous_format)
            if opts.stage == "backbone":
                logits = base = model.forward_backbone(x)
            else:
                out = model(x)
                logits, base = out.logits, out.baseline_logits
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            base_correct += (base.argmax(1) == y).sum().item()
    loss_sum, correct, base_correct = _all_sum([loss_sum, correct, base_correct], opts.device)
    n = len(val_idx)
    metrics = {"val_loss": loss_sum / n, "val_acc": correct / n}
    if opts.stage != "backbone":
        metrics["val_baseline_acc"] = base_correct / n
    return metrics


# -- the loop ----------------------------------------------------------------------------------
@dataclass
class _Progress:
    """Where a run stands: what resuming restores and every epoch updates."""

    start_epoch: int = 1
    best: dict = field(default_factory=lambda: {"val_acc": -1.0})
    stale: int = 0  # epochs since the best one


def _resume(model: GattaNet, optimizer, opts: FitOptions, path: Path, rank: int) -> _Progress:
    payload = read_checkpoint(path)
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(payload["optimizer"])
    meta = CheckpointMeta.from_dict(payload["meta"])
    # The optimizer's saved state carries the old learning rate; the one asked for now wins
    # (fit sets every epoch's rate), so a run can be resumed with a lower rate once it plateaus.
    # Said only when the rate asked for differs from the schedule the run was on.
    planned = epoch_lr(opts, meta.epoch)
    for group in optimizer.param_groups:
        if abs(group["lr"] - planned) > 1e-12 and rank == 0:
            print(f"learning rate {group['lr']:g} -> {planned:g} (and on along the {opts.schedule} schedule)")
    if "rng_state" in payload:
        torch.set_rng_state(payload["rng_state"])
    if rank == 0:
        print(f"resuming {opts.stage} training at epoch {meta.epoch + 1} (best val_acc {meta.best['val_acc']:.4f})")
    return _Progress(meta.epoch + 1, meta.best, meta.stale)


def _epoch_batches(data: ImageSet, train_idx: torch.Tensor, generator: torch.Generator, epoch: int,
                   opts: FitOptions, rank: int, world: int):
    """(this rank's batches of epoch ``epoch``, their number): sampling.epoch_plan's seeded
    order, the same number of steps on every rank, and the run's augmentation, held or streamed
    alike (training/dataset.py); ``shift-rotate-flip`` draws from ``generator`` after the order."""
    return data.train_batches(train_idx, epoch, opts.seed, opts.batch_size, rank, world, opts.augmentation,
                              opts.device, generator)


def _train_epoch(objective, model: GattaNet, params, optimizer, epoch_batches, epoch: int, opts: FitOptions,
                 hide_bar: bool | None) -> dict:
    """One pass over ``epoch_batches`` (see _epoch_batches); returns loss/accuracy sums over
    this rank's images."""
    from tqdm.auto import tqdm

    layout = torch.channels_last if opts.channels_last else torch.contiguous_format
    model.train()
    t0, seen, loss_sum, correct = time.time(), 0, 0.0, 0
    bar = tqdm(epoch_batches[0], total=epoch_batches[1], desc=f"{opts.stage} epoch {epoch}", leave=False,
               disable=hide_bar)
    device_type = torch.device(opts.device).type
    for x, y in bar:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=opts.precision == "bf16"):
            logits = objective(x.contiguous(memory_format=layout)).float()
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{opts.stage} epoch {epoch}: the loss became {loss.item()} after {seen} images; "
                "lower --lr or clip the gradient (--clip-grad 1)")
        total = loss + opts.l2 * _l2_penalty(model, opts.stage) if opts.l2 else loss
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if opts.clip_grad:
            torch.nn.utils.clip_grad_norm_(params, opts.clip_grad)
        optimizer.step()
        seen += len(y)
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
    return {"seconds": time.time() - t0, "seen": seen, "loss_sum": loss_sum, "correct": correct}


def _print_epoch(stage: str, metrics: dict, improved: bool) -> None:
    extra = f" (baseline {metrics['val_baseline_acc']:.4f})" if "val_baseline_acc" in metrics else ""
    print(f"{stage} epoch {metrics['epoch']}: loss {metrics['train_loss']:.4f} "
          f"train_acc {metrics['train_acc']:.4f} val_acc {metrics['val_acc']:.4f}{extra} "
          f"{metrics['images_per_s']:.0f} img/s{' *' if improved else ''}", flush=True)


def fit(model: GattaNet, data, train_idx: torch.Tensor, val_idx: torch.Tensor,
        opts: FitOptions) -> dict:
    """Train ``opts.stage``'s parameters on ``data`` (held or streamed); returns the best
    epoch's metrics."""
    rank, world = dist_info()
    out = Path(opts.out_dir)
    if torch.device(opts.device).type == "cuda":
        ieee_fp32()  # also for callers that pass a device without resolve_device
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        print(describe_device(opts.device), flush=True)
    torch.manual_seed(opts.seed)
    if opts.precision not in PRECISIONS:
        raise ValueError(f"precision {opts.precision!r}: choose one of {', '.join(PRECISIONS)}")
    family = family_of(model.config.backbone)
    opts = replace(opts, precision=resolve_precision(opts.precision, opts.stage, opts.device, family.cpu_head_bf16),
                   augmentation=check_augmentation(opts.augmentation or family.augmentation))
    if torch.device(opts.device).type == "cuda" and data.held:  # page-locked: batches copy asynchronously
        data = replace(data, images=data.images.pin_memory())
    model.to(opts.device)
    model.to(memory_format=torch.channels_last if opts.channels_last else torch.contiguous_format)
    params = trainable_parameters(model, opts.stage)
    epoch_lr(opts, 1)  # an unknown schedule fails before any work
    optimizer = make_optimizer(params, opts)
    state = _Progress()
    if opts.resume and (out / "last.pt").exists():
        state = _resume(model, optimizer, opts, out / "last.pt", rank)
    objective = _Objective(model, opts.stage)
    if world > 1:
        objective = nn.parallel.DistributedDataParallel(objective)
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    # tqdm's disable=None: bars only on a terminal
    hide_bar = True if rank != 0 or opts.progress is False else (None if opts.progress is None else False)
    g = torch.Generator().manual_seed(opts.seed)
    for epoch in range(state.start_epoch, opts.epochs + 1):
        if state.stale >= opts.patience:
            break
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(opts, epoch)
        sums = _train_epoch(objective, model, params, optimizer,
                            _epoch_batches(data, train_idx, g, epoch, opts, rank, world), epoch, opts, hide_bar)
        loss_sum, correct, seen = _all_sum([sums["loss_sum"], sums["correct"], float(sums["seen"])], opts.device)
        metrics = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                   **_validate(model, data, val_idx, opts, rank, world),
                   "seconds": round(sums["seconds"], 2), "images_per_s": round(seen / sums["seconds"], 1),
                   "lr": optimizer.param_groups[0]["lr"], "device": opts.device, "precision": opts.precision}
        if opts.stage != "backbone":
            metrics["alpha"] = [round(a, 5) for a in model.head.alpha.tolist()]
        improved = metrics["val_acc"] > state.best["val_acc"]
        state.best, state.stale = (metrics, 0) if improved else (state.best, state.stale + 1)
        if rank == 0:
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            _print_epoch(opts.stage, metrics, improved)
            meta = replace(opts.run_meta, stage=opts.stage, epoch=epoch, best=state.best,
                           stale=state.stale, metrics=metrics)
            if improved:
                save_checkpoint(out / "best.pt", model, meta)
            save_checkpoint(out / "last.pt", model, meta, optimizer.state_dict(), torch.get_rng_state())
    if log:
        log.close()
    model.to(memory_format=torch.contiguous_format)
    if world > 1:
        dist.barrier()
    if (out / "best.pt").exists():  # hand back the best weights, not the last
        best_model, _ = load_checkpoint(out / "best.pt", opts.device)
        model.load_state_dict(best_model.state_dict())
    return state.best
