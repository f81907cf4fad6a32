"""CrossBatchMemory: a NumPy reference from Wang et al. 2020, PML parity over several steps, refusals, XLA,
two replicas equal to one device (memory included), and recipe keys."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import pml_parity
from finite_differences import central_differences, tape_gradient
import tfdml
from tfdml.losses import CircleLoss, ContrastiveLoss, CrossBatchMemory, MultiSimilarityLoss, NTXentLoss
from tfdml.losses import contrastive_all_pairs
from tfdml.masks import Keys
from tfdml.mining import MultiSimilarityMiner
from tfdml.training import MetricLearningModel
from tfdml.training.config import ConfigError, load_config
from tfdml.training.factory import build_loss

import paths

BATCH, DIM, MEMORY, STEPS, START = 6, 4, 4, 4, 1
MARGIN, POSITIVE_MARGIN = 1.5, 0.2


def reference_contrastive(labels, x, key_labels, key_x):
    """Roth et al.'s eq. 1 averaged over every pair of query ``i`` with key ``j``, its own copy (``j = i``) left out."""
    terms = []
    for i in range(len(labels)):
        for j in range(len(key_labels)):
            if j == i:
                continue
            d = np.linalg.norm(x[i] - key_x[j])
            terms.append(max(d - POSITIVE_MARGIN, 0.0) if labels[i] == key_labels[j] else max(MARGIN - d, 0.0))
    return np.mean(terms)


def reference_run(batches):
    """Wang et al.'s XBM with a FIFO of the last MEMORY samples, used and filled from step START on."""
    memory_x, memory_labels, values = np.zeros((0, DIM)), np.zeros(0, np.int64), []
    for step, (x, labels) in enumerate(batches):
        if step < START:
            values.append(reference_contrastive(labels, x, labels, x))
            continue
        values.append(
            reference_contrastive(labels, x, np.concatenate([labels, memory_labels]), np.concatenate([x, memory_x]))
        )
        memory_x, memory_labels = np.concatenate([memory_x, x])[-MEMORY:], np.concatenate([memory_labels, labels])[-MEMORY:]
    return values, memory_x, memory_labels


def sequence(seed=0):
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(BATCH, DIM)).astype(np.float32), rng.permutation(np.arange(BATCH) % 3).astype(np.int64))
        for _ in range(STEPS)
    ]


def memory_loss(start_step=START):
    return CrossBatchMemory(
        ContrastiveLoss(margin=MARGIN, positive_margin=POSITIVE_MARGIN, pairs="all", miner=None),
        memory_size=MEMORY, embedding_dim=DIM, start_step=start_step,
    )


def check_memory(loss, memory_x, memory_labels):
    filled = int(loss.memory_filled.numpy())
    assert filled == len(memory_labels)
    np.testing.assert_allclose(loss.memory_embeddings.numpy()[MEMORY - filled:], memory_x, rtol=1e-6)
    np.testing.assert_array_equal(loss.memory_labels.numpy()[MEMORY - filled:], memory_labels)


@pytest.mark.reference("CrossBatchMemory")
@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "xla"])
def test_memory_matches_the_fifo_reference_with_warm_up(jit_compile):
    """A batch larger than the memory (only its last MEMORY rows stay), a warm-up step, then the memory in use."""
    batches = sequence()
    expected, memory_x, memory_labels = reference_run(batches)
    loss = memory_loss()
    call = tf.function(loss.__call__, jit_compile=True) if jit_compile else loss
    values = [float(call(tf.constant(labels), tf.constant(x))) for x, labels in batches]
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert values[2] != pytest.approx(reference_contrastive(batches[2][1], batches[2][0], batches[2][1], batches[2][0]))
    check_memory(loss, memory_x, memory_labels)
    assert int(loss.step.numpy()) == STEPS


@pytest.mark.reference("CrossBatchMemory")
def test_float64_gradient_through_queries_and_in_batch_keys_not_the_memory():
    (memory_x, memory_labels), (x, labels) = sequence(1)[:2]
    memory_x = memory_x.astype(np.float64)
    key_labels = np.concatenate([labels, memory_labels])

    def loss(embeddings):
        keys = Keys(tf.concat([embeddings, memory_x], 0), tf.constant(key_labels), tf.ones(12, tf.bool), tf.range(6))
        return contrastive_all_pairs(
            tf.constant(labels), embeddings, MARGIN, POSITIVE_MARGIN, keys=keys
        )

    def reference(embeddings):
        return reference_contrastive(labels, embeddings, key_labels, np.concatenate([embeddings, memory_x]))

    x = x.astype(np.float64)
    assert float(loss(tf.constant(x))) == pytest.approx(reference(x), rel=1e-12)
    np.testing.assert_allclose(tape_gradient(loss, x), central_differences(reference, x), atol=1e-7)


def test_pml_parity_over_several_steps():
    """PML's CrossBatchMemory (memory_size = ours + the batch) around each supported loss: the values at every step;
    the gradient where the keys are detached as PML's are (``pml_differs`` says why the others differ)."""
    classes = {"MultiSimilarityLoss": MultiSimilarityLoss, "CircleLoss": CircleLoss, "NTXentLoss": NTXentLoss,
               "TripletLoss": tfdml.losses.TripletLoss}
    for case in pml_parity.cases("CrossBatchMemory"):
        params = dict(case["params"])
        if "miner" in case:
            params["miner"] = getattr(tfdml.mining, case.get("miner_class", "MultiSimilarityMiner"))(**case["miner"])
        inputs = zip(case["inputs"]["embeddings"], case["inputs"]["labels"], case["loss"], case["grad"], strict=True)
        if case["loss_class"] == "contrastive_all_pairs":
            memory_x, memory_labels = np.zeros((0, 8)), np.zeros(0, np.int64)
        else:
            loss = CrossBatchMemory(classes[case["loss_class"]](**params), case["memory_size"], embedding_dim=8)
        for step, (x, labels, pml_value, pml_grad) in enumerate(inputs):
            x = tf.constant(x, tf.float64 if case["loss_class"] == "contrastive_all_pairs" else tf.float32)
            with tf.GradientTape() as tape:
                tape.watch(x)
                if case["loss_class"] == "contrastive_all_pairs":
                    keys = Keys(
                        tf.concat([tf.stop_gradient(x), memory_x], 0), tf.constant(np.concatenate([labels, memory_labels])),
                        tf.ones(len(labels) + len(memory_labels), tf.bool), tf.range(len(labels)),
                    )
                    value = contrastive_all_pairs(tf.constant(labels), x, **params, keys=keys)
                    memory_x = np.concatenate([memory_x, x.numpy()])[-case["memory_size"]:]
                    memory_labels = np.concatenate([memory_labels, labels])[-case["memory_size"]:]
                else:
                    value = loss(labels, x)
            np.testing.assert_allclose(value.numpy(), pml_value, rtol=2e-5, err_msg=f"{case['id']} step {step}")
            if "pml_differs" not in case:
                np.testing.assert_allclose(tape.gradient(value, x).numpy(), pml_grad, rtol=1e-6, atol=1e-9,
                                           err_msg=f"{case['id']} step {step}")
    assert {case["id"] for case in pml_parity.cases("CrossBatchMemory") if "pml_differs" not in case}


@pytest.mark.parametrize(
    "loss, named",
    [
        (lambda: tfdml.losses.QuadrupletLoss(), "QuadrupletLoss"),
        (lambda: tfdml.losses.TripletLoss(miner=tfdml.mining.TripletMarginMiner()), "TripletMarginMiner"),
        (lambda: tfdml.losses.ProxyAnchorLoss(num_classes=3, embedding_dim=DIM), "ProxyAnchorLoss"),
        (lambda: tfdml.losses.MarginLoss(beta_image=True, num_images=10), "beta_image"),
    ],
    ids=["quadruplet", "triplet-miner", "proxies", "beta-image"],
)
def test_losses_and_miners_without_keys_are_refused_by_name(loss, named):
    with pytest.raises(TypeError, match=named):
        CrossBatchMemory(loss(), memory_size=8, embedding_dim=DIM)


def test_evaluation_neither_reads_nor_writes_the_memory():
    loss = memory_loss(start_step=0)
    x, labels = sequence()[0]
    loss(labels, x)
    before = loss.memory_embeddings.numpy().copy()
    evaluated = loss.value(labels, x * 2.0, training=False)
    assert float(evaluated) == pytest.approx(float(loss.loss(labels, x * 2.0)))
    np.testing.assert_array_equal(loss.memory_embeddings.numpy(), before)
    assert int(loss.step.numpy()) == 1


def embedder():
    inputs = keras.Input((DIM,))
    return keras.Model(inputs, keras.layers.Dense(DIM, activation="tanh")(inputs))


def test_two_replicas_hold_the_memory_of_one_device_on_the_global_batch(rng, mirrored_strategy):
    """Three steps: each replica enqueues the all-gathered global batch, so both copies of the memory, and the
    weights, equal a one-device run's."""
    features = rng.normal(size=(3 * 8, DIM)).astype("float32")
    labels = np.tile(np.repeat(np.arange(4), 2), 3)

    def trained(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            loss = CrossBatchMemory(MultiSimilarityLoss(), memory_size=12, embedding_dim=DIM, start_step=1)
            model = MetricLearningModel(embedder(), loss)
            model.compile(optimizer=keras.optimizers.SGD(2.0))
        history = model.fit(features, labels, batch_size=8, epochs=1, shuffle=False, verbose=0).history["loss"]
        return model, loss, history

    single, single_loss, single_history = trained(tf.distribute.get_strategy())
    mirrored, mirrored_loss, mirrored_history = trained(mirrored_strategy)
    assert mirrored_history == pytest.approx(single_history, rel=1e-5)
    assert int(single_loss.memory_filled.numpy()) == 12
    for name in ("memory_embeddings", "memory_labels", "memory_filled", "step"):
        for copy in mirrored_strategy.experimental_local_results(getattr(mirrored_loss, name)):
            np.testing.assert_allclose(copy.numpy(), getattr(single_loss, name).numpy(), atol=1e-6, err_msg=name)
    for a, b in zip(single.get_weights(), mirrored.embedding_model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_recipe_keys_build_the_memory_and_are_validated():
    overrides = ["loss.class=MultiSimilarityLoss", "loss.params={}", "miner.class=MultiSimilarityMiner", "miner.params={}",
                 "memory={size: 32, start_epoch: 2}", "model.embedding_dim=16"]
    config = load_config(paths.REPO / "pipelines" / "digits_margin.yaml", overrides)
    loss = build_loss(config, num_classes=10, num_images=100, steps_per_epoch=5)
    assert isinstance(loss, CrossBatchMemory) and isinstance(loss.loss.miner, MultiSimilarityMiner)
    assert (loss.memory_size, loss.embedding_dim, loss.start_step) == (32, 16, 10)
    with pytest.raises(ConfigError, match="memory.size"):
        load_config(paths.REPO / "pipelines" / "digits_margin.yaml", ["memory.size=-1"])
    margin = load_config(
        paths.REPO / "pipelines" / "digits_margin.yaml",
        ["memory.size=8", "miner.class=TripletMarginMiner", "miner.params={}"],
    )
    with pytest.raises(ConfigError, match="memory: .*MarginLoss"):
        build_loss(margin, num_classes=10, num_images=100, steps_per_epoch=5)
