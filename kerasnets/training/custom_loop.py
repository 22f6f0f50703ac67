"""Training under MultiWorkerMirroredStrategy with a ``strategy.run`` step (public API).

``model.fit`` fails under MultiWorkerMirroredStrategy in Keras 3.15 ("Attempt to convert a value
(PerReplica...)", keras-team/keras#20585); this loop is the supported path, tested with Keras
3.15.1 and TensorFlow 2.21 (two workers on 127.0.0.1).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

__all__ = ["fit_multiworker"]


def fit_multiworker(model, optimizer, loss_fn, strategy, train_ds, epochs, steps_per_epoch, backup, guard,
                    verbose="auto"):
    """Run ``epochs x steps_per_epoch`` synchronous steps; every worker ends with identical weights.

    The loss is averaged over the global batch (``compute_average_loss``), so gradients match a
    single-device step on the same global batch. Backups are written each epoch by every worker
    (the chief's to the run's backup folder, the others' to worker-specific folders).
    """
    dist_ds = strategy.experimental_distribute_dataset(train_ds)
    iterator = iter(dist_ds)
    global_batch = None
    with strategy.scope():
        if not optimizer.built:
            optimizer.build(model.trainable_variables)

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            per_example = loss_fn.__class__(**{**loss_fn.get_config(), "reduction": None})(labels, predictions)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses)) if model.losses else 0.0
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    @tf.function
    def distributed_step(batch):
        images, labels = batch
        per_replica = strategy.run(replica_step, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    first = next(iterator)
    global_batch = int(tf.shape(strategy.experimental_local_results(first[0])[0])[0]) * strategy.num_replicas_in_sync
    pending = [first]
    for epoch in range(epochs):
        progress = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["loss"], verbose=1 if verbose else 0)
        for step in range(steps_per_epoch):
            batch = pending.pop() if pending else next(iterator)
            loss = float(distributed_step(batch))
            if not math.isfinite(loss):
                guard.bad_step, guard.bad_value = int(optimizer.iterations.numpy()), loss
                return
            progress.update(step + 1, [("loss", loss)])
        backup.set_model(model)
        backup.save()
