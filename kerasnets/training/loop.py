"""The training and evaluation steps every strategy shares: a ``strategy.run`` step with loss
scaling, the recipe's L2 penalty and the weight EMA; evaluation that scores every image.

``model.fit`` is not used: under MultiWorkerMirroredStrategy it fails in Keras 3.15
(keras-team/keras#20585), it cannot checkpoint its data iterator (exact resume), and its EMA swaps
the averaged weights into the model at the end of every ``fit`` call (a resumed run would train
on). One loop for single device, Mirrored, multi-worker and TPU keeps them identical.
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["WeightEMA", "StepFunctions", "l2_variables", "pad_batches"]


class WeightEMA(tf.Module):
    """Exponential moving average of a model's weights, as the TPU reference.

    ``tf.train.ExponentialMovingAverage(decay, num_updates=global_step)``: update ``n`` (1-based)
    uses ``min(decay, (1 + n) / (10 + n))``, so early averages are not dominated by the random
    initialisation. Averages the trainable weights and BatchNormalization's moving statistics
    (every float weight of the model). The shadows start at the weights' values when created.
    """

    def __init__(self, weights: list, decay: float):
        super().__init__(name="weight_ema")
        self.decay = float(decay)
        self._weights = [w for w in weights if tf.as_dtype(w.dtype).is_floating]
        self.shadows = [tf.Variable(tf.convert_to_tensor(w), trainable=False, name=f"ema_{i}")
                        for i, w in enumerate(self._weights)]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")

    def update(self) -> None:
        """One EMA update from the current weights (call after each optimizer step)."""
        self.updates.assign_add(1)
        n = tf.cast(self.updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + n) / (10.0 + n))
        for shadow, weight in zip(self.shadows, self._weights):
            shadow.assign_sub((1.0 - decay) * (shadow - tf.cast(weight, shadow.dtype)))

    def swap(self) -> None:
        """Exchange the model's weights and the averages (twice restores them)."""
        for shadow, weight in zip(self.shadows, self._weights):
            current = tf.identity(tf.convert_to_tensor(weight))
            weight.assign(shadow)
            shadow.assign(current)

    def averaged(self, model: keras.Model) -> list:
        """``model.get_weights()`` with the averaged values where the EMA has them."""
        by_id = {id(w): s for w, s in zip(self._weights, self.shadows)}
        return [by_id[id(w)].numpy() if id(w) in by_id else w.numpy() for w in model.weights]


def l2_variables(model: keras.Model, on_batch_norm: bool = False) -> list:
    """The trainable weights the L2 penalty covers: all but BatchNormalization's gamma and beta
    (the TPU reference skips every variable named ``batch_normalization``), unless ``on_batch_norm``."""
    skip = set()
    if not on_batch_norm:
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.BatchNormalization):
                skip.update(id(w) for w in layer.weights)
    return [w for w in model.trainable_weights if id(w) not in skip]


def pad_batches(dataset: tf.data.Dataset, batch: int) -> tf.data.Dataset:
    """``(images, labels)`` batches padded to ``batch`` rows, with a 0/1 mask of the real rows, so
    that fixed-shape strategies (TPU, replicas) score every image, the last partial batch too."""

    def pad(images, labels):
        real = tf.shape(images)[0]
        fill = batch - real
        images = tf.pad(images, [[0, fill]] + [[0, 0]] * (len(images.shape) - 1))
        labels = tf.pad(labels, [[0, fill]] + [[0, 0]] * (len(labels.shape) - 1))
        mask = tf.cast(tf.range(batch) < real, tf.float32)
        images.set_shape([batch, *images.shape[1:]])
        labels.set_shape([batch, *labels.shape[1:]])
        mask.set_shape([batch])
        return images, labels, mask

    return dataset.map(pad, num_parallel_calls=tf.data.AUTOTUNE)


class StepFunctions:
    """Compiled train and eval steps of one model under one strategy.

    Args:
        model, optimizer: built under ``strategy.scope()`` (a LossScaleOptimizer under
            mixed_float16: the loss is scaled and non-finite steps are skipped by it).
        label_smoothing: of the categorical cross-entropy.
        strategy: the run's strategy.
        l2: L2 penalty coefficient over ``l2_weights`` (``l2 * sum(tf.nn.l2_loss(w))``).
        ema: a :class:`WeightEMA`, updated after every step, or None.
        jit_compile: XLA (worth it on GPU/TPU; 6-10x slower for EfficientNet on CPU).
        counter: an int64 variable that :meth:`train_steps` adds one to per step, inside the
            compiled call (the trainer's step, saved with the backups), or None.

    ``train_step(images, labels)`` runs one step (and leaves ``counter`` alone);
    ``train_steps(iterator, count)`` runs ``count``
    steps in one compiled call (the trainer's loop): batches are drawn from ``iterator`` on the
    device side, loss and accuracy accumulate there, and the host reads them once per call.
    """

    def __init__(self, model, optimizer, label_smoothing: float, strategy, l2: float = 0.0,
                 l2_weights: list | None = None, ema: WeightEMA | None = None, jit_compile: bool = False,
                 run_eagerly: bool = False, counter: tf.Variable | None = None):
        self.model, self.optimizer, self.strategy, self.ema = model, optimizer, strategy, ema
        self.counter = counter
        self.loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)
        self.l2, self.l2_weights = float(l2), list(l2_weights or [])
        self.replicas = strategy.num_replicas_in_sync
        wrap = (lambda f: f) if run_eagerly else (lambda f: tf.function(f, jit_compile=jit_compile))
        self.train_step = wrap(self._train_step)
        # the multi-step call is never XLA-compiled itself: it draws batches from the iterator
        # (IteratorGetNext has no XLA kernel); the step it calls is, when jit_compile (as Keras'
        # multi_step_on_iterator around its jitted one_step_on_data)
        self.train_steps = self._train_steps if run_eagerly else tf.function(self._train_steps)
        self.eval_step = wrap(self._eval_step)
        self.steps = 0  # train steps run (the trainer times the first, which traces, apart)

    def _replica_train(self, images, labels):
        images = tf.cast(images, tf.float32)  # uint8 batches (the trainer's) are cast here, on the device
        with tf.GradientTape() as tape:
            predictions = self.model(images, training=True)
            loss = tf.nn.compute_average_loss(self.loss(labels, predictions))
            penalties = list(self.model.losses)
            if self.l2 and self.l2_weights:
                penalties.append(self.l2 * tf.add_n([tf.nn.l2_loss(tf.cast(w, tf.float32)) for w in self.l2_weights]))
            if penalties:
                loss += tf.nn.scale_regularization_loss(tf.add_n([tf.cast(p, tf.float32) for p in penalties]))
            scaled = self.optimizer.scale_loss(loss)
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        correct = tf.reduce_sum(tf.cast(tf.argmax(predictions, -1) == tf.argmax(labels, -1), tf.float32))
        return loss, correct, tf.cast(tf.shape(images)[0], tf.float32)

    def _split(self, *tensors):
        """A worker's batch as per-replica values (each local replica takes its slice)."""
        if self.replicas == 1 or isinstance(tensors[0], tf.distribute.DistributedValues):
            return tensors
        local = self.strategy.extended.worker_devices
        count = len(local)

        def slice_for(context):
            index = context.replica_id_in_sync_group % count
            size = tf.shape(tensors[0])[0] // count
            return tuple(t[index * size:(index + 1) * size] for t in tensors)

        return self.strategy.experimental_distribute_values_from_function(slice_for)

    def _train_step(self, images, labels):
        """One synchronous step; returns (loss, correct predictions, images) summed over replicas."""
        values = self._split(images, labels)
        results = self.strategy.run(self._replica_train, args=tuple(values))
        loss, correct, count = (self.strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results)
        if self.ema is not None:
            self.ema.update()
        return loss, correct, count

    def _train_steps(self, iterator, count):
        """Up to ``count`` steps on batches from ``iterator``; stops after a step whose loss is not
        finite. Returns (loss x images summed over the steps, correct predictions, images, steps
        run, the last step's loss): the divergence check reads the last two."""
        total, correct, seen = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
        done, last = tf.constant(0, tf.int64), tf.constant(0.0)
        for _ in tf.range(tf.cast(count, tf.int64)):
            images, labels = next(iterator)
            last, right, images_seen = self.train_step(images, labels)
            last = tf.cast(last, tf.float32)
            total += last * images_seen
            correct += right
            seen += images_seen
            done += 1
            if self.counter is not None:
                self.counter.assign_add(1)
            if not tf.math.is_finite(last):
                break
        return total, correct, seen, done, last

    def _replica_eval(self, images, labels, mask):
        images = tf.cast(images, tf.float32)
        predictions = self.model(images, training=False)
        loss = tf.reduce_sum(tf.cast(self.loss(labels, predictions), tf.float32) * mask)
        correct = tf.reduce_sum(tf.cast(tf.argmax(predictions, -1) == tf.argmax(labels, -1), tf.float32) * mask)
        return loss, correct, tf.reduce_sum(mask)

    def _eval_step(self, images, labels, mask):
        """Summed loss, correct predictions and real images of one padded batch."""
        values = self._split(images, labels, mask)
        results = self.strategy.run(self._replica_eval, args=tuple(values))
        return tuple(self.strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results)

    def evaluate(self, dataset: tf.data.Dataset, batch: int, steps: int | None = None) -> dict[str, float]:
        """Loss and accuracy over every image of ``dataset`` (batches padded to ``batch``, masked)."""
        totals = [0.0, 0.0, 0.0]
        for images, labels, mask in pad_batches(dataset if steps is None else dataset.take(steps), batch):
            for i, value in enumerate(self.eval_step(images, labels, mask)):
                totals[i] += float(value)
        loss, correct, count = totals
        return {"loss": loss / max(count, 1.0), "accuracy": correct / max(count, 1.0), "examples": int(count)}
