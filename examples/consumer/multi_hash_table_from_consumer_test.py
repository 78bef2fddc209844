"""A consumer trains, checkpoints and restores a model with MultiHashTable.

The model is a logistic regression over the embeddings of three slots: the
embeddings live in one MultiHashTable (adagrad, per-id state), the dense
weights in tf.compat.v1 variables (GradientDescentOptimizer). Each step
differentiates the loss with respect to the looked-up embeddings and applies
those gradients with `apply_gradients`.

Checkpoints are written by a CheckpointSaverHook with a tf.compat.v1 Saver
(dense variables, global step) and MultiHashTableCheckpointSaverListener
(the tables, in the checkpoint's asset directory). A fresh graph restores the
variables through its session creator and the tables through
MultiHashTableCheckpointRestorerListener in a CheckpointRestorerHook.
"""

import os

import numpy as np
import tensorflow as tf

from monolith.native_training import basic_restore_hook
from monolith.native_training import entry
from monolith.native_training import multi_hash_table_ops
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

tf1 = tf.compat.v1
# MultiHashTable builds graphs for tf.compat.v1 sessions.
tf1.disable_eager_execution()

_SLOTS = ("user", "item", "context")
_VOCAB = 8  # ids per slot
_DIM = 4
_BATCH = 64
_STEPS = 40
_SAVE_STEPS = 25  # a checkpoint mid-way, and one at the end


def _slot_ids(slot_index: int) -> np.ndarray:
  """The vocabulary of a slot: feature ids with the slot in the top bits."""
  return (np.int64(slot_index + 1) << 48) + np.arange(_VOCAB, dtype=np.int64)


def _data():
  """A fixed batch whose labels are additive in the slots' ids."""
  rng = np.random.RandomState(0)
  columns = {
      slot: rng.randint(_VOCAB, size=_BATCH) for slot in _SLOTS
  }
  hidden = {slot: rng.normal(size=_VOCAB) for slot in _SLOTS}
  logit = sum(hidden[slot][columns[slot]] for slot in _SLOTS)
  labels = (logit > 0).astype(np.float32).reshape(-1, 1)
  ids = {
      slot: _slot_ids(i)[columns[slot]] for i, slot in enumerate(_SLOTS)
  }
  return ids, labels


def _table_config() -> entry.HashTableConfigInstance:
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(table_config)
  table_config.entry_config.segments.append(
      entry.CombineAsSegment(
          _DIM, entry.RandomUniformInitializer(-0.3, 0.3),
          entry.AdagradOptimizer(initial_accumulator_value=0.1),
          entry.Fp32Compressor()))
  return entry.HashTableConfigInstance(table_config, [0.5])


def _build_model():
  """The graph of training and evaluation; returns its tensors and ops."""
  ids, labels = _data()
  global_step = tf1.train.get_or_create_global_step()
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {slot: _table_config() for slot in _SLOTS})
  id_tensors = {slot: tf.constant(ids[slot]) for slot in _SLOTS}
  embeddings = table.lookup(id_tensors)
  features = tf.concat([embeddings[slot] for slot in _SLOTS], axis=1)
  weights = tf1.get_variable(
      "weights", [len(_SLOTS) * _DIM, 1],
      initializer=tf1.random_normal_initializer(stddev=0.5, seed=1))
  bias = tf1.get_variable("bias", [1], initializer=tf1.zeros_initializer())
  logits = tf.matmul(features, weights) + bias
  loss = tf.reduce_mean(
      tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.constant(labels),
                                              logits=logits))
  embedding_grads = tf.gradients(loss, [embeddings[s] for s in _SLOTS])
  update_table = table.apply_gradients(
      {
          slot: (id_tensors[slot], grad)
          for slot, grad in zip(_SLOTS, embedding_grads)
      },
      global_step=global_step).as_op()
  update_dense = tf1.train.GradientDescentOptimizer(0.5).minimize(
      loss, global_step=global_step, var_list=[weights, bias])
  vocab = {slot: tf.constant(_slot_ids(i)) for i, slot in enumerate(_SLOTS)}
  return {
      "loss": loss,
      "train": tf.group(update_table, update_dense),
      "all_embeddings": table.lookup(vocab),
      "weights": weights,
      "bias": bias,
      "global_step": global_step,
  }


def test_train_checkpoint_restore(tmp_path):
  model_dir = os.path.join(tmp_path, "model")
  basename = os.path.join(model_dir, "model.ckpt")
  state_names = ["all_embeddings", "weights", "bias", "global_step"]

  with tf.Graph().as_default():
    model = _build_model()
    saver_hook = tf1.train.CheckpointSaverHook(
        model_dir,
        save_steps=_SAVE_STEPS,
        saver=tf1.train.Saver(),
        listeners=[
            multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
                basename)
        ])
    losses = []
    with tf1.train.SingularMonitoredSession(hooks=[saver_hook]) as sess:
      for _ in range(_STEPS):
        loss, _ = sess.run([model["loss"], model["train"]])
        losses.append(loss)
      final_loss = sess.run(model["loss"])
      saved = sess.run({name: model[name] for name in state_names})
    # The hook saved at step 0, mid-way and when the session ended.

  assert saved["global_step"] == _STEPS
  assert final_loss < 0.6 * losses[0]
  assert losses[-1] < losses[_STEPS // 2]
  assert tf.train.latest_checkpoint(model_dir) == f"{basename}-{_STEPS}"
  assert tf.io.gfile.glob(f"{basename}-{_STEPS}.assets/*-00000-of-*")

  with tf.Graph().as_default():
    model = _build_model()
    restorer = basic_restore_hook.CheckpointRestorerHook(listeners=[
        multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
            basename)
    ])
    # The session restores the variables from the latest checkpoint, then
    # the restorer hook loads the tables saved beside it.
    with tf1.train.SingularMonitoredSession(hooks=[restorer],
                                            checkpoint_dir=model_dir) as sess:
      restored = sess.run({name: model[name] for name in state_names})
      restored_loss = sess.run(model["loss"])

  for slot in _SLOTS:
    np.testing.assert_array_equal(restored["all_embeddings"][slot],
                                  saved["all_embeddings"][slot])
    # Trained, so not the zeros a missing id would read.
    assert np.all(np.any(saved["all_embeddings"][slot] != 0, 1))
  np.testing.assert_array_equal(restored["weights"], saved["weights"])
  np.testing.assert_array_equal(restored["bias"], saved["bias"])
  assert restored["global_step"] == _STEPS
  np.testing.assert_allclose(restored_loss, final_loss, rtol=1e-6, atol=1e-6)

