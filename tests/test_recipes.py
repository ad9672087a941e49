"""Named recipes (model/recipe.py): listed with their values, applied by --recipe, single
values overridden by explicit options, and recorded in every checkpoint."""

import json

from click.testing import CliRunner

from gatta.training.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_recipes_lists_each_named_recipe_with_its_values():
    out = run("recipes", "--json")
    assert out.exit_code == 0, out.output
    listed = {r["name"]: r for r in json.loads(out.output)["recipes"]}
    assert listed["shipped-toy-head"]["settings"] == {"d": 16, "epochs": 100, "patience": 30, "precision": "fp32",
                                                      "augmentation": "shift-rotate-flip"}
    # every recipe names its augmentation: the one its backbone family trains with (the shipped
    # CIFAR-10 pair in memory, the Tiny-ImageNet pair streamed, each as it was trained)
    assert {r["settings"]["augmentation"] for n, r in listed.items() if "toy" in n} == {"shift-rotate-flip"}
    assert {r["settings"]["augmentation"] for n, r in listed.items() if "toy" not in n} == {"random-resized-crop"}
    assert listed["shipped-toy-backbone"]["settings"]["lr_schedule"] == "cosine"
    assert listed["paper-resnet-head"]["settings"]["patience"] == 1
    families = {f["family"]: f for f in json.loads(out.output)["families"]}
    assert families["toy"]["d"] == 16 and families["efficientnet"]["d"] == 8
    assert families["convnext"]["head"]["lr"] == 3e-4


def test_a_recipe_fills_what_is_not_given_and_the_checkpoint_records_it(tmp_path):
    out = run("backbone", "--recipe", "shipped-toy-backbone", "--epochs", 2, "--data", "synthetic:60:3",
              "--val-size", 12, "--num-workers", 0, "--out", tmp_path / "bb")
    assert out.exit_code == 0, out.output
    rows = [json.loads(l) for l in (tmp_path / "bb" / "log.jsonl").read_text().splitlines()]
    # 2 epochs (the override), cosine (the recipe) over those 2: epoch 2 starts at half the rate
    assert len(rows) == 2 and abs(rows[1]["lr"] - 5e-4) < 1e-12 and rows[0]["precision"] == "fp32"
    summary = run("summary", "--ckpt", tmp_path / "bb" / "last.pt", "--json")
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.output)["recipe"] == {"name": "shipped-toy-backbone", "overrides": {"epochs": 2},
                                                    "stage": "backbone"}
    # the head: a run folder freezes its last epoch; the recipe's d and patience, the epochs given
    out = run("head", "--recipe", "shipped-toy-head", "--epochs", 1, "--backbone-ckpt", tmp_path / "bb",
              "--data", "synthetic:60:3", "--num-workers", 0, "--out", tmp_path / "head")
    assert out.exit_code == 0, out.output
    recorded = json.loads(run("summary", "--ckpt", tmp_path / "head" / "last.pt", "--json").output)
    assert recorded["d"] == 16 and recorded["recipe"]["name"] == "shipped-toy-head"
    assert recorded["recipe"]["overrides"] == {"epochs": 1}


def test_a_wrong_recipe_is_one_line():
    out = run("head", "--recipe", "shipped-toy-backbone", "--backbone-ckpt", "x", "--data", "synthetic:8", "--out", "o")
    assert out.exit_code == 2 and "recipe 'shipped-toy-backbone' is for gatta-train backbone, not head" in out.output
    out = run("backbone", "--recipe", "nope", "--data", "synthetic:8", "--out", "o")
    assert out.exit_code == 2 and "unknown recipe 'nope'; known: paper-toy-backbone" in out.output
