"""A photo folder's classes mapped into the classes a backbone's weights answer with.

GAttANet trains only K, Q and alpha on a frozen backbone that keeps its own classifier, so a
folder with photos of a few ImageNet classes trains against the weights' 1000 outputs: each
class folder is matched to one of the weights' classes by name (``goldfish``,
``golden_retriever``: case, ``_`` and ``-`` aside; or one of its comma-separated synonyms,
``goldfish, Carassius auratus``, as Tiny-ImageNet's words.txt names it), by WordNet id
(``n01443537``; timm knows the ids, so this needs timm installed) or by an explicit class map,
``--class-map FILE.json``::

    {"my_fish": "goldfish", "dogs": 207}

(a folder to a class name or index; folders it leaves out are matched by name). The checkpoint
keeps the weights' full label list, so the exported model answers with their names.

>>> map_folders(["goldfish", "tench"], ["tench", "goldfish", "great white shark"])
[1, 0]
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .families import family_of

WNID = re.compile(r"n\d{8}")


class ClassMapError(ValueError):
    """A class folder or class-map entry that names none of the weights' classes."""


def imagenet_categories() -> list[str]:
    """ImageNet-1k's class names in index order, as torchvision's weights tables name them
    (read offline; every ImageNet-1k classifier uses this order)."""
    import torchvision

    return list(torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"])


def imagenet_wnids() -> list[str] | None:
    """ImageNet-1k's WordNet ids in index order (``n01440764`` ...), or None without timm."""
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        return None
    return list(ImageNetInfo().label_names())


def _key(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").split()).casefold()


def read_class_map(path: str | Path) -> dict[str, int | str]:
    """A ``{"folder": class index or name}`` JSON file; one-line errors naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ClassMapError(f"{path}: no such class map file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClassMapError(f"{path}: not JSON ({exc}); expected {{\"folder\": class index or name}}") from None
    if not isinstance(data, dict) or not all(isinstance(v, (int, str)) and not isinstance(v, bool)
                                             for v in data.values()):
        raise ClassMapError(f"{path}: expected one JSON object {{\"folder\": class index or name, ...}}")
    return data


def map_folders(folders: list[str], categories: list[str], class_map: dict[str, int | str] | None = None,
                where: str = "the data", space: str = "the weights") -> list[int]:
    """The index in ``categories`` of each class folder, in order. ``class_map`` entries come
    first; a folder names its class, or is its WordNet id. The first folder that matches
    nothing, two folders on one class, or a class-map entry for no folder: one line."""
    class_map = dict(class_map or {})
    owner = space + ("'" if space.endswith("s") else "'s")  # "the weights'", "resnet18's"
    stray = [k for k in class_map if k not in folders]
    if stray:
        raise ClassMapError(f"class map entry {stray[0]!r} names no class folder of {where} "
                            f"(its folders: {', '.join(folders[:5])}{' ...' if len(folders) > 5 else ''})")
    exact = {c: i for i, c in enumerate(categories)}
    by_key: dict[str, list[int]] = {}
    for i, c in enumerate(categories):
        by_key.setdefault(_key(c), []).append(i)

    def named(name: str) -> int | None:
        """The class called ``name``: its exact spelling first, then ignoring case, '_' and '-'
        (one line when that is ambiguous: ImageNet has 'Cardigan' the dog and 'cardigan' the
        sweater)."""
        if name in exact:
            return exact[name]
        found = by_key.get(_key(name), [])
        if len(found) > 1:
            raise ClassMapError(f"class {name!r} of {where} could be any of {owner} "
                                f"{', '.join(f'{categories[i]!r} ({i})' for i in found)}; name the class exactly or "
                                f"map it by index in --class-map FILE.json")
        return found[0] if found else None

    wnids: list[str] | None = None
    taken: dict[int, str] = {}
    out = []
    for folder in folders:
        target = class_map.get(folder, folder)
        hint = (f"; map it in --class-map FILE.json ({{\"{folder}\": class index or name}})"
                if folder not in class_map else "")
        if isinstance(target, int):
            if not 0 <= target < len(categories):
                raise ClassMapError(f"class map: {folder!r} -> {target}, outside {owner} classes 0..{len(categories) - 1}")
            index = target
        elif named(target) is not None:
            index = named(target)
        elif any(named(part.strip()) is not None for part in target.split(",")):  # WordNet synonyms, as words.txt has them
            index = next(named(part.strip()) for part in target.split(",") if named(part.strip()) is not None)
        elif WNID.fullmatch(target):
            wnids = wnids or imagenet_wnids()
            if wnids is None:
                raise ClassMapError(f"class folder {folder!r} of {where} is a WordNet id: matching ids needs timm "
                                    f"(pip install 'gattanet[timm]'){hint}")
            if len(wnids) != len(categories) or target not in wnids:
                raise ClassMapError(f"class folder {folder!r} of {where}: {target} is not one of {owner} "
                                    f"{len(categories)} classes' WordNet ids{hint}")
            index = wnids.index(target)
        else:
            what = f"class folder {folder!r}" if target == folder else f"class map: {folder!r} -> {target!r}"
            raise ClassMapError(f"{what} of {where} is none of {owner} {len(categories)} classes (a name such as "
                                f"{categories[1]!r}, or a WordNet id such as n01443537){hint}")
        if index in taken:
            raise ClassMapError(f"class folders {taken[index]!r} and {folder!r} of {where} both map to class "
                                f"{index} ({categories[index]!r}) of {space}")
        taken[index] = folder
        out.append(index)
    return out


def weights_classes(backbone: str, weights: str | Path | None, folders: list[str],
                    class_map: dict[str, int | str] | None = None, where: str = "the data") -> tuple[list[str], list[int]] | None:
    """``(the weights' class names, each folder's index among them)`` when a head on
    ``backbone`` trains against the weights' own classes: a class map is given, or the weights'
    classifier has as many outputs as the family's published class list (ImageNet's 1000) and
    the data has another number of classes. None: the data's classes are the model's (no
    weights, or weights trained on as many classes as the data has)."""
    family = family_of(backbone)
    categories = family.categories(backbone) if family.categories is not None else None
    if class_map is None:
        if weights is None or categories is None or len(folders) == len(categories):
            return None
        if family.classifier_width(backbone, weights) != len(categories):
            return None  # weights of the user's own classes; loading checks the width
    elif categories is None:
        raise ClassMapError(f"--class-map: {backbone} has no published class list to map into")
    space = f"{backbone}'s weights"
    return categories, map_folders(folders, categories, class_map, where, space)


__all__ = ["ClassMapError", "imagenet_categories", "imagenet_wnids", "map_folders", "read_class_map",
           "weights_classes"]
