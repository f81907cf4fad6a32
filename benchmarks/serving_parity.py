"""Served Recall@1 on the Omniglot test split, measured as a client would: without tfdml.

Reads the 2,120 test drawings' original PNG bytes straight from the two zips (``zipfile``),
sends them through ``serving_bytes`` of the embedding export and of the retrieval export
(``--export-gallery test``) loaded with plain ``tf.saved_model.load``, and computes Recall@1
with NumPy: for the embeddings, the nearest other drawing; for the retrieval model, its first
neighbour that is not the query itself (its ids are positions in the test split). Both must equal
the Recall@1 that ``train.py`` printed for the trained model.

Usage (after ``python train.py pipelines/omniglot_fastap.yaml --export-gallery test``)::

    python -m benchmarks.serving_parity --zips tfdml/data/omniglot_background_small \\
        --embedding-model models/omniglot_fastap/1 --search-model models/omniglot_fastap-search/1
"""

import argparse
import json
import pathlib
import sys
import zipfile

import numpy as np
import tensorflow as tf

ZIPS = ("images_background_small1.zip", "images_background_small2.zip")


def test_drawings(root):
    """PNG bytes and class of each test drawing, in the reader's order: the alphabets found only in
    the second zip, characters by (alphabet, name), drawings by file name."""
    members, alphabets = {}, []
    for name in ZIPS:
        with zipfile.ZipFile(pathlib.Path(root) / name) as archive:
            found = set()
            for member in archive.namelist():
                parts = member.split("/")
                if len(parts) == 4 and parts[3].endswith(".png"):
                    found.add(parts[1])
                    members.setdefault(tuple(parts[1:]), archive.read(member))
            alphabets.append(found)
    test_alphabets = sorted(alphabets[1] - alphabets[0])
    keys = sorted(
        (key for key in members if key[0] in test_alphabets), key=lambda k: (test_alphabets.index(k[0]), k[1], k[2])
    )
    classes = {character: i for i, character in enumerate(dict.fromkeys(k[:2] for k in keys))}
    return [members[k] for k in keys], np.array([classes[k[:2]] for k in keys])


def serve(model_dir, files, batch_size=256):
    signature = tf.saved_model.load(model_dir).signatures["serving_bytes"]
    answers = [signature(image_bytes=tf.constant(files[i : i + batch_size])) for i in range(0, len(files), batch_size)]
    return {key: np.concatenate([answer[key].numpy() for answer in answers]) for key in answers[0]}


def embedding_recall_at_1(embeddings, labels):
    squared = np.sum(embeddings**2, axis=1)
    distances = squared[:, None] + squared[None, :] - 2.0 * embeddings @ embeddings.T
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(labels[np.argmin(distances, axis=1)] == labels))


def search_recall_at_1(ids, labels):
    """First returned neighbour other than the query itself (ids are test-split positions)."""
    first_other = np.array([row[row != query][0] for query, row in enumerate(ids)])
    return float(np.mean(labels[first_other] == labels))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zips", required=True, help="folder holding the two Omniglot background-small zips")
    parser.add_argument("--embedding-model", required=True, help="models/<name>/<version>")
    parser.add_argument("--search-model", required=True, help="models/<name>-search/<version>")
    args = parser.parse_args(argv)
    files, labels = test_drawings(args.zips)
    result = {
        "drawings": len(files),
        "embedding_recall_at_1": embedding_recall_at_1(serve(args.embedding_model, files)["embeddings"], labels),
        "search_recall_at_1": search_recall_at_1(serve(args.search_model, files)["ids"], labels),
    }
    assert "tfdml" not in sys.modules
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
