"""Soft distillation losses of the supernet's training step (flavour-neutral).

Every subnet learns from the original model's outputs and, the smaller ones,
from the largest subnet's (in-place distillation). Outputs are compared one
by one, per sample, in float32 (mixed precision included).
"""

import tensorflow as tf

DISTILLATION_LOSSES = ("kl_logits", "kl_probabilities", "mse")


def per_sample(kind, teacher, student, epsilon=1e-7):
    """Per-sample soft distillation loss of one output (float32, shape [batch]).

    Args:
      kind: One of `DISTILLATION_LOSSES`: KL divergence of the softmax of
        logits, KL divergence of probabilities, or mean squared error.
      teacher: The teacher's output.
      student: The student's output, of the same shape.
      epsilon: Probabilities are clipped to `[epsilon, 1]` before their log
        (`"kl_probabilities"`). Defaults to `1e-7`, the Keras epsilon.

    Returns:
      A float32 tensor of shape `[batch]`.
    """
    teacher = tf.cast(teacher, tf.float32)
    student = tf.cast(student, tf.float32)
    if kind == "mse":
        loss = tf.square(teacher - student)
    elif kind == "kl_logits":
        target = tf.nn.softmax(teacher, axis=-1)
        loss = target * (tf.nn.log_softmax(teacher, axis=-1) - tf.nn.log_softmax(student, axis=-1))
    else:
        target = tf.clip_by_value(teacher, epsilon, 1.0)
        loss = target * (tf.math.log(target) - tf.math.log(tf.clip_by_value(student, epsilon,
                                                                            1.0)))
    loss = tf.reshape(loss, [tf.shape(loss)[0], -1])
    return tf.reduce_sum(loss, axis=-1) if kind != "mse" else tf.reduce_mean(loss, axis=-1)


def distillation_loss(kind, teacher, student, epsilon=1e-7):
    """The batch's distillation loss over every output, scaled for `tf.distribute`.

    Gradients of the replicas of a strategy are summed, so, like a compiled
    Keras loss, the mean over the replica's batch is divided by the number
    of replicas.

    Args:
      kind: One of `DISTILLATION_LOSSES`.
      teacher: The teacher's outputs (a tensor or a structure of them).
      student: The student's outputs, of the same structure.
      epsilon: See `per_sample`. Defaults to `1e-7`.

    Returns:
      A float32 scalar.
    """
    losses = tf.add_n([per_sample(kind, t, s, epsilon) for t, s in
                       zip(tf.nest.flatten(teacher), tf.nest.flatten(student))])
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return tf.reduce_mean(losses) / tf.cast(replicas, tf.float32)
