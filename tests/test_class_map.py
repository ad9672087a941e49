"""A photo folder of a few ImageNet classes on ImageNet weights: each class folder mapped to the
weights' class (by name, WordNet id or --class-map), the checkpoint keeping all 1000 names."""

import json

import pytest
import torch
from click.testing import CliRunner

from gatta.model.checkpoint import load_checkpoint
from gatta.model.classes import ClassMapError, imagenet_categories, map_folders, read_class_map, weights_classes
from gatta.training.cli import main as train_cli

from helpers import write_image_folder

GOLDFISH, TENCH, GOLDEN_RETRIEVER = 1, 0, 207


@pytest.fixture(scope="module")
def categories():
    return imagenet_categories()


@pytest.fixture(scope="module")
def effnet_weights(tmp_path_factory):
    """A random EfficientNet-B0 state dict with ImageNet's 1000 outputs, as a user's file."""
    import torchvision

    path = tmp_path_factory.mktemp("weights") / "efficientnet_b0.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.efficientnet_b0(num_classes=1000).state_dict(), path)
    return path


def test_folders_match_by_name_wordnet_id_or_class_map(categories):
    assert len(categories) == 1000 and categories[GOLDEN_RETRIEVER] == "golden retriever"
    assert map_folders(["goldfish", "Golden_Retriever", "n01440764"], categories) == [GOLDFISH, GOLDEN_RETRIEVER, TENCH]
    assert map_folders(["Carassius auratus, goldfish", "tench, Tinca tinca"], categories) == [GOLDFISH, TENCH]
    assert map_folders(["my_fish", "dogs", "tench"], categories,
                       {"my_fish": "goldfish", "dogs": GOLDEN_RETRIEVER}) == [GOLDFISH, GOLDEN_RETRIEVER, TENCH]


def test_a_folder_that_matches_nothing_is_named_in_one_line(categories, tmp_path):
    with pytest.raises(ClassMapError, match=r"class folder 'kitten' of photos/ is none of .*--class-map FILE\.json") as exc:
        map_folders(["goldfish", "kitten", "pony"], categories, where="photos/")
    assert "pony" not in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ClassMapError, match=r"'goldfish' and 'n01443537' .* both map to class 1 \('goldfish'\)"):
        map_folders(["goldfish", "n01443537"], categories)
    with pytest.raises(ClassMapError, match=r"class map: 'fish' -> 1000, outside .* 0\.\.999"):
        map_folders(["fish"], categories, {"fish": 1000})
    with pytest.raises(ClassMapError, match=r"class map entry 'fihs' names no class folder"):
        map_folders(["fish"], categories, {"fihs": 1})
    with pytest.raises(ClassMapError, match=r"n09999999 is not one of .* WordNet ids"):
        map_folders(["n09999999"], categories)
    # ImageNet has 'Cardigan' (the corgi, 264) and 'cardigan' (the sweater, 474): the exact name
    # picks one, a spelling that could be either is refused rather than trained on the wrong one
    assert map_folders(["Cardigan", "cardigan"], categories) == [264, 474]
    with pytest.raises(ClassMapError, match=r"class 'CARDIGAN' of the data could be any of the weights' 'Cardigan' \(264\), 'cardigan' \(474\)"):
        map_folders(["CARDIGAN"], categories)
    (tmp_path / "map.json").write_text('["goldfish"]')
    with pytest.raises(ClassMapError, match=r"map\.json: expected one JSON object"):
        read_class_map(tmp_path / "map.json")
    (tmp_path / "map.json").write_text('{"fish": 1,')
    with pytest.raises(ClassMapError, match=r"map\.json: not JSON"):
        read_class_map(tmp_path / "map.json")


def test_weights_of_imagenet_classes_are_mapped_into_and_others_are_not(effnet_weights, tmp_path, categories):
    names, indices = weights_classes("efficientnet_b0", effnet_weights, ["goldfish", "tench"])
    assert names == categories and indices == [GOLDFISH, TENCH]
    assert weights_classes("efficientnet_b0", None, ["goldfish", "tench"]) is None  # random backbone: the data's classes
    import torchvision

    own = tmp_path / "own.pth"  # weights fine-tuned on the user's own 2 classes keep them
    torch.save(torchvision.models.efficientnet_b0(num_classes=2).state_dict(), own)
    assert weights_classes("efficientnet_b0", own, ["cat", "dog"]) is None
    assert weights_classes("toy", None, ["a", "b"]) is None


def test_head_on_imagenet_weights_trains_a_photo_folder_against_their_classes(effnet_weights, tmp_path, categories):
    """The user path: gatta-train head on a folder named by ImageNet classes, one epoch."""
    photos = write_image_folder(tmp_path / "photos", n_per_class=4, classes=("goldfish", "golden_retriever", "n01440764"),
                                size=40)
    (tmp_path / "map.json").write_text(json.dumps({"golden_retriever": "golden retriever"}))
    args = ["head", "--backbone", "efficientnet_b0", "--backbone-weights", str(effnet_weights), "--data", str(photos),
            "--out", str(tmp_path / "run"), "--epochs", "1", "--image-size", "64", "--val-size", "3",
            "--class-map", str(tmp_path / "map.json"), "--threads", "2"]
    result = CliRunner().invoke(train_cli, args)
    assert result.exit_code == 0, result.output
    model, meta = load_checkpoint(tmp_path / "run" / "best.pt")
    assert model.config.num_classes == 1000 and model.config.class_names == categories
    assert meta.class_map == {"goldfish": GOLDFISH, "golden_retriever": GOLDEN_RETRIEVER, "n01440764": TENCH}
    shown = CliRunner().invoke(train_cli, ["summary", "--ckpt", str(tmp_path / "run" / "best.pt")])
    assert "golden_retriever -> 207 (golden retriever), goldfish -> 1 (goldfish), n01440764 -> 0 (tench)" in shown.output
    # evaluation labels the folder as the head was trained: its validation split, mapped
    scored = CliRunner().invoke(train_cli, ["eval", "--ckpt", str(tmp_path / "run" / "best.pt"), "--data", str(photos),
                                            "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["rows"][0]["n"] == 3
    compared = CliRunner().invoke(train_cli, ["compare", str(tmp_path / "run" / "best.pt"), "--data", str(photos), "--json"])
    assert compared.exit_code == 0 and json.loads(compared.output)["n"] == 3, compared.output
    from gatta.training.data import load_dataset
    from gatta.training.runs import in_trained_classes

    folder = load_dataset(str(photos), model.config.preprocessing, mode="memory")
    labelled = in_trained_classes(folder, str(photos), model, meta, "best.pt")
    assert labelled.labels.tolist() == [GOLDEN_RETRIEVER] * 4 + [GOLDFISH] * 4 + [TENCH] * 4
    # an unknown folder: one line naming it, before any model is built
    (photos / "kitten").mkdir()
    for p in list((photos / "goldfish").iterdir())[:2]:
        p.rename(photos / "kitten" / p.name)
    args[args.index("--out") + 1] = str(tmp_path / "run2")
    result = CliRunner().invoke(train_cli, args)
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "class folder 'kitten'" in result.output and "--class-map" in result.output
