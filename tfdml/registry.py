"""Name registries: the datasets, backbones and optimizers a recipe names.

Each kind has one :class:`Registry`; a dataset reader, backbone or optimizer registers itself by
name in its own module, so adding one is one module (recipe validation reads the registry's
names). Loss, miner and sampler classes are looked up in Keras' serialisation registry instead
(``keras.saving.register_keras_serializable(package="tfdml")``), under the name they are saved by.

Example:

>>> OPTIMIZERS = Registry("optimizer")
>>> @OPTIMIZERS.register("adam")
... def adam(learning_rate, weight_decay):
...     return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)
>>> OPTIMIZERS.get("adam") is adam
True
"""


class Registry:
    """Builders of one ``kind`` by name: ``get(name)``; ``names`` (sorted) and ``in`` for validation."""

    def __init__(self, kind):
        self.kind = kind
        self._builders = {}

    def register(self, *names):
        """Decorator: the decorated builder is ``get(name)`` for each of ``names`` (a name and its aliases)."""

        def add(builder):
            for name in names:
                if name in self._builders:
                    raise ValueError(f"{self.kind} {name!r} is already registered (by {self._builders[name]!r}).")
                self._builders[name] = builder
            return builder

        return add

    @property
    def names(self):
        return tuple(sorted(self._builders))

    def __contains__(self, name):
        return name in self._builders

    def __iter__(self):
        return iter(self.names)

    def get(self, name):
        """The builder registered as ``name``; an unknown name is a ``ValueError`` listing the known ones."""
        if name not in self._builders:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of {', '.join(self.names)}.")
        return self._builders[name]
