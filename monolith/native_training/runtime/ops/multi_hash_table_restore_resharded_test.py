"""Op-level tests of MonolithMultiHashTableRestoreResharded (graph mode)."""

import os

from google.protobuf import text_format
import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training.runtime.hash_table import embedding_hash_table_pb2
from monolith.native_training.runtime.ops import gen_monolith_ops as ops

tf1 = tf.compat.v1

# Ids of both signs and extremes; table a (dim 2) and b (dim 1).
_IDS_A = [0, 1, 2, 3, 4, 5, -1, -2, -3, -7, 2**62 + 1, -(2**63), 2**63 - 1]
_IDS_B = [10, -10, 11, -11]


def _table_config(dim):
  return text_format.Parse(
      f"""entry_config {{ segments {{ dim_size: {dim}
          init_config {{ zeros {{}} }}
          opt_config {{ adagrad {{ initial_accumulator_value: 0.1 }} }}
      }} }}""",
      embedding_hash_table_pb2.EmbeddingHashTableConfig())


def _mtable(shared_name, tables=(("a", 2), ("b", 1))):
  config = embedding_hash_table_pb2.MultiEmbeddingHashTableConfig()
  for name, dim in tables:
    config.names.append(name)
    config.configs.append(_table_config(dim))
  return ops.create_monolith_multi_hash_table(
      config=config.SerializeToString(),
      filter_handle=ops.monolith_dummy_hash_filter(shared_name=shared_name +
                                                   "_filter"),
      sync_client_handle=ops.monolith_dummy_sync_client(
          shared_name=shared_name + "_sync"),
      shared_name=shared_name)


def _split(ids_a, ids_b):
  return (tf.constant(list(ids_a) + list(ids_b), tf.int64),
          tf.constant([0, len(ids_a), len(ids_a) + len(ids_b)], tf.int64))


def _trained(shared_name, ids_a, ids_b, tables=(("a", 2), ("b", 1))):
  """A table after two adagrad steps of ids_a in a, ids_b in b (and c)."""
  h = _mtable(shared_name, tables)
  per_table = [ids_a if name == "a" else ids_b for name, _ in tables]
  ids = tf.constant([i for row in per_table for i in row], tf.int64)
  split = tf.constant(np.cumsum([0] + [len(row) for row in per_table]),
                      tf.int64)
  n = sum(len(row) * dim for row, (_, dim) in zip(per_table, tables))
  for step in range(2):
    grads = tf.constant(np.arange(n, dtype=np.float32) / 8 - step, tf.float32)
    h = ops.monolith_multi_hash_table_optimize(
        h, ids, split, grads, tf.constant([0.5] * len(tables)),
        tf.constant(100 + step, tf.int64), tf.constant(step, tf.int64))
  return h


def _entries(h, ids_a=_IDS_A, ids_b=_IDS_B):
  """{(table, id): EntryDump or None} after |h| (None: the id is absent)."""
  ids, split = _split(ids_a, ids_b)
  dumps = ops.monolith_multi_hash_table_lookup_entry(h, ids, split)
  return dumps, [("a", i) for i in ids_a] + [("b", i) for i in ids_b]


def _parse(dumps, keys):
  out = {}
  for key, raw in zip(keys, dumps):
    dump = embedding_hash_table_pb2.EntryDump.FromString(raw)
    out[key] = dump if dump.num else None
  return out


@pytest.fixture
def graph():
  # On the CPU also where the op library has GPU kernels and TF sees a GPU
  # (the placer would put the create ops there, which refuse CPU configs).
  with tf.Graph().as_default() as g, g.device("/CPU:0"):
    yield g


def _save_old_layout(tmp_path, num_old):
  """Saves the tables of num_old "PS" (ids split by floormod) and returns
  their basenames and every entry as saved."""
  basenames = []
  saves = []
  lookups = []
  for j in range(num_old):
    ids_a = [i for i in _IDS_A if i % num_old == j]
    ids_b = [i for i in _IDS_B if i % num_old == j]
    h = _trained(f"old_{j}", ids_a, ids_b)
    basename = str(tmp_path / f"MonolithMultiHashTable_{j}")
    basenames.append(basename)
    saves.append(ops.monolith_multi_hash_table_save(h, basename, nshards=2))
    lookups.append(_entries(h))
  with tf1.Session() as sess:
    # One run: each run of a lookup would train its table again.
    _, all_dumps = sess.run([saves, [dumps for dumps, _ in lookups]])
    expected = {}
    for dumps, (_, keys) in zip(all_dumps, lookups):
      for key, dump in _parse(dumps, keys).items():
        if dump is not None:
          expected[key] = dump
  assert len(expected) == len(_IDS_A) + len(_IDS_B)
  return basenames, expected


@pytest.mark.parametrize("num_old,num_new", [(2, 3), (3, 2), (2, 1), (1, 4),
                                             (3, 3), (3, 1), (1, 2), (1, 3)])
def test_each_new_table_gets_exactly_its_ids_with_their_state(
    graph, tmp_path, capfd, num_old, num_new):
  basenames, expected = _save_old_layout(tmp_path, num_old)
  restored = []
  for i in range(num_new):
    h = _mtable(f"new_{i}")
    # An entry the restore must drop: tables are replaced.
    h = ops.monolith_multi_hash_table_assign(h, *_split([123457], []),
                                             tf.constant([9.0, 9.0]), 5)
    h = ops.monolith_multi_hash_table_restore_resharded(
        h, basenames, id_modulus=num_new, id_remainder=i)
    restored.append(_entries(h, _IDS_A + [123457], _IDS_B))
  with tf1.Session() as sess:
    for i, (dumps, keys) in enumerate(restored):
      got = _parse(sess.run(dumps), keys)
      assert got[("a", 123457)] is None
      for key, dump in expected.items():
        if key[1] % num_new == i:  # Python's % is a floor modulo.
          assert got[key] == dump, key
        else:
          assert got[key] is None, (i, key)
  # The log tells records kept from records read (each new table reads
  # every record of every old one).
  log = capfd.readouterr().err
  for i in range(num_new):
    kept = sum(1 for key in expected if key[1] % num_new == i)
    assert (f"Resharded restore into new_{i}: read {len(expected)} records, "
            f"kept {kept} entries (ids with id mod {num_new} == {i}) from "
            f"{num_old} checkpoints in ") in log, log


def test_shape_function_and_attrs_are_checked(graph, tmp_path):
  h = _mtable("t")
  with pytest.raises(ValueError, match="basenames must be a vector"):
    ops.monolith_multi_hash_table_restore_resharded(
        h, "one", id_modulus=2, id_remainder=0)
  with pytest.raises(ValueError, match="basenames must be a vector"):
    ops.monolith_multi_hash_table_restore_resharded(
        h, [["a"]], id_modulus=2, id_remainder=0)
  with pytest.raises(ValueError, match="mtable must be a scalar"):
    ops.monolith_multi_hash_table_restore_resharded(
        tf.stack([h, h]), ["a"], id_modulus=2, id_remainder=0)
  with pytest.raises(ValueError, match="id_modulus"):
    ops.monolith_multi_hash_table_restore_resharded(
        h, ["a"], id_modulus=0, id_remainder=0)
  with pytest.raises(ValueError, match="id_remainder"):
    ops.monolith_multi_hash_table_restore_resharded(
        h, ["a"], id_modulus=2, id_remainder=-1)
  with pytest.raises(ValueError, match=r"id_remainder must be in \[0, "
                     "id_modulus\\): got id_modulus 2 and id_remainder 2"):
    ops.monolith_multi_hash_table_restore_resharded(
        h, ["a"], id_modulus=2, id_remainder=2)


def test_run_time_input_checks(graph, tmp_path):
  basenames, _ = _save_old_layout(tmp_path, 1)
  h = _mtable("t")
  fed = tf1.placeholder(tf.string, shape=None)
  restore = ops.monolith_multi_hash_table_restore_resharded(
      h, fed, id_modulus=2, id_remainder=1)
  with tf1.Session() as sess:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="basenames must be a vector, got shape \\[\\]"):
      sess.run(restore, {fed: basenames[0]})
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="basenames is empty"):
      sess.run(restore, {fed: np.array([], object)})
    with pytest.raises(tf.errors.InvalidArgumentError, match="twice"):
      sess.run(restore, {fed: basenames * 2})
    with pytest.raises(tf.errors.NotFoundError):
      sess.run(restore, {fed: [str(tmp_path / "nothing")]})
    sess.run(restore, {fed: basenames})


def _checkpoint_tables(tmp_path, name, tables):
  basename = str(tmp_path / name)
  h = _trained(name, [1, 2], [3], tables)
  with tf1.Session() as sess:
    sess.run(ops.monolith_multi_hash_table_save(h, basename, nshards=1))
  return basename


def _lookup_after(h, basenames, strict):
  """Table a's ids 1, 2, 77 after assigning 77 and restoring."""
  h = ops.monolith_multi_hash_table_assign(h, *_split([77], []),
                                           tf.constant([9.0, 9.0]), 5)
  h = ops.monolith_multi_hash_table_restore_resharded(
      h, basenames, id_modulus=1, id_remainder=0, strict=strict)
  with tf.control_dependencies([h.op]):
    return ops.monolith_multi_hash_table_lookup(h, *_split([1, 2, 77], []))


def test_strict_mode_fails_before_touching_any_table(graph, tmp_path):
  good = _checkpoint_tables(tmp_path, "good", (("a", 2), ("b", 1)))
  extra = _checkpoint_tables(tmp_path, "extra",
                             (("a", 2), ("b", 1), ("c", 1)))
  lacking = _checkpoint_tables(tmp_path, "lacking", (("a", 2),))
  for basenames, message in (
      ([good, extra], "extra: its table c \\(1 entries\\) is not in the graph"),
      ([lacking, good], "lacking lacks table b")):
    h = _mtable("strict_" + os.path.basename(basenames[0]))
    emb = _lookup_after(h, basenames, strict=True)
    with tf1.Session() as sess:
      with pytest.raises(tf.errors.FailedPreconditionError, match=message):
        sess.run(emb)
      # Not touched: 77 kept its value, 1 and 2 were never restored.
      np.testing.assert_array_equal(
          sess.run(ops.monolith_multi_hash_table_lookup(
              h, *_split([1, 2, 77], []))), [0, 0, 0, 0, 9, 9])
  # Not strict: warnings; a and b are restored (77 is gone).
  h = _mtable("lenient")
  emb = _lookup_after(h, [good, extra, lacking], strict=False)
  with tf1.Session() as sess:
    got = sess.run(emb)
  assert np.all(got[:4] != 0) and np.all(got[4:] == 0)


def test_strict_mode_names_a_graph_table_in_no_checkpoint(graph, tmp_path):
  only_a = _checkpoint_tables(tmp_path, "only_a", (("a", 2),))
  h = _mtable("t")
  with tf1.Session() as sess:
    with pytest.raises(tf.errors.FailedPreconditionError,
                       match="only_a lacks table b"):
      sess.run(_lookup_after(h, [only_a], strict=True))


def test_a_checkpoint_of_mixed_saves_is_refused_before_any_change(
    graph, tmp_path):
  basenames, _ = _save_old_layout(tmp_path / "first", 2)
  other, _ = _save_old_layout(tmp_path / "second", 2)
  # Old PS 1's shard 0 copied in from another save: shards of two saves.
  for suffix in ("-00000-of-00002", ".meta-00000-of-00002"):
    with open(other[1] + suffix, "rb") as f:
      data = f.read()
    with open(basenames[1] + suffix, "wb") as f:
      f.write(data)
  h = _mtable("t")
  emb = _lookup_after(h, basenames, strict=False)
  with tf1.Session() as sess:
    with pytest.raises(tf.errors.DataLossError, match="mixes saves"):
      sess.run(emb)
    # PS 0's good checkpoint was not restored either: nothing changed.
    np.testing.assert_array_equal(
        sess.run(ops.monolith_multi_hash_table_lookup(
            h, *_split([0, 2, 77], []))), [0, 0, 0, 0, 9, 9])
