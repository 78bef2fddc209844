"""A consumer trains tables on two PS tasks behind hash filters, then saves
and restores the tables, through monolith's public modules.

The cluster is in-process (`test_utils.create_test_ps_cluster`): a worker
and two PS `tf.distribute.Server`s on loopback ports. Each PS holds its
share of the ids (`id % 2`) and a sliding hash filter that admits an id at
its second occurrence.
"""

import contextlib
import os

import numpy as np
import tensorflow as tf

from monolith.native_training import distributed_ps_factory
from monolith.native_training import hash_filter_ops
from monolith.native_training import test_utils
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

tf1 = tf.compat.v1
tf1.disable_eager_execution()

_IDS = np.arange(10, dtype=np.int64)


def _threshold_1() -> bytes:
  config = embedding_hash_table_pb2.SlotOccurrenceThresholdConfig()
  config.default_occurrence_threshold = 1
  return config.SerializeToString()


def _graph(num_ps: int):
  """Tables and filters on the PS tasks; a step of sgd (lr 1) on every id
  with gradient -1, the lookup, and the per-PS saves and restores."""
  filters = hash_filter_ops.create_hash_filters(num_ps, True, _threshold_1())
  table = distributed_ps_factory.create_native_multi_hash_table(
      num_ps, {"user": test_utils.generate_test_hash_table_config(2)},
      hash_filters=filters)
  ids = tf.constant(_IDS)
  train = table.apply_gradients(
      {"user": (ids, -tf.ones([len(_IDS), 2]))},
      global_step=tf1.train.get_or_create_global_step()).as_op()
  embeddings = table.lookup({"user": ids})["user"]
  return table, train, embeddings


def _per_ps(table, method: str, basename: str):
  """Each PS table's save or restore at "<basename>_<ps>"."""
  return [getattr(t, method)(f"{basename}_{i}").as_op()
          for i, t in enumerate(table.tables)]


@contextlib.contextmanager
def _initialized_session(cluster, table):
  """A session on the cluster's worker with the graph's variables and the
  tables initialized."""
  servers, config = cluster
  with tf1.Session(servers[0].target, config=config) as sess:
    sess.run(tf1.global_variables_initializer())
    sess.run([t.initializer for t in table.tables])
    yield sess


def test_two_ps_train_save_and_restore(tmp_path):
  cluster = test_utils.create_test_ps_cluster(2)
  basename = os.path.join(str(tmp_path), "model.ckpt-1.assets", "table")
  with tf.Graph().as_default():
    table, train, embeddings = _graph(2)
    saves = _per_ps(table, "save", basename)
    with _initialized_session(cluster, table) as sess:
      # First sight: counted, not admitted. Second: trained.
      sess.run(train)
      np.testing.assert_array_equal(sess.run(embeddings), np.zeros([10, 2]))
      sess.run(train)
      trained = sess.run(embeddings)
      np.testing.assert_array_equal(trained, np.ones([10, 2]))
      sess.run(saves)

  # A fresh graph (and session state) reads each PS's save back.
  with tf.Graph().as_default():
    table, _, embeddings = _graph(2)
    restores = _per_ps(table, "restore", basename)
    with _initialized_session(cluster, table) as sess:
      sess.run(restores)
      np.testing.assert_array_equal(sess.run(embeddings), trained)
