"""Copy a few held-out pictures of a dataset into samples/, one per named class, named by class
(``golden_retriever.jpg``), for the demo and the docs. They come from the checkpoint's own
validation split (never trained on, never the test set), the first of each class in split order,
copied byte for byte.

    python scripts/pick_samples.py --ckpt models/tiny-imagenet-resnet18-d8.pt \
        --data ../data/tiny-imagenet-200 --out samples/tiny-imagenet goldfish monarch "school bus"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gatta.model.checkpoint import load_checkpoint
from gatta.training.runs import split_data
from gatta.training.layouts import list_dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True, help="Its validation split (size, seed) is used.")
    parser.add_argument("--data", type=Path, required=True, help="The dataset it was trained on (folder or .tar).")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("classes", nargs="+", help="Readable class names (words.txt's first name).")
    args = parser.parse_args()

    _, meta = load_checkpoint(args.ckpt)
    listing = list_dataset(args.data)
    _, val = split_data(listing, meta.val_size, meta.split_seed)  # the split training used
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.classes:
        if name not in listing.class_names:
            raise SystemExit(f"{name!r} is not a class of {args.data}")
        label = listing.class_names.index(name)
        i = next(int(i) for i in val if int(listing.labels[i]) == label)
        dest = args.out / (name.replace(" ", "_") + Path(listing.files[i]).suffix.lower().replace(".jpeg", ".jpg"))
        dest.write_bytes(listing.read(i))
        print(f"{dest}  <- {listing.files[i]}")


if __name__ == "__main__":
    main()
