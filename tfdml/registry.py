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
        self._fallbacks = []

    def register(self, *names):
        """Decorator: the decorated builder is ``get(name)`` for each of ``names`` (a name and its aliases)."""

        def add(builder):
            for name in names:
                if name in self._builders:
                    raise ValueError(f"{self.kind} {name!r} is already registered (by {self._builders[name]!r}).")
                self._builders[name] = builder
            return builder

        return add

    def fallback(self, description):
        """Decorator: a resolver ``name -> builder or None`` for a family too large or open to register name by
        name (every ``keras.applications`` model), tried in order for unregistered names; ``description``
        completes the unknown-name error. A resolver raises ``ValueError`` itself for a name it claims but
        cannot build."""

        def add(resolve):
            self._fallbacks.append((resolve, description))
            return resolve

        return add

    @property
    def names(self):
        return tuple(sorted(self._builders))

    def __contains__(self, name):
        """Registered, or claimed by a fallback resolver."""
        try:
            self.get(name)
        except ValueError:
            return False
        return True

    def __iter__(self):
        return iter(self.names)

    def get(self, name):
        """The builder registered as ``name``, else the first fallback resolver's; an unknown name is a
        ``ValueError`` listing the registered names and the fallbacks' descriptions."""
        if name in self._builders:
            return self._builders[name]
        for resolve, _ in self._fallbacks:
            builder = resolve(name)
            if builder is not None:
                return builder
        alternatives = "".join(f", or {description}" for _, description in self._fallbacks)
        raise ValueError(f"unknown {self.kind} {name!r}; expected one of {', '.join(self.names)}{alternatives}.")
