"""``gatta-train``: train the toy backbone, train the attention head, evaluate, summarise."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from gatta.extras import require
from gatta.lesion import LesionError

require("torch", "train")

import torch  # noqa: E402

from gatta.model.families import family_of  # noqa: E402
from gatta.model.checkpoint import CheckpointError  # noqa: E402
from gatta.model.classes import read_class_map  # noqa: E402
from .augment import AUGMENTATIONS  # noqa: E402
from .data import DataError  # noqa: E402
from .evaluate import evaluation_table, run_evaluation  # noqa: E402
from gatta.model.network import GattaNet  # noqa: E402
from gatta.model.recipe import DEFAULT_SPLIT_SEED, DEFAULT_VAL_SIZE, RECIPES, head_config, named_recipe  # noqa: E402

EPOCHS_DEFAULT = 500  # the paper's "typically less than 500 epochs" for the toy model
from .runs import HeadOptions, RunOptions, checkpoint_and_images, finetune as finetune_run, train_backbone, train_head  # noqa: E402
from .train import dist_info, resolve_device  # noqa: E402


def friendly_errors(fn):
    """Known failures become one-line ``Error: ...`` messages with exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DataError, CheckpointError, LesionError, ValueError, FileNotFoundError, FloatingPointError) as exc:
            raise click.ClickException(str(exc).splitlines()[0]) from None

    return wrapper


def _device(ctx, param, value):
    try:
        return resolve_device(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


DEVICE_OPTION = click.option(
    "--device", default="auto", show_default=True, callback=_device,
    help="auto: the CUDA GPU when there is one, else the CPU; or cpu, cuda, cuda:1.")


def _backbone_name(ctx, param, value):
    """A backbone name any family knows (model/families/); an unknown one gets one line."""
    if value is None:
        return value
    try:
        family_of(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


BACKBONE_HELP = ("A torchvision classification builder (resnet18, efficientnet_b0, convnext_tiny, mobilenet_v3_small, "
                 "regnet_y_400mf, densenet121, vgg16_bn, ...), timm:NAME (the timm extra), or the paper's toy / toy-wide; "
                 "docs/backbones.md lists the families.")


def with_recipe(stage: str):
    """``--recipe NAME``: the named recipe's settings (model/recipe.py, ``gatta-train recipes``)
    fill every option not given on the command line; the run records the name and the options
    that overrode it (checkpoint meta ``recipe`` and ``overrides``)."""
    def decorate(fn):
        @click.option("--recipe", "recipe_name", default=None,
                      help=f"A named {stage} recipe (gatta-train recipes); options given here override its values.")
        @functools.wraps(fn)
        def wrapper(*, recipe_name, **kwargs):
            ctx = click.get_current_context()
            applied, overrides = {}, {}
            if recipe_name is not None:
                try:
                    found = named_recipe(recipe_name, stage)
                except ValueError as exc:
                    raise click.BadParameter(str(exc), param_hint="--recipe") from None
                for key, value in found.settings.items():
                    if ctx.get_parameter_source(key) == ParameterSource.COMMANDLINE:
                        overrides[key] = kwargs[key]
                    else:
                        kwargs[key] = applied[key] = value
            ctx.meta["recipe"] = {"name": recipe_name or "", "overrides": overrides, "applied": sorted(applied)}
            return fn(**kwargs)
        return wrapper
    return decorate


def given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was set on the command line or by the named recipe."""
    return (ctx.get_parameter_source(name) != ParameterSource.DEFAULT
            or name in ctx.meta.get("recipe", {}).get("applied", []))


def run_options(fn):
    """The options every training run takes, handed to the command as one ``RunOptions``."""
    opts = [
        click.option("--data", required=True, help="Dataset: CIFAR pickle folder, ImageFolder tree, .tar.gz of one, or synthetic:N[:classes]."),
        click.option("--out", type=click.Path(path_type=Path), required=True, help="Run directory: log.jsonl, best.pt, last.pt."),
        click.option("--val-size", default=DEFAULT_VAL_SIZE, show_default=True, help="Held-out validation images (seeded, stratified)."),
        click.option("--split-seed", default=DEFAULT_SPLIT_SEED, show_default=True, help="Seed of the validation split."),
        click.option("--epochs", default=EPOCHS_DEFAULT, show_default=True,
                     help="At most this many epochs (early stopping may end sooner) [ResNet backbone: 30, the "
                          "cosine schedule's span]."),
        click.option("--patience", type=int, default=None, help="Early-stopping patience in epochs [backbone 50, toy head 500, ResNet head 1]."),
        click.option("--batch-size", type=int, default=None, help="[paper: 128 toy, 8 ResNet]"),
        click.option("--lr", type=float, default=None, help="Learning rate [paper: Adam 1e-3 toy, 3e-4 ResNet head; SGD 0.1 for a ResNet backbone]."),
        click.option("--augmentation", type=click.Choice(AUGMENTATIONS), default=None,
                     help="Training augmentation, the same in memory and streamed [the backbone family's: toy "
                          "shift-rotate-flip (the paper's), ImageNet-style CNNs random-resized-crop]."),
        click.option("--no-augment", is_flag=True, help="Disable augmentation (--augmentation none)."),
        click.option("--seed", default=0, show_default=True),
        DEVICE_OPTION,
        click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)."),
        click.option("--num-workers", default=2, show_default=True,
                     help="Threads that decode images (streamed data: DataLoader worker processes per rank)."),
        click.option("--data-mode", type=click.Choice(["auto", "memory", "stream"]), default="auto", show_default=True,
                     help="memory: decode every image once into RAM; stream: read and decode per batch (image "
                          "folders, plain .tar); either way the run's --augmentation. auto: stream random-resized-crop "
                          "training (to crop the stored picture) and any set whose decoded pictures would pass 4 GiB."),
        click.option("--resume", is_flag=True, help="Continue from OUT/last.pt."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
                     help="bf16: mixed precision (autocast) for the training steps; validation stays fp32. auto: bf16 "
                          "for toy-model head training on the CPU (measured: same accuracy, 1.28x faster), fp32 otherwise. "
                          "fp32 on a GPU is IEEE fp32 (TF32 off): slower than PyTorch's TF32 default for large "
                          "convolutions; bf16 is the fast choice there, not yet measured for accuracy."),
        click.option("--clip-grad", type=float, default=None, help="Clip the gradient's global norm (e.g. 1 for --iterations >= 2)."),
        click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default=None,
                     help="constant, or cosine decay to 0 over --epochs [toy: constant (the paper); ResNet "
                          "backbone: cosine]."),
    ]

    @functools.wraps(fn)
    def with_run(*, data, out, val_size, split_seed, epochs, patience, batch_size, lr, augmentation, no_augment, seed,
                 device, threads, num_workers, data_mode, resume, precision, clip_grad, lr_schedule, **rest):
        if no_augment and augmentation not in (None, "none"):
            raise click.UsageError(f"--no-augment and --augmentation {augmentation} contradict each other; give one")
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)  # head/backbone initialisation is reproducible
        recipe = click.get_current_context().meta.get("recipe", {})
        run = RunOptions(data=data, out=out, epochs=epochs, val_size=val_size, split_seed=split_seed,
                         patience=patience, batch_size=batch_size, lr=lr, augmentation="none" if no_augment else augmentation,
                         seed=seed, device=device, num_workers=num_workers, data_mode=data_mode, resume=resume,
                         precision=precision, clip_grad=clip_grad, schedule=lr_schedule,
                         recipe=recipe.get("name", ""), overrides=recipe.get("overrides", {}))
        return fn(run, **rest)

    for opt in reversed(opts):
        with_run = opt(with_run)
    return with_run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Train and evaluate GAttANet models (global attention agreement on a frozen CNN).

    \b
    Typical run (CIFAR-10, the paper's toy model):
      gatta-train backbone --data cifar10.tar.gz --out runs/backbone
      gatta-train head --backbone-ckpt runs/backbone/best.pt --data cifar10.tar.gz --out runs/head
      gatta-train eval --ckpt runs/head/best.pt --data cifar10.tar.gz --noise 0 --noise 0.05
    """


@main.command()
@with_recipe("backbone")
@run_options
@click.option("--backbone", default="toy", show_default=True, callback=_backbone_name,
              help="toy-wide: the paper's control, conv channels 33/65/131 so that the backbone "
                   "alone has the parameters of toy + a d=16 head. Any other family (e.g. resnet18 on "
                   "Tiny-ImageNet): from scratch, SGD + cosine decay over --epochs. " + BACKBONE_HELP)
@click.option("--image-size", type=int, default=None, help="Square input side [toy 32, ResNet 224].")
@click.option("--crop-pct", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="ResNets: evaluation crop fraction, shorter side to int(size / crop_pct) then centre crop "
                   "[0.875; 1 keeps the whole picture, e.g. 64 px Tiny-ImageNet].")
@friendly_errors
def backbone(run, backbone, image_size, crop_pct):
    """Train a backbone from scratch: the paper's toy model (Adam, batch 128, augmentation, early
    stopping with patience 50, at most --epochs 500) or a torchvision ResNet (not in the paper:
    SGD with Nesterov momentum, lr 0.1, batch 128, weight decay 5e-4, cosine decay over
    --epochs, 30 unless given; random-resized crop + flip)."""
    family = family_of(backbone)
    if family.data_normalisation and crop_pct is not None:
        raise click.UsageError(f"--crop-pct applies to ImageNet-style backbones; {backbone} sees the whole picture")
    if not given(click.get_current_context(), "epochs"):  # the family's budget (a cosine schedule spans it: not the toy's 500 epochs)
        run.epochs = family.backbone_epochs
    train_backbone(run, backbone, image_size or family.image_size, crop_pct)


@main.command()
@with_recipe("head")
@run_options
@click.option("--backbone-ckpt", type=click.Path(path_type=Path),
              help="A trained backbone (gatta-train backbone): its run folder freezes the run's last epoch (the "
                   "schedule's end, not best.pt: docs/results-first-model.md), or a checkpoint file.")
@click.option("--backbone", "backbone_name", default=None, callback=_backbone_name,
              help="Pretrained backbone when no --backbone-ckpt. " + BACKBONE_HELP)
@click.option("--backbone-weights", type=click.Path(exists=True, path_type=Path),
              help="Local state-dict file for --backbone (torch.save(model.state_dict()); nothing is downloaded).")
@click.option("--image-size", type=int, default=None,
              help="Input side [the weights' own: torchvision's DEFAULT weights' transform, timm's pretrained_cfg].")
@click.option("--crop-pct", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="--backbone: evaluation resizes the shorter side to int(size / crop_pct) and crops the "
                   "centre [the weights' own; 0.875 with --image-size].")
@click.option("--d", "d", type=int, default=None, help="Key/query dimension [the family's: toy 16, others 8].")
@click.option("--iterations", default=1, show_default=True, help="Attention steps (1 = the paper's two passes).")
@click.option("--l2", type=float, default=None, help="L2 on K/Q weights [paper: 1e-5 toy, 0 ResNet].")
@click.option("--qk-dropout", default=0.25, show_default=True)
@click.option("--qk-batchnorm/--no-qk-batchnorm", default=None, help="[paper: on for ResNets]")
@click.option("--gatta-layernorm/--no-gatta-layernorm", default=None, help="[paper: on for ResNets]")
@click.option("--alpha-init", default=0.0, show_default=True)
@click.option("--init-ckpt", type=click.Path(path_type=Path), default=None,
              help="Start from this GAttANet checkpoint's head (same backbone), e.g. to keep training a shipped model.")
@click.option("--class-map", type=click.Path(path_type=Path), default=None,
              help="--backbone-weights: JSON {\"folder\": class index or name} mapping class folders into the weights' "
                   "classes [folders named by class or WordNet id are matched without it].")
@friendly_errors
def head(run, backbone_ckpt, backbone_name, backbone_weights, image_size, crop_pct, d, iterations, l2, qk_dropout,
         qk_batchnorm, gatta_layernorm, alpha_init, init_ckpt, class_map):
    """Train the attention head (K, Q, alpha) on a frozen backbone. Runs data-parallel under
    torchrun (e.g. ``torchrun --nproc-per-node 2 -m gatta.training.cli head ...``)."""
    if backbone_ckpt is None and backbone_name is None:
        raise click.UsageError("give --backbone-ckpt (a trained backbone) or --backbone NAME --backbone-weights FILE")
    if class_map is not None and backbone_ckpt is not None:
        raise click.UsageError("--class-map maps class folders into --backbone NAME's weights; a --backbone-ckpt keeps its own classes")
    run.l2 = l2
    best = train_head(run, HeadOptions(d, iterations, qk_dropout, qk_batchnorm, gatta_layernorm, alpha_init, init_ckpt),
                      backbone_ckpt, backbone_name, backbone_weights, image_size, crop_pct,
                      read_class_map(class_map) if class_map is not None else None)
    if dist_info()[0] == 0:
        click.echo(f"best epoch {best.get('epoch')}: val_acc {best['val_acc']:.4f} "
                   f"(frozen baseline {best.get('val_baseline_acc', float('nan')):.4f})")


@main.command()
@with_recipe("finetune")
@run_options
@click.option("--ckpt", type=click.Path(path_type=Path), required=True, help="GAttANet checkpoint to start from (e.g. the shipped model).")
@click.option("--train", "what", type=click.Choice(["joint", "backbone"]), default=None,
              help="joint: backbone and head together; backbone: the backbone alone, the head kept as it is (the control).")
@friendly_errors
def finetune(run, ckpt, what):
    """Fine-tune a trained GAttANet: the backbone jointly with the attention head (the paper's
    second open question), or, as its control, the backbone alone with the same budget, recipe
    and data order. The validation split is the checkpoint's.

    \b
      gatta-train finetune --ckpt models/cifar10-toy-d16.pt --train joint --data D --out runs/joint --epochs 10 --lr 1e-4
      gatta-train finetune --ckpt models/cifar10-toy-d16.pt --train backbone --data D --out runs/ft-backbone --epochs 10 --lr 1e-4
    """
    if what is None:
        raise click.UsageError("give --train joint or --train backbone (or a --recipe that sets it)")
    best = finetune_run(run, ckpt, what)
    if dist_info()[0] == 0:
        click.echo(f"best epoch {best.get('epoch')}: val_acc {best['val_acc']:.4f}")


@main.command("compare")
@click.argument("entries", nargs=-1, required=True)
@click.option("--data", required=True, help="Same dataset as training; the checkpoints' validation split is used.")
@click.option("--noise", type=float, default=0.0, show_default=True, help="Gaussian noise sigma (pixel scale [0,1]).")
@click.option("--batch-size", default=256, show_default=True)
@DEVICE_OPTION
@click.option("--json", "as_json", is_flag=True)
@click.option("--num-workers", default=2, show_default=True)
@friendly_errors
def compare_cmd(entries, data, noise, batch_size, device, as_json, num_workers):
    """Checkpoints side by side on the same validation images, each against the first with
    paired 95% CIs. An entry ``PATH@T`` runs that checkpoint with T attention steps.

    \b
      gatta-train compare models/cifar10-toy-d16.pt models/cifar10-toy-d16.pt@2 runs/t2/best.pt --data D
    """
    from .compare import compare_checkpoints, comparison_table

    report = compare_checkpoints(entries, data, noise, batch_size, device, num_workers)
    report["device"] = device
    click.echo(json.dumps(report, indent=2) if as_json else comparison_table(report))


@main.command("eval")
@click.option("--ckpt", type=click.Path(path_type=Path), required=True)
@click.option("--data", required=True, help="Same dataset as training; the checkpoint's validation split is used.")
@click.option("--split", type=click.Choice(["val", "all", "test"]), default="val", show_default=True,
              help="val: the checkpoint's validation split; all: every training image; test: the held-out set "
                   "(CIFAR's test batch, the official val/ of Tiny-ImageNet/ImageNet), to score once at the end.")
@click.option("--data-mode", type=click.Choice(["auto", "memory", "stream"]), default="auto", show_default=True)
@click.option("--noise", "noise", type=float, multiple=True, help="Gaussian noise sigma (pixel scale [0,1]); repeat for several.")
@click.option("--lesion", "lesions", multiple=True, help="Lesion pattern like c.cdd; 'singles' = every single-layer lesion and single-layer-only pattern.")
@click.option("--batch-size", default=256, show_default=True)
@DEVICE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
@click.option("--num-workers", default=2, show_default=True)
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Attention steps at test time [the checkpoint's own].")
@friendly_errors
def eval_cmd(ckpt, data, split, data_mode, noise, lesions, batch_size, device, as_json, num_workers, iterations):
    """Accuracy of the frozen baseline and of GAttANet, under noise and lesions."""
    model, dataset, indices = checkpoint_and_images(ckpt, data, device, num_workers, split, data_mode)
    if iterations:
        model.config.iterations = iterations
    report = run_evaluation(model, dataset, indices, noise or (0.0,), lesions, batch_size, device)
    report["checkpoint"], report["split"], report["device"] = str(ckpt), split, device
    click.echo(json.dumps(report, indent=2) if as_json else evaluation_table(report))


@main.command()
@click.option("--ckpt", type=click.Path(path_type=Path), required=True)
@click.option("--data", required=True, help="Same dataset as training; the checkpoint's validation split is used.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("docs/results"), show_default=True)
@click.option("--noise", "noise", type=float, multiple=True, help="Noise levels [0 .01 .02 .03 .04 .05 .1 .25].")
@click.option("--no-umap", is_flag=True, help="Skip the UMAP figure (umap-learn).")
@DEVICE_OPTION
@click.option("--num-workers", default=2, show_default=True)
@friendly_errors
def report(ckpt, data, out, noise, no_umap, device, num_workers):
    """The paper's analyses on a checkpoint: accuracy gain with CI, noise, lesions, q_avg
    space (UMAP), top-down bias. Writes results.json, report.md and PNG figures to OUT."""
    from .report import NOISE_LEVELS, build_report

    model, dataset, indices = checkpoint_and_images(ckpt, data, device, num_workers, "val")
    build_report(model, dataset, indices, out, noise or NOISE_LEVELS, umap=not no_umap, device=device,
                 echo=lambda m: click.echo(f"... {m}", err=True))
    click.echo((out / "report.md").read_text())


@main.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the curves as a PNG here.")
@click.option("--last", default=20, show_default=True, help="Average over this many final epochs.")
@click.option("--json", "as_json", is_flag=True)
def curves(logs, out, last, as_json):
    """Validation accuracy per epoch from training logs (log.jsonl): best epoch, mean of the
    last epochs, and for head runs the mean gain over the frozen baseline.

    \b
      gatta-train curves models/cifar10-toy-backbone.log.jsonl models/cifar10-toy-d16.log.jsonl --out curves.png
    """
    from .curves import curves_figure, markdown, read_log, summarize

    def run_name(path: Path) -> str:
        return path.parent.name if path.name == "log.jsonl" else path.name.removesuffix(".jsonl").removesuffix(".log")

    try:
        names = [run_name(p) for p in logs]
        names = [n if names.count(n) == 1 else str(p) for n, p in zip(names, logs)]
        runs = {n: read_log(p) for n, p in zip(names, logs)}
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    summaries = {name: summarize(rows, last) for name, rows in runs.items()}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        curves_figure(runs, out)
    click.echo(json.dumps(summaries, indent=2) if as_json else markdown(summaries), nl=False)


@main.command()
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The checkpoint to ship, e.g. models/NAME.pt.")
@click.option("--data", default=None, help="Where the reference pictures come from [the checkpoint's own dataset].")
@click.option("--half/--no-half", default=True, show_default=True,
              help="Store the backbone's weights in half precision (the head stays FP32).")
@click.option("--probes", type=click.IntRange(min=1), default=16, show_default=True,
              help="Validation pictures kept with the FP32 model's logits.")
@click.option("--num-workers", default=2, show_default=True)
@friendly_errors
def ship(ckpt, out, data, half, probes, num_workers):
    """A checkpoint made to ship: no optimizer or RNG state, the backbone in half precision,
    and the FP32 model's logits on a few validation pictures, against which every export of
    the file verifies (training/shipping.py).

    \b
      gatta-train ship runs/tiny-imagenet/head-d8/best.pt --out models/tiny-imagenet-resnet18-d8.pt
    """
    from .shipping import ship_checkpoint

    r = ship_checkpoint(ckpt, out, data, half, probes, num_workers)
    c = r["check"]
    click.echo(f"{out}: {r['bytes_out'] / 1e6:.1f} MB (from {r['bytes_in'] / 1e6:.1f} MB; backbone "
               f"{'half' if half else 'FP32'}); against the FP32 model on {r['source']}: logits rel "
               f"{c['logits_rel']:.1e}, probs abs {c['probs_abs']:.1e}, top-1 {c['top1_agree']}/{c['n']}")


@main.command()
@click.option("--backbone", default="toy", show_default=True, callback=_backbone_name, help=BACKBONE_HELP)
@click.option("--ckpt", type=click.Path(path_type=Path), default=None,
              help="A checkpoint instead: its model's counts and layers, and the recipe it was trained with.")
@click.option("--num-classes", default=10, show_default=True)
@click.option("--d", "d", type=int, default=None, help="[the family's: toy 16, others 8]")
@click.option("--image-size", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def summary(backbone, ckpt, num_classes, d, image_size, as_json):
    """Parameter counts and attached layers of a model, without training it.

    The head is built with its family's recipe (ResNets: batch norm on keys/queries, layer norm
    on gatta). attention_params counts as the paper's Table 1 does (Keras: batch norm's running
    statistics included); attention_trainable is what the optimiser updates."""
    recipe, class_map = None, {}
    if ckpt is not None:
        from gatta.model.checkpoint import load_checkpoint

        model, meta = load_checkpoint(ckpt)
        backbone, d = model.config.backbone, model.config.d
        recipe = {"name": meta.recipe, "overrides": meta.overrides, "stage": meta.stage}
        class_map = meta.class_map
    else:
        family = family_of(backbone)
        d = d or family.d
        model = GattaNet(head_config(backbone, num_classes=num_classes, d=d, image_size=image_size or family.image_size))
    counts = model.parameter_counts()
    layers = [{"name": t.name, "kind": t.kind, "shape": list(t.shape)} for t in model.taps]
    if as_json:
        click.echo(json.dumps({**counts, "layers": layers, "d": d, "backbone": backbone,
                               **({"recipe": recipe} if recipe is not None else {}),
                               **({"class_map": class_map} if class_map else {})}))
        return
    if recipe is not None:
        click.echo(f"{ckpt}: {recipe['stage'] or 'trained'} run, recipe {recipe['name'] or '(none: family defaults)'}"
                   + (f", overridden: {recipe['overrides']}" if recipe["overrides"] else ""))
    click.echo(f"backbone {backbone}: {counts['backbone_params']:,} parameters (frozen)")
    click.echo(f"attention head d={d}: {counts['attention_params']:,} parameters as Table 1 counts them, "
               f"{counts['attention_trainable']:,} trained")
    for t in layers:
        click.echo(f"  {t['name']:<8} {t['kind']:<5} {'x'.join(map(str, t['shape']))}")
    if class_map:
        names = model.config.class_names
        click.echo(f"class folders trained as {len(names)} classes: "
                   + ", ".join(f"{folder} -> {i} ({names[i]})" for folder, i in class_map.items()))


@main.command()
@click.option("--json", "as_json", is_flag=True)
def recipes(as_json):
    """The named recipes (--recipe NAME on gatta-train backbone / head) with their values, and
    each backbone family's defaults (what a run without --recipe uses)."""
    from gatta.model.families import FAMILIES

    named = [{"name": r.name, "stage": r.stage, "what": r.what, "settings": r.settings} for r in RECIPES.values()]
    families = [{"family": f.name, "backbone": vars(f.backbone_recipe), "backbone_epochs": f.backbone_epochs,
                 "head": vars(f.head_recipe), "d": f.d, "augmentation": f.augmentation} for f in FAMILIES]
    if as_json:
        click.echo(json.dumps({"recipes": named, "families": families}))
        return
    for r in named:
        values = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in r["settings"].items())
        click.echo(f"{r['name']:<26} {r['stage']:<9} {values}\n{'':<36} {r['what']}")
    click.echo("\nfamily defaults (no --recipe):")
    for f in families:
        b, h = f["backbone"], f["head"]
        click.echo(f"  {f['family']:<13} backbone {b['optimizer']} {b['lr']:g} batch {b['batch_size']} {b['schedule']} "
                   f"{f['backbone_epochs']} epochs | head d={f['d']} {h['optimizer']} {h['lr']:g} batch {h['batch_size']} "
                   f"patience {h['patience']} | {f['augmentation']}")


if __name__ == "__main__":
    sys.exit(main())
