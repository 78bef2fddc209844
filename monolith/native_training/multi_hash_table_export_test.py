"""Serving a trained MultiHashTable from a TF1 SavedModel.

Training builds the table with TRAINING entries (fp32 values plus optimizer
state), trains it and writes its checkpoint with `MultiHashTable.save`. The
serving graph is built inside `export_context.enter_export_mode(STANDALONE)`,
which gives the same tables SERVING entries (only the values, encoded by each
segment's compressor: fp32 or fp16 here).

Design of the export: a hash table is a resource, not a variable, so the
SavedModel's variable checkpoint cannot hold it. Instead the table's
checkpoint files (the `<basename>-SSSSS-of-NNNNN` data shards and their
`.meta` files) are the SavedModel's assets: each file path is a string
constant in the ASSET_FILEPATHS collection, so `Builder` copies the files into
`<export_dir>/assets/` and the loader (like TF Serving) feeds each constant
with the copied file's new path when it runs the main_op. The main_op creates
the table (its initializer) and then restores it from the basename derived
from an asset path (the data shard's path without its `-SSSSS-of-NNNNN`
suffix). The SavedModel is therefore self-contained and relocatable: the test
deletes the training checkpoint before loading. Restoring a TRAINING
checkpoint into SERVING entries keeps only the values, encoded by the
compressor, so served embeddings equal the trained ones exactly for fp32 and
after rounding to float16 (nearest, ties to even) for fp16.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training import entry
from monolith.native_training import learning_rate_functions
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import utils
from monolith.native_training.model_export import export_context
from monolith.native_training.model_export import warmup_io
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

tf1 = tf.compat.v1
# MultiHashTable builds graphs for tf.compat.v1 sessions, as training does.
tf1.disable_eager_execution()

_IDS = np.array([1, 5, 1 << 40, 123456789], np.int64)
_UNKNOWN_ID = 77
_SIGNATURE = "serving_default"
_SHARD_SUFFIX = r"-\d{5}-of-\d{5}$"


def _configs():
  """Two tables: fp32 and fp16 serving compressors, trained with adagrad,
  the fp32 one at a rate that decays with the global step."""

  def config(dim, compressor, learning_rate):
    table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
    entry.CuckooHashTableConfig().mutate_table(table_config)
    table_config.entry_config.segments.append(
        entry.CombineAsSegment(
            dim, entry.RandomUniformInitializer(-0.5, 0.5),
            entry.AdagradOptimizer(initial_accumulator_value=0.1),
            compressor))
    return entry.HashTableConfigInstance(table_config, [learning_rate])

  return {
      "fp32_slot":
          config(4, entry.Fp32Compressor(),
                 learning_rate_functions.PolynomialDecay(0.3, 10, 0.1)),
      "fp16_slot":
          config(3, entry.Fp16Compressor(), 0.3),
  }


def _train_and_save(basename: str):
  """Trains both tables for a few steps; returns the trained embeddings."""
  rng = np.random.RandomState(3)
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = multi_hash_table_ops.MultiHashTable.from_configs(_configs())
    sess.run([table.initializer, tf1.global_variables_initializer()])
    for step in range(3):
      grads = {
          name: (_IDS, rng.uniform(-1, 1, (len(_IDS), dim)).astype(np.float32))
          for name, dim in zip(table.table_names,
                               table.get_table_dim_sizes())
      }
      sess.run(
          table.apply_gradients(grads, global_step=tf.constant(
              step, tf.int64)).as_op())
    trained = sess.run(table.lookup({name: _IDS for name in table.table_names}))
    sess.run(table.save(tf.constant(basename)).as_op())
  return trained


def _serving_save(ckpt: str, serving_basename: str) -> None:
  """Restores the training checkpoint `ckpt` into SERVING tables (as an
  export builds them) and saves them at `serving_basename`."""
  with tf.Graph().as_default(), tf1.Session() as sess:
    with export_context.enter_export_mode(
        export_context.ExportMode.STANDALONE):
      table = multi_hash_table_ops.MultiHashTable.from_configs(_configs())
    sess.run(table.initializer)
    sess.run(table.restore(ckpt, strict=True).as_op())
    sess.run(table.save(serving_basename).as_op())


def _restore_from_assets(table: multi_hash_table_ops.MultiHashTable,
                         basename: str) -> tf.Operation:
  """The restore of `table` from asset paths the caller made (tensors, which
  the restore takes as given): the checkpoint files become assets; restore
  reads them at load time."""
  # The save's own files only: not another table's of a name it begins
  # ("<basename>_x"), nor a killed save's temporaries.
  files = sorted(
      glob.glob(glob.escape(basename) + "-[0-9]*-of-[0-9]*") +
      glob.glob(glob.escape(basename) + ".meta-[0-9]*-of-[0-9]*"))
  files = [f for f in files if re.search(_SHARD_SUFFIX, f)]
  assert any(".meta-" in f for f in files), files
  asset_paths = []
  for i, path in enumerate(files):
    asset = tf.constant(path, name=f"table_asset_{i}")
    tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, asset)
    asset_paths.append(asset)
  data_shard = next(asset for asset, path in zip(asset_paths, files)
                    if ".meta-" not in path)
  restore_basename = tf.strings.regex_replace(data_shard, _SHARD_SUFFIX, "")
  # strict: a table the checkpoint lacks (renamed since training) fails
  # the load instead of serving zeros.
  with tf.control_dependencies([table.initializer]):
    return table.restore(restore_basename, strict=True).as_op()


def _export(basename: str, export_dir: str, by_path: bool = False):
  """Builds the serving graph and writes the SavedModel; the names of its
  assets. `by_path`: the restore is given `basename` as a path while
  exporting, and makes the assets itself."""
  with tf.Graph().as_default() as graph:
    with export_context.enter_export_mode(
        export_context.ExportMode.STANDALONE):
      table = multi_hash_table_ops.MultiHashTable.from_configs(_configs())
      if by_path:
        with tf.control_dependencies([table.initializer]):
          restore_by_path = table.restore(basename)

    # The table was created with SERVING entries and the compressors.
    mconfig = embedding_hash_table_pb2.MultiEmbeddingHashTableConfig()
    mconfig.ParseFromString(
        tf.get_static_value(table.initializer.inputs[0]).item())
    assert list(mconfig.names) == ["fp16_slot", "fp32_slot"]
    for config, compressor in zip(mconfig.configs, ["fp16", "fp32"]):
      assert (config.entry_config.entry_type ==
              embedding_hash_table_pb2.EntryConfig.SERVING)
      assert (config.entry_config.segments[0].comp_config.WhichOneof("type")
              == compressor)

    if by_path:
      # strict, as while exporting by default.
      (restore_op,) = [op for op in graph.get_operations()
                       if op.type == "MonolithMultiHashTableRestore"]
      assert restore_op.get_attr("strict")
      restore = restore_by_path.as_op()
    else:
      restore = _restore_from_assets(table, basename)
    files = [tf.get_static_value(asset).item().decode() for asset in
             tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS)]
    main_op = tf.group(restore, name="restore_hash_tables")

    ids = {
        name: tf1.placeholder(tf.int64, [None], name=f"{name}_ids")
        for name in table.table_names
    }
    embeddings = table.lookup(ids)
    signature = tf1.saved_model.signature_def_utils.predict_signature_def(
        inputs={f"{name}_ids": ids[name] for name in ids},
        outputs={name: embeddings[name] for name in embeddings})
    # Serving tables look up with the original's op (its op library serves
    # the graph too), even outside export mode, and have no learning rates
    # (no global step the tables-only export would not restore).
    op_types = {op.type for op in graph.get_operations()}
    assert "MonolithMultiHashTableLookup" in op_types
    assert "MonolithMultiHashTableLookupTables" not in op_types
    assert tf1.global_variables() == []
    builder = tf1.saved_model.Builder(export_dir)
    with tf1.Session(graph=graph) as sess:
      builder.add_meta_graph_and_variables(
          sess, [tf1.saved_model.tag_constants.SERVING],
          signature_def_map={_SIGNATURE: signature},
          assets_collection=tf1.get_collection(
              tf1.GraphKeys.ASSET_FILEPATHS),
          main_op=main_op,
          strip_default_attrs=True)
    builder.save()
  return [os.path.basename(f) for f in files]


@pytest.mark.parametrize("by_path", [False, True])
def test_served_embeddings_equal_trained_ones(tmp_path, by_path):
  ckpt_dir = os.path.join(tmp_path, "ckpt")
  basename = os.path.join(ckpt_dir, "tables")
  export_dir = os.path.join(tmp_path, "saved_model")
  trained = _train_and_save(basename)
  # Another table's save of a name it begins, and a killed save's
  # temporary: not this save's files.
  for name in ("tables_x-00000-of-00001", "tables_x.meta-00000-of-00001",
               "tables-00000-of-00001-tmp-0123456789abcdef"):
    with open(os.path.join(ckpt_dir, name), "w") as f:
      f.write("other")
  if by_path:
    # A save cut short may have mixed the final names: refused.
    with pytest.raises(ValueError, match="has temporaries"):
      _export(basename, export_dir, by_path)
    os.remove(os.path.join(ckpt_dir,
                           "tables-00000-of-00001-tmp-0123456789abcdef"))
  asset_names = _export(basename, export_dir, by_path)
  assert sorted(asset_names) == [
      "tables-00000-of-00001", "tables.meta-00000-of-00001"]
  assert sorted(os.listdir(os.path.join(export_dir,
                                        "assets"))) == sorted(asset_names)
  # The SavedModel does not need the training checkpoint.
  shutil.rmtree(ckpt_dir)

  with tf.Graph().as_default(), tf1.Session() as sess:
    meta_graph = tf1.saved_model.loader.load(
        sess, [tf1.saved_model.tag_constants.SERVING], export_dir)
    signature = meta_graph.signature_def[_SIGNATURE]
    ids = np.append(_IDS, _UNKNOWN_ID)
    feed = {
        signature.inputs[f"{name}_ids"].name: ids
        for name in ("fp16_slot", "fp32_slot")
    }
    served = sess.run(
        {name: signature.outputs[name].name
         for name in ("fp16_slot", "fp32_slot")},
        feed_dict=feed)

    # The meta graph also carries the table; its SERVING entries have no
    # optimizers, so training them is refused.
    (table,) = tf1.get_collection(
        multi_hash_table_ops._MULTI_HASH_TABLE_GRAPH_KEY)
    assert table.table_names == ("fp16_slot", "fp32_slot")
    train = table.apply_gradients(
        {"fp32_slot": (_IDS[:1], np.ones((1, 4), np.float32))},
        global_step=tf.constant(0, tf.int64)).as_op()
    with pytest.raises(tf.errors.FailedPreconditionError,
                       match="has SERVING entries"):
      sess.run(train)

  np.testing.assert_array_equal(served["fp32_slot"][:-1],
                                trained["fp32_slot"])
  np.testing.assert_allclose(served["fp16_slot"][:-1],
                             trained["fp16_slot"],
                             rtol=1e-3,
                             atol=1e-4)
  np.testing.assert_array_equal(
      served["fp16_slot"][:-1],
      trained["fp16_slot"].astype(np.float16).astype(np.float32))
  # Ids the model never saw are served as zeros.
  np.testing.assert_array_equal(served["fp32_slot"][-1], np.zeros(4))
  np.testing.assert_array_equal(served["fp16_slot"][-1], np.zeros(3))
  # Trained values are not all float16-representable: fp16 did round.
  assert not np.array_equal(served["fp16_slot"][:-1], trained["fp16_slot"])


def test_an_export_refuses_paths_it_cannot_make_assets_of(tmp_path):
  for directory in ("a", "b"):
    _train_and_save(os.path.join(tmp_path, directory, "tables"))
  with tf.Graph().as_default(), export_context.enter_export_mode(
      export_context.ExportMode.STANDALONE):
    table = multi_hash_table_ops.MultiHashTable.from_configs(_configs())
    with pytest.raises(ValueError, match="exporting: no table checkpoint at "
                       ".*missing"):
      table.restore(os.path.join(tmp_path, "missing"))
    table.restore(os.path.join(tmp_path, "a", "tables"))
    # Another save whose files have the same names: the SavedModel's
    # assets/ folder would rename them.
    with pytest.raises(ValueError, match="have one file name"):
      table.restore(os.path.join(tmp_path, "b", "tables"))
    # A save whose files are not one whole set (one killed while renaming
    # them, restorable only through its temporaries).
    os.rename(os.path.join(tmp_path, "b", "tables-00000-of-00001"),
              os.path.join(tmp_path, "b", "tables2-00000-of-00001"))
    for name in ("tables2.meta-00000-of-00001",
                 "tables2-00001-of-00002"):
      with open(os.path.join(tmp_path, "b", name), "w") as f:
        f.write("x")
    with pytest.raises(ValueError, match=r"tables2 is not one whole save "
                       r"\(its data shards: \[\(0, 1\), \(1, 2\)\]\)"):
      table.restore(os.path.join(tmp_path, "b", "tables2"))


def test_a_serving_save_makes_assets_of_values_only(tmp_path):
  # The training checkpoint holds adagrad's accumulators beside the values:
  # restored into SERVING tables and saved again, the SavedModel's assets
  # hold the served values only, and serve the same embeddings.
  ckpt_dir = os.path.join(tmp_path, "ckpt")
  trained = _train_and_save(os.path.join(ckpt_dir, "tables"))
  serving_basename = os.path.join(tmp_path, "serving", "tables")
  _serving_save(os.path.join(ckpt_dir, "tables"), serving_basename)
  export_dir = os.path.join(tmp_path, "saved_model")
  _export(serving_basename, export_dir)

  def data_bytes(directory):
    return sum(os.path.getsize(os.path.join(directory, name))
               for name in os.listdir(directory) if ".meta-" not in name)

  # Values only: about half the training shards' bytes (values and as
  # many accumulators).
  assert data_bytes(os.path.join(export_dir, "assets")) < 0.7 * data_bytes(
      ckpt_dir)
  shutil.rmtree(ckpt_dir)
  with tf.Graph().as_default(), tf1.Session() as sess:
    signature = tf1.saved_model.loader.load(
        sess, [tf1.saved_model.tag_constants.SERVING],
        export_dir).signature_def[_SIGNATURE]
    served = sess.run(
        {name: signature.outputs[name].name
         for name in ("fp16_slot", "fp32_slot")},
        {signature.inputs[f"{name}_ids"].name: _IDS
         for name in ("fp16_slot", "fp32_slot")})
  np.testing.assert_array_equal(served["fp32_slot"], trained["fp32_slot"])
  np.testing.assert_array_equal(
      served["fp16_slot"],
      trained["fp16_slot"].astype(np.float16).astype(np.float32))


def test_a_serving_save_restores_into_training_tables_only_as_values(
    tmp_path):
  # Restored whole, its missing optimizer state reset every accumulator
  # (and the values were the compressors' roundings), silently.
  ckpt = os.path.join(tmp_path, "ckpt", "tables")
  trained = _train_and_save(ckpt)
  serving_basename = os.path.join(tmp_path, "serving", "tables")
  _serving_save(ckpt, serving_basename)
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = multi_hash_table_ops.MultiHashTable.from_configs(_configs())
    sess.run(table.initializer)
    with pytest.raises(tf.errors.FailedPreconditionError,
                       match="as a SERVING table saved it: values only"):
      sess.run(table.restore(serving_basename).as_op())
    sess.run(table.restore(serving_basename,
                           values_only=table.table_names).as_op())
    served = sess.run(table.lookup({name: _IDS for name in table.table_names}))
    # A training checkpoint restores whole as before.
    sess.run(table.restore(ckpt).as_op())
  np.testing.assert_array_equal(served["fp32_slot"], trained["fp32_slot"])


def test_an_export_of_a_segment_without_a_compressor_is_refused():
  # SERVING entries need one: the export would succeed and TF Serving
  # fail the model load.
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(table_config)
  segment = table_config.entry_config.segments.add(dim_size=2)
  segment.init_config.zeros.SetInParent()
  segment.opt_config.sgd.SetInParent()
  configs = {"slot": entry.HashTableConfigInstance(table_config, [0.1])}
  with tf.Graph().as_default():
    multi_hash_table_ops.MultiHashTable.from_configs(configs)  # training
    with export_context.enter_export_mode(
        export_context.ExportMode.STANDALONE):
      with pytest.raises(ValueError,
                         match="table slot: segment 0 has no comp_config"):
        multi_hash_table_ops.MultiHashTable.from_configs(configs)


def test_a_config_converted_for_training_is_refused_while_exporting():
  with tf.Graph().as_default():
    cc = multi_hash_table_ops.convert_to_cached_config(_configs())
    with export_context.enter_export_mode(
        export_context.ExportMode.STANDALONE):
      with pytest.raises(ValueError, match="cc was converted outside export "
                         "mode"):
        multi_hash_table_ops.MultiHashTable.from_cached_config(cc)
      serving_cc = multi_hash_table_ops.convert_to_cached_config(_configs())
      table = multi_hash_table_ops.MultiHashTable.from_cached_config(
          serving_cc)
    assert multi_hash_table_ops.all_serving(serving_cc.mconfig)
    assert tf1.global_variables() == []
    del table


_CHECK_IN_A_FRESH_PROCESS = """
import sys
from monolith.native_training.model_export import warmup_data_check
report = warmup_data_check.check_warmup_file(sys.argv[1], sys.argv[2])
print([p.reason for p in report.problems], report.replayed)
sys.exit(0 if report.ok and report.replayed else 1)
"""


def test_warmup_check_replays_requests_against_the_served_tables(tmp_path):
  # In a process that loaded nothing of monolith's ops before: the checker
  # registers them, so the SavedModel loads and the requests replay.
  basename = os.path.join(tmp_path, "ckpt", "tables")
  export_dir = os.path.join(tmp_path, "saved_model")
  _train_and_save(basename)
  _export(basename, export_dir)
  log = warmup_io.predict_log(
      "default", _SIGNATURE, {
          f"{name}_ids": tf.make_tensor_proto(_IDS)
          for name in ("fp16_slot", "fp32_slot")
      })
  warmup = os.path.join(tmp_path, "tf_serving_warmup_requests")
  warmup_io.write_prediction_logs(warmup, [log])
  result = subprocess.run(
      [sys.executable, "-c", _CHECK_IN_A_FRESH_PROCESS, warmup, export_dir],
      env=utils.python_child_env(),
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "[] True" in result.stdout
