"""Readers for images on disk: a class-per-folder tree, or a list file of ``path,class[,category]``.

Together they cover In-Shop, VehicleID and users' own data: convert a benchmark's
annotation file into a list file (one ``path,class[,category]`` row per image).
Both decode on load from the file paths, so only the paths are held in memory.
"""

import csv
import os
import pathlib
import warnings

import numpy as np

from tfdml.data import images
from tfdml.data.base import READERS, SPLITS, EncodedImages, LabelledImages, class_disjoint_split


def image_folder(root, *, split="all", train_classes=None, channels=3, validate="decode"):
    """Images laid out as ``root/<class>/*.jpg`` or ``root/<category>/<class>/*.jpg``.

    The layout is detected from the first level: folders holding image files are
    classes; folders holding only sub-folders are categories. Class (and category)
    ids follow the sorted folder names; a class is named ``"category/class"`` in the
    two-level layout. Files with other extensions than ``.jpg .jpeg .png .gif .bmp``
    are ignored; images at the root itself belong to no class and are left out with
    a warning naming them.

    Args:
        root: the top folder.
        split: ``"all"`` (default), or a class-disjoint ``"train"`` (the first
            ``train_classes`` class ids) / ``"test"`` (the rest), as CUB-200 and CARS196
            are split in DML; these need at least 2 classes.
        train_classes: number of leading classes in ``"train"``; defaults to half,
            rounded up.
        channels: decoded channels (3 = RGB, 1 = grayscale).
        validate: ``"decode"`` (decode each image once now), ``"header"`` (check the
            file signature) or ``"none"``; unreadable images are skipped with a
            warning and listed in ``skipped``.

    Example:

    >>> shoes = image_folder("data/shoes", split="train")  # data/shoes/<model>/<photo>.jpg
    """
    root = pathlib.Path(root)
    if root.is_file():  # FileNotFoundError as for a missing root, which train.py reports in one line
        raise FileNotFoundError(f"image_folder: root {root} is a file, not a folder (a list file is read by list_file)")
    if not root.is_dir():
        raise FileNotFoundError(f"image_folder: root folder {root} does not exist")
    loose = sorted(f.name for f in root.iterdir() if _is_image(f))
    if loose:
        warnings.warn(
            f"image_folder: {len(loose)} image file(s) at the root of {root} are not in a class folder and are left "
            f"out: {', '.join(loose[:5])}{' …' if len(loose) > 5 else ''}",
            stacklevel=2,
        )
    class_dirs, category_of_class, category_names = _class_folders(root)
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(f for f in class_dir.iterdir() if f.is_file() and f.suffix.lower() in images.IMAGE_EXTENSIONS)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise ValueError(f"image_folder: no {images.IMAGE_EXTENSIONS} files under {root}")
    labels = np.array(labels, dtype=np.int64)
    categories = None if category_of_class is None else np.asarray(category_of_class, dtype=np.int64)[labels]
    class_names = [str(d.relative_to(root).as_posix()) for d in class_dirs]
    return _build(
        f"image_folder({root})", paths, labels, categories, class_names, category_names,
        split, train_classes, channels, validate,
    )


def list_file(path, *, image_root=None, split="all", train_classes=None, delimiter=",", channels=3,
              validate="decode"):
    """Images listed one per row as ``path,class[,category]``.

    Relative image paths are resolved against ``image_root`` (default: the list file's
    folder). Blank rows and rows starting with ``#`` are ignored, as is a first row
    whose first field is ``path`` (a header). Integer classes and categories keep
    their ids; otherwise names are numbered in sorted order and kept in
    ``class_names``/``category_names``. Rows without a category get ``-1``.

    Args:
        path: the list file.
        image_root: folder that relative image paths start from.
        split, train_classes, channels, validate: as for ``image_folder``; ``"train"``
            holds the ``train_classes`` smallest class ids.
        delimiter: the field separator.

    Example:

    >>> vehicles = list_file("VehicleID/train_list.csv", split="all")  # rows: image.jpg,vehicle_id
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"list_file: list file {path} does not exist")
    image_root = path.parent if image_root is None else pathlib.Path(image_root)
    rows = _read_rows(path, delimiter)
    paths = listed_paths(rows, image_root, path, "list_file")
    labels, class_names = _ids([row[1] for _, row in rows])
    categories, category_names = _ids([row[2] if len(row) == 3 else None for _, row in rows])
    return _build(
        f"list_file({path})", paths, labels, categories, class_names, category_names,
        split, train_classes, channels, validate,
    )


@READERS.register("folder")
def _folder_reader(root, *, split, image_size, **options):
    """``load("folder", root=...)``: :func:`image_folder`."""
    return image_folder(_required_root("folder", root), split=split, **options).resized_to(image_size)


@READERS.register("list")
def _list_reader(root, *, split, image_size, **options):
    """``load("list", root=...)``: :func:`list_file`, ``root`` being the list file."""
    return list_file(_required_root("list", root), split=split, **options).resized_to(image_size)


def _required_root(name, root):
    if root is None:
        raise ValueError(f"tfdml.data.load({name!r}) needs root=")
    return root


def _empty_class(folder):
    return ValueError(f"image_folder: class folder {folder} is empty (it holds no images); add images or remove it")


def _class_folders(root):
    """Class folders in id order, each class's category id (or ``None``), and the category names."""
    tops = sorted(d for d in root.iterdir() if d.is_dir())
    if not tops:
        raise ValueError(f"image_folder: {root} has no class or category folders")
    holds_images = [any(_is_image(f) for f in d.iterdir()) for d in tops]
    if all(holds_images):
        return tops, None, None
    if any(holds_images):
        # Beside class folders, a folder without images or sub-folders is an empty class, not a category.
        empty = [d for d, has in zip(tops, holds_images) if not has and not any(f.is_dir() for f in d.iterdir())]
        if empty:
            raise _empty_class(empty[0])
        flat = next(d for d, has in zip(tops, holds_images) if has)
        nested = next(d for d, has in zip(tops, holds_images) if not has)
        raise ValueError(
            f"image_folder: mixed layout under {root}: {flat} holds images (a class) but {nested} "
            "does not (a category); use root/<class>/*.jpg or root/<category>/<class>/*.jpg throughout"
        )
    class_dirs, category_of_class = [], []
    for category, top in enumerate(tops):
        classes = sorted(d for d in top.iterdir() if d.is_dir())
        empty = [d for d in classes if not any(_is_image(f) for f in d.iterdir())]
        if empty:
            raise _empty_class(empty[0])
        class_dirs += classes
        category_of_class += [category] * len(classes)
    return class_dirs, category_of_class, [d.name for d in tops]


def _is_image(path):
    return path.is_file() and path.suffix.lower() in images.IMAGE_EXTENSIONS


def listed_paths(rows, image_root, path, who):
    """The image paths of a list file's ``(line, row)`` pairs (``row[0]`` under ``image_root``); a missing one is an
    error naming it, the list file and its line."""
    paths = [image_root / row[0] for _, row in rows]
    missing = [(line, p) for (line, _), p in zip(rows, paths) if not p.is_file()]
    if missing:
        line, first = missing[0]
        raise FileNotFoundError(f"{who}: {len(missing)} listed image(s) do not exist, first {first} ({path}, line {line})")
    return paths


def _read_rows(path, delimiter):
    """``[(line number, fields)]`` of the data rows, checked for 2 or 3 fields."""
    rows = []
    with open(path, newline="") as list_handle:
        for line, fields in enumerate(csv.reader(list_handle, delimiter=delimiter), start=1):
            fields = [field.strip() for field in fields]
            if not any(fields) or fields[0].startswith("#"):
                continue
            if not rows and fields[0].lower() == "path":
                continue
            if len(fields) not in (2, 3) or not all(fields):
                raise ValueError(f"list_file: {path}, line {line}: expected 'path,class[,category]', got {fields}")
            rows.append((line, fields))
    if not rows:
        raise ValueError(f"list_file: {path} lists no images")
    return rows


def _ids(values):
    """Integer ids (``-1`` for ``None``) and the names when the values are not integers."""
    given = [v for v in values if v is not None]
    if not given:
        return np.full(len(values), -1, dtype=np.int64), None
    try:
        as_ints = {v: int(v) for v in given}
        names = None
    except ValueError:
        names = sorted(set(given))
        as_ints = {name: i for i, name in enumerate(names)}
    return np.array([-1 if v is None else as_ints[v] for v in values], dtype=np.int64), names


def _build(name, paths, labels, categories, class_names, category_names, split, train_classes, channels,
           validate):
    if split not in SPLITS:
        raise ValueError(f"{name}: split must be one of {SPLITS}, got {split!r}")
    # Checked before decoding, which can take long.
    first_test_label = None if split == "all" else _first_test_label(labels, split, train_classes, name)
    paths = [os.fspath(p) for p in paths]
    readable = images.decodable(paths, from_files=True, channels=channels, mode=validate)
    skipped = tuple(p for p, ok in zip(paths, readable) if not ok)
    images.report_skipped(name, skipped, len(paths))
    collection = LabelledImages(
        name=name,
        labels=labels[readable],
        load=EncodedImages(images.file_table([p for p, ok in zip(paths, readable) if ok]), channels),
        categories=None if categories is None else categories[readable],
        class_names=class_names,
        category_names=category_names,
        skipped=skipped,
    )
    return collection.subset(class_disjoint_split(collection.labels, split, first_test_label, name), f"{name}/{split}")


def _first_test_label(labels, split, train_classes, name):
    class_ids = np.unique(labels)
    if len(class_ids) < 2:
        raise ValueError(
            f"{name}: split={split!r} divides the classes into train and test, which needs at least 2 classes; "
            f"it has {len(class_ids)}. Use split='all'."
        )
    if train_classes is None:
        train_classes = (len(class_ids) + 1) // 2
    if not 0 < train_classes < len(class_ids):
        raise ValueError(
            f"{name}: train_classes must be in 1..{len(class_ids) - 1} for a train/test split of "
            f"{len(class_ids)} classes, got {train_classes}"
        )
    return class_ids[train_classes]
