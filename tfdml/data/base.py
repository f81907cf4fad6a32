"""The in-memory description of a labelled image collection that every reader returns.

Samplers (``tfdml.sampling``) work on the label arrays alone and emit batches of
indices; ``load`` turns an index into an image inside a ``tf.data`` map, so a
reader never has to hold decoded images in memory.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class LabelledImages:
    """A labelled image collection with random access by index.

    Attributes:
        name: human-readable name (e.g. ``"omniglot/train"``), used in messages.
        labels: int64 ``(n,)`` class label of each image.
        load: ``index (int64 scalar tensor) -> image (h, w, c) tensor`` (uint8 or float32 in [0, 255]);
            must be traceable by ``tf.data.Dataset.map``.
        categories: optional int64 ``(n,)`` category (super-class) of each image, ``-1`` where unknown.
        class_names / category_names: optional names indexed by label / category id.
    """

    name: str
    labels: np.ndarray
    load: Callable[[tf.Tensor], tf.Tensor]
    categories: Optional[np.ndarray] = None
    class_names: Optional[list] = None
    category_names: Optional[list] = None

    def __len__(self):
        return int(self.labels.shape[0])
