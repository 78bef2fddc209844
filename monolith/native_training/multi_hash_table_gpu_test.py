"""gpucuco MultiHashTables on a GPU against CPU tables fed the same.

Runs where the op library has its CUDA kernels (--config=cuda) and TF sees a
GPU; elsewhere every test skips, saying why (ci/gpu_check.sh runs them on a
GPU machine, where nothing may skip).
"""

from typing import Optional

import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training import distributed_ps_factory
from monolith.native_training import entry
from monolith.native_training import multi_hash_table_ops
from monolith.native_training.model_export import export_context
from monolith.native_training.runtime.hash_table import embedding_hash_table_pb2

tf1 = tf.compat.v1
tf1.disable_eager_execution()


def _gpu_unavailable():
  try:
    multi_hash_table_ops.check_gpu_tables_supported()
  except RuntimeError as e:
    return str(e)
  return None


pytestmark = pytest.mark.skipif(_gpu_unavailable() is not None,
                                reason=_gpu_unavailable() or "")


@pytest.fixture(autouse=True)
def _fresh_graph():
  """Each test builds its ops in a new default graph."""
  with tf.Graph().as_default() as graph:
    yield graph


def _session():
  config = tf1.ConfigProto()
  # The GPU tables allocate beside TF's allocator.
  config.gpu_options.allow_growth = True
  return tf1.Session(config=config)

NAMES = ["user", "item"]


def _config(gpu: bool,
            second_optimizer: Optional[entry.Optimizer] = None
           ) -> entry.HashTableConfigInstance:
  """Two segments: sgd over 3 floats (constant 0.25), then 5 floats of
  `second_optimizer` (default adagrad)."""
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  table_config.entry_config.segments.append(
      entry.CombineAsSegment(3, entry.ConstantsInitializer(0.25),
                             entry.SgdOptimizer(), entry.Fp32Compressor()))
  table_config.entry_config.segments.append(
      entry.CombineAsSegment(
          5, entry.ZerosInitializer(), second_optimizer or
          entry.AdagradOptimizer(initial_accumulator_value=0.3),
          entry.Fp32Compressor()))
  if gpu:
    entry.GpucucoHashTableConfig(initial_capacity=64).mutate_table(
        table_config)
  else:
    entry.CuckooHashTableConfig().mutate_table(table_config)
  return entry.HashTableConfigInstance(table_config, [0.1, 0.05])


def _tables(suffix="", second_optimizer=None):
  gpu = multi_hash_table_ops.MultiHashTable.from_configs(
      {n: _config(True, second_optimizer) for n in NAMES},
      name_suffix="gpu" + suffix)
  cpu = multi_hash_table_ops.MultiHashTable.from_configs(
      {n: _config(False, second_optimizer) for n in NAMES},
      name_suffix="cpu" + suffix)
  return gpu, cpu


def _batches(rng, count):
  """Batches of 3,000 ids per table drawn from 2,000: repeats included."""
  for _ in range(count):
    yield {n: rng.integers(-1000, 1000, 3000) * 7919 for n in NAMES}


@pytest.mark.parametrize("second_optimizer", [
    None,
    entry.MomentumOptimizer(weight_decay_factor=0.01, use_nesterov=True),
    entry.RmspropOptimizer(weight_decay_factor=0.01, momentum=0.8),
    entry.RmspropV2Optimizer(momentum=0.8),
    entry.AmsgradOptimizer(beta1=0.8, beta2=0.95),
    entry.AdadeltaOptimizer(averaging_ratio=0.8),
],
                         ids=[
                             "adagrad", "momentum", "rmsprop", "rmspropv2",
                             "amsgrad", "adadelta"
                         ])
def test_training_on_gpu_matches_the_cpu_table(second_optimizer):
  gpu, cpu = _tables(second_optimizer=second_optimizer)
  ids = {n: tf1.placeholder(tf.int64, [None]) for n in NAMES}
  grads = {n: tf1.placeholder(tf.float32, [None, 8]) for n in NAMES}
  step = tf1.placeholder(tf.int64, [])
  train = [
      t.apply_gradients({n: (ids[n], grads[n]) for n in NAMES},
                        global_step=step).as_op() for t in (gpu, cpu)
  ]
  lookups = [t.lookup(ids) for t in (gpu, cpu)]
  rng = np.random.default_rng(1)
  with _session() as sess:
    sess.run([gpu.initializer, cpu.initializer])
    for s, batch in enumerate(_batches(rng, 4)):
      fd = {ids[n]: batch[n] for n in NAMES}
      fd.update({grads[n]: rng.normal(size=(3000, 8)) for n in NAMES})
      fd[step] = s + 1
      sess.run(train, feed_dict=fd)
    fd = {ids[n]: batch[n] for n in NAMES}
    got, want = sess.run(lookups, feed_dict=fd)
  for n in NAMES:
    np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-6)


def test_assign_and_assign_add_match_the_cpu_table():
  gpu, cpu = _tables()
  ids = {n: tf1.placeholder(tf.int64, [None]) for n in NAMES}
  values = {n: tf1.placeholder(tf.float32, [None, 8]) for n in NAMES}
  updates = [
      op for t in (gpu, cpu) for op in (
          t.assign({n: (ids[n], values[n]) for n in NAMES}).as_op(),
          t.assign_add({n: (ids[n], values[n]) for n in NAMES}).as_op())
  ]
  lookups = [t.lookup(ids) for t in (gpu, cpu)]
  rng = np.random.default_rng(3)
  with _session() as sess:
    sess.run([gpu.initializer, cpu.initializer])
    # assign on both, then assign_add on both, each pair on one batch.
    for pair in ((updates[0], updates[2]), (updates[1], updates[3])):
      batch = next(_batches(rng, 1))
      fd = {ids[n]: batch[n] for n in NAMES}
      fd.update({values[n]: rng.normal(size=(3000, 8)) for n in NAMES})
      sess.run(list(pair), feed_dict=fd)
    fd = {ids[n]: batch[n] for n in NAMES}
    got, want = sess.run(lookups, feed_dict=fd)
  for n in NAMES:
    np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-6)


def test_reinitialize_matches_the_cpu_table():
  gpu, cpu = _tables()
  ids = tf1.placeholder(tf.int64, [None])
  values = tf1.placeholder(tf.float32, [None, 8])
  assigns = [t.assign({"user": (ids, values)}).as_op() for t in (gpu, cpu)]
  reinits = [t.reinitialize("user", ids) for t in (gpu, cpu)]
  statuses = [status for _, status in reinits]
  with tf.control_dependencies([r[0].as_op() for r in reinits]):
    lookups = [t.lookup({"user": ids})["user"] for t in (gpu, cpu)]
  with _session() as sess:
    sess.run([gpu.initializer, cpu.initializer])
    sess.run(assigns, feed_dict={ids: [1, 2, 3], values: np.ones((3, 8))})
    # 3 exists, 4 is new and repeated, 5 is new.
    fd = {ids: [3, 4, 4, 5]}
    got_status, want_status = sess.run(statuses, feed_dict=fd)
    got, want = sess.run(lookups, feed_dict=fd)
  np.testing.assert_array_equal(got_status, [1, 0, 1, 0])
  np.testing.assert_array_equal(got_status, want_status)
  np.testing.assert_allclose(got, want)


def test_checkpoints_move_between_gpu_and_cpu_tables(tmp_path):
  gpu, cpu = _tables()
  ids = {n: tf1.placeholder(tf.int64, [None]) for n in NAMES}
  values = {n: tf1.placeholder(tf.float32, [None, 8]) for n in NAMES}
  assign_gpu = gpu.assign({n: (ids[n], values[n]) for n in NAMES}).as_op()
  gpu_save = gpu.save(str(tmp_path / "from_gpu" / "t")).as_op()
  cpu_restore = cpu.restore(str(tmp_path / "from_gpu" / "t")).as_op()
  cpu_save = cpu.save(str(tmp_path / "from_cpu" / "t")).as_op()
  gpu_restore = gpu.restore(str(tmp_path / "from_cpu" / "t")).as_op()
  lookups = [t.lookup(ids) for t in (gpu, cpu)]
  rng = np.random.default_rng(2)
  batch = next(_batches(rng, 1))
  fd = {ids[n]: batch[n] for n in NAMES}
  with _session() as sess:
    sess.run([gpu.initializer, cpu.initializer])
    sess.run(assign_gpu,
             feed_dict={**fd, **{
                 values[n]: rng.normal(size=(3000, 8)) for n in NAMES
             }})
    sess.run(gpu_save)
    sess.run(cpu_restore)
    got, want = sess.run(lookups, feed_dict=fd)
    for n in NAMES:
      np.testing.assert_array_equal(got[n], want[n])
    # And back: the CPU table's save restores into the GPU table.
    sess.run(cpu_save)
    sess.run(gpu_restore)
    got, want = sess.run(lookups, feed_dict=fd)
    for n in NAMES:
      np.testing.assert_array_equal(got[n], want[n])


def test_a_failing_restore_keeps_the_entries_the_gpu_table_holds(tmp_path):
  gpu, cpu = _tables()
  ids = {n: tf1.placeholder(tf.int64, [None]) for n in NAMES}
  values = {n: tf1.placeholder(tf.float32, [None, 8]) for n in NAMES}
  assigns = [t.assign({n: (ids[n], values[n]) for n in NAMES}).as_op()
             for t in (gpu, cpu)]
  basename = str(tmp_path / "t")
  cpu_save = cpu.save(basename).as_op()
  gpu_restore = gpu.restore(basename).as_op()
  lookup = gpu.lookup(ids)
  rng = np.random.default_rng(3)
  batch = next(_batches(rng, 1))
  fd = {ids[n]: batch[n] for n in NAMES}
  with _session() as sess:
    sess.run([gpu.initializer, cpu.initializer])
    for assign in assigns:
      sess.run(assign, feed_dict={**fd, **{
          values[n]: rng.normal(size=(3000, 8)) for n in NAMES
      }})
    sess.run(cpu_save)
    before = sess.run(lookup, feed_dict=fd)
    # A byte flipped in the middle of the last data shard (same size).
    data = sorted(tf.io.gfile.glob(basename + "-*"))[-1]
    with open(data, "r+b") as f:
      damaged = bytearray(f.read())
      damaged[len(damaged) // 2] ^= 0xFF
      f.seek(0)
      f.write(damaged)
    with pytest.raises(tf.errors.DataLossError):
      sess.run(gpu_restore)
    # Checked before anything was dropped: the GPU table is as it was.
    after = sess.run(lookup, feed_dict=fd)
    for n in NAMES:
      np.testing.assert_array_equal(after[n], before[n])


def test_values_only_restores_gpu_tables_whose_optimizer_changed(tmp_path):
  # The checkpoint's first segment trained with sgd; the GPU tables' with
  # adagrad now: restored values only, they take the values.
  _, cpu = _tables()
  changed = _config(True)
  changed.table_config.entry_config.segments[0].opt_config.CopyFrom(
      entry.AdagradOptimizer(initial_accumulator_value=0.2).as_proto())
  gpu = multi_hash_table_ops.MultiHashTable.from_configs(
      {n: changed for n in NAMES}, name_suffix="gpu_changed")
  # The same 8 floats as segments of 5 and 3: refused before any change.
  swapped = _config(True)
  segments = swapped.table_config.entry_config.segments
  segments[0].dim_size, segments[1].dim_size = 5, 3
  gpu_swapped = multi_hash_table_ops.MultiHashTable.from_configs(
      {n: swapped for n in NAMES}, name_suffix="gpu_swapped")
  ids = {n: tf1.placeholder(tf.int64, [None]) for n in NAMES}
  values = {n: tf1.placeholder(tf.float32, [None, 8]) for n in NAMES}
  assign = cpu.assign({n: (ids[n], values[n]) for n in NAMES}).as_op()
  basename = str(tmp_path / "t")
  save = cpu.save(basename).as_op()
  whole = gpu.restore(basename).as_op()
  values_only = gpu.restore(basename, values_only=NAMES).as_op()
  into_swapped = gpu_swapped.restore(basename, values_only=NAMES).as_op()
  lookups = [t.lookup(ids) for t in (gpu, cpu)]
  rng = np.random.default_rng(4)
  fd = {ids[n]: b for n, b in next(_batches(rng, 1)).items()}
  with _session() as sess:
    sess.run([gpu.initializer, cpu.initializer, gpu_swapped.initializer])
    sess.run(assign, feed_dict={**fd, **{
        values[n]: rng.normal(size=(3000, 8)) for n in NAMES
    }})
    sess.run(save)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="expected 'adagrad'"):
      sess.run(whole)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"segment dims \[3, 5\], the table to restore "
                       r"has \[5, 3\]: its values would land in other"):
      sess.run(into_swapped)
    sess.run(values_only)
    got, want = sess.run(lookups, feed_dict=fd)
  for n in NAMES:
    np.testing.assert_array_equal(got[n], want[n])


def _serving_config(gpu: bool) -> entry.HashTableConfigInstance:
  """_config's segments, served with fp16 (sgd's 3 floats) and fp32."""
  config = _config(gpu)
  segments = config.table_config.entry_config.segments
  segments[0].comp_config.CopyFrom(entry.Fp16Compressor().as_proto())
  segments[1].comp_config.CopyFrom(entry.Fp32Compressor().as_proto())
  return config


def test_serving_tables_restore_training_checkpoints_as_the_cpu_ones(
    tmp_path):
  # A gpucuco table built in export mode holds SERVING entries (fp16 and
  # fp32 values) on the GPU, and restores a TRAINING checkpoint as the CPU
  # serving table does.
  gpu_train, _ = _tables()
  ids = {n: tf1.placeholder(tf.int64, [None]) for n in NAMES}
  values = {n: tf1.placeholder(tf.float32, [None, 8]) for n in NAMES}
  assign = gpu_train.assign({n: (ids[n], values[n]) for n in NAMES}).as_op()
  basename = str(tmp_path / "trained" / "t")
  save = gpu_train.save(basename).as_op()
  with export_context.enter_export_mode(export_context.ExportMode.STANDALONE):
    gpu = multi_hash_table_ops.MultiHashTable.from_configs(
        {n: _serving_config(True) for n in NAMES}, name_suffix="gpu_serving")
    cpu = multi_hash_table_ops.MultiHashTable.from_configs(
        {n: _serving_config(False) for n in NAMES}, name_suffix="cpu_serving")
  restores = [t.restore(basename).as_op() for t in (gpu, cpu)]
  lookups = [t.lookup(ids) for t in (gpu_train, gpu, cpu)]
  # Then both serving tables take the same assign_add (repeats included)
  # and assign, encoding as they go.
  adds = [
      t.assign_add({n: (ids[n], values[n]) for n in NAMES}).as_op()
      for t in (gpu, cpu)
  ]
  assigns = [
      t.assign({n: (ids[n], values[n]) for n in NAMES}).as_op()
      for t in (gpu, cpu)
  ]
  serving_lookups = [t.lookup(ids) for t in (gpu, cpu)]
  rng = np.random.default_rng(4)
  batch = next(_batches(rng, 1))
  fd = {ids[n]: batch[n] for n in NAMES}
  with _session() as sess:
    sess.run([gpu_train.initializer, gpu.initializer, cpu.initializer])
    sess.run(assign,
             feed_dict={**fd, **{
                 values[n]: rng.normal(size=(3000, 8)) * 100 for n in NAMES
             }})
    sess.run(save)
    sess.run(restores)
    trained, got, want = sess.run(lookups, feed_dict=fd)
    for n in NAMES:
      np.testing.assert_array_equal(got[n], want[n])
      # fp16 rounded the first 3 floats; the fp32 ones are the trained
      # values.
      assert not np.array_equal(got[n][:, :3], trained[n][:, :3])
      np.testing.assert_array_equal(got[n][:, 3:], trained[n][:, 3:])
    for writes in (adds, assigns):
      sess.run(writes,
               feed_dict={**fd, **{
                   values[n]: rng.normal(size=(3000, 8)) * 10 for n in NAMES
               }})
      got, want = sess.run(serving_lookups, feed_dict=fd)
      for n in NAMES:
        np.testing.assert_array_equal(got[n], want[n])


def test_feature_eviction_periods_are_checked():
  config = _config(True)
  config.table_config.enable_feature_eviction = True
  config.table_config.feature_evict_every_n_hours = 0
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"user": config}, name_suffix="bad_period")
  with _session() as sess:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="feature_evict_every_n_hours must be > 0"):
      sess.run(table.initializer)


def test_evict_and_expiring_saves_match_the_cpu_table(tmp_path):
  """Entries a day old expire (1 day), but slot 3's keep 5 days."""
  day = 24 * 3600
  tables = []
  for gpu in (True, False):
    config = _config(gpu)
    expire = config.table_config.slot_expire_time_config
    expire.default_expire_time = 1
    slot = expire.slot_expire_times.add()
    slot.slot, slot.expire_time = 3, 5
    # Both also evict in the background (every 240 hours: never within the
    # test); gpucuco tables take the setting as CPU ones do.
    config.table_config.enable_feature_eviction = True
    config.table_config.feature_evict_every_n_hours = 240
    tables.append(multi_hash_table_ops.MultiHashTable.from_configs(
        {"user": config}, name_suffix=f"expiring_{gpu}"))
  ids = tf1.placeholder(tf.int64, [None])
  when = tf1.placeholder(tf.int64, [])
  assigns = [t.assign({"user": (ids, tf.ones([tf.size(ids), 8]))},
                      req_time=when).as_op() for t in tables]
  old = [1, 2, (3 << 48) | 7]
  new = [10, 11]
  saves = [t.save(str(tmp_path / f"t{i}" / "t")).as_op()
           for i, t in enumerate(tables)]
  fresh = [multi_hash_table_ops.MultiHashTable.from_configs(
      {"user": _config(gpu)}, name_suffix=f"fresh_{gpu}")
           for gpu in (True, False)]
  restores = [f.restore(str(tmp_path / f"t{i}" / "t")).as_op()
              for i, f in enumerate(fresh)]
  evicts = [t.evict()[1] for t in tables]
  lookups = [t.lookup({"user": ids})["user"] for t in tables + fresh]
  all_ids = old + new
  with _session() as sess:
    sess.run([t.initializer for t in tables + fresh])
    sess.run(assigns, feed_dict={ids: old, when: 1000 * day})
    sess.run(assigns, feed_dict={ids: new, when: 1002 * day})
    # Saves skip what has expired; a restore holds the rest.
    sess.run(saves)
    sess.run(restores)
    restored = sess.run(lookups[2:], feed_dict={ids: all_ids})
    got_evicted, want_evicted = sess.run(evicts)
    evicted = sess.run(lookups[:2], feed_dict={ids: all_ids})
  kept = [0, 0, 1, 1, 1]  # ids 1 and 2 expired; slot 3's and the new kept
  for values in restored + evicted:
    np.testing.assert_array_equal(values[:, 0], kept)
  np.testing.assert_array_equal(got_evicted, [2])
  np.testing.assert_array_equal(got_evicted, want_evicted)


def test_stats_count_entries_and_times_as_the_cpu_table():
  gpu, cpu = _tables("_stats")
  ids = tf1.placeholder(tf.int64, [None])
  when = tf1.placeholder(tf.int64, [])
  assigns = [t.assign({"user": (ids, tf.ones([tf.size(ids), 8]))},
                      req_time=when).as_op() for t in (gpu, cpu)]
  stats = [t.stats() for t in (gpu, cpu)]
  with _session() as sess:
    sess.run([gpu.initializer, cpu.initializer])
    empty = sess.run(stats[0])
    # Repeats count once; the newest time is kept.
    sess.run(assigns, feed_dict={ids: [5, 6, 5, 9], when: 700})
    sess.run(assigns, feed_dict={ids: [6], when: 650})
    got, want = sess.run(stats)
  np.testing.assert_array_equal(empty["entries"], [0, 0])
  np.testing.assert_array_equal(got["entries"], [3, 0])
  np.testing.assert_array_equal(got["entries"], want["entries"])
  np.testing.assert_array_equal(got["latest_update_time"], [700, 0])
  np.testing.assert_array_equal(got["latest_update_time"],
                                want["latest_update_time"])
  # Each table's map (ids and rows of its initial capacity) at least.
  assert (empty["memory_bytes"] >= 64 * (8 + 8 * 4)).all()


def test_lookup_entry_matches_the_cpu_table():
  gpu, cpu = _tables()
  ids = tf1.placeholder(tf.int64, [None])
  values = tf1.placeholder(tf.float32, [None, 8])
  when = tf1.placeholder(tf.int64, [])
  assigns = [t.assign({"user": (ids, values)}, req_time=when).as_op()
             for t in (gpu, cpu)]
  entries = [t.lookup_entry({"user": ids, "item": ids}) for t in (gpu, cpu)]
  rng = np.random.default_rng(4)
  with _session() as sess:
    sess.run([gpu.initializer, cpu.initializer])
    sess.run(assigns, feed_dict={ids: [1, 2, 3], values: rng.normal(size=(3, 8)),
                                 when: 12345})
    # 7 is absent: "" (an empty EntryDump), as the original's.
    got, want = sess.run(entries, feed_dict={ids: [3, 7, 1]})
  for name in ("user", "item"):
    assert got[name].tolist() == want[name].tolist()
  assert got["user"][1] == b""
  dump = embedding_hash_table_pb2.EntryDump()
  dump.ParseFromString(got["user"][0])
  assert dump.id == 3 and dump.last_update_ts_sec == 12345


@pytest.mark.parametrize("accumulate", [False, True])
def test_fused_ops_match_the_cpu_table(accumulate):
  # 2 shards x 2 tables, shard-major; repeats within and across segments
  # (every id of shard 1 is new to shard 0).
  # Tables of different dims and learning rates, so swapped tables show.
  def configs(gpu):
    small = embedding_hash_table_pb2.EmbeddingHashTableConfig()
    small.entry_config.segments.append(
        entry.CombineAsSegment(4, entry.ConstantsInitializer(0.5),
                               entry.AdagradOptimizer(
                                   initial_accumulator_value=0.2),
                               entry.Fp32Compressor()))
    mutate = (entry.GpucucoHashTableConfig(initial_capacity=64)
              if gpu else entry.CuckooHashTableConfig())
    mutate.mutate_table(small)
    return {"user": _config(gpu),
            "item": entry.HashTableConfigInstance(small, [0.3])}

  gpu, cpu = (multi_hash_table_ops.MultiHashTable.from_configs(
      configs(on_gpu), name_suffix=f"fused_{accumulate}_{on_gpu}")
              for on_gpu in (True, False))
  assert gpu.table_names == ("item", "user")  # table 0 has dim 4
  rng = np.random.default_rng(5)
  # The shards share ids (as several workers' batches do): both tables
  # apply an id's segments in shard order.
  shard_ids = [rng.integers(-500, 0, 1200) * 7919,
               rng.integers(-250, 250, 1200) * 7919]
  sizes = [500, 700, 400, 800]  # (shard, table) segments
  dims = [4, 8]
  ids = np.concatenate(shard_ids)
  fused_slot_size = tf.constant(sizes, tf.int32)
  id_grads = tf1.placeholder(tf.float32, [None])
  fetch = []
  for table in (gpu, cpu):
    embeddings, _, id_offsets, emb_offsets, indices = table.fused_lookup(
        tf.constant(ids), fused_slot_size, 2)
    applied = table.fused_apply_gradient(
        tf.constant(ids), indices, fused_slot_size, id_grads, id_offsets,
        emb_offsets, tf.constant(1, tf.int64), tf.constant(100, tf.int64), 2,
        enable_grad_accumulation=accumulate)
    fetch.append((embeddings, applied.as_op()))
  with _session() as sess:
    sess.run([gpu.initializer, cpu.initializer])
    floats = sum(n * dims[k % 2] for k, n in enumerate(sizes))
    for _ in range(3):
      grads = rng.normal(size=floats).astype(np.float32)
      before = sess.run([f[0] for f in fetch])
      np.testing.assert_allclose(before[0], before[1], rtol=1e-5, atol=1e-6)
      sess.run([f[1] for f in fetch], feed_dict={id_grads: grads})
    after = sess.run([f[0] for f in fetch])
  np.testing.assert_allclose(after[0], after[1], rtol=1e-5, atol=1e-6)
  assert not np.array_equal(after[0], before[0])


def test_ps_tables_of_a_standalone_export_restore_their_own_saves(tmp_path):
  # gpucuco tables of 2 PS built for a standalone export restore the saves
  # of 2 PS tables, PS i its own (they raised NotImplementedError: the
  # restore resharded); saves of another PS count are refused, saying so.
  configs = {n: _serving_config(True) for n in NAMES}
  directory = str(tmp_path / "saves")
  ids = {n: tf1.placeholder(tf.int64, [None]) for n in NAMES}
  values = {n: tf1.placeholder(tf.float32, [None, 8]) for n in NAMES}
  standalone = lambda: export_context.enter_export_mode(
      export_context.ExportMode.STANDALONE)
  with standalone():
    saved = distributed_ps_factory.create_native_multi_hash_table(
        2, configs, name_suffix="saved")
    served = distributed_ps_factory.create_native_multi_hash_table(
        2, configs, name_suffix="served")
    assign = saved.assign({n: (ids[n], values[n]) for n in NAMES}).as_op()
    save = saved.save(directory).as_op()
    lookups = [t.lookup(ids) for t in (saved, served)]
  prefix = saved.tables[0].ps_shard.group_prefix
  with _session() as sess:
    sess.run([t.initializer for t in saved.tables + served.tables])
    rng = np.random.default_rng(5)
    batch = next(_batches(rng, 1))
    fd = {ids[n]: batch[n] for n in NAMES}
    sess.run(assign, feed_dict={**fd, **{
        values[n]: rng.normal(size=(3000, 8)) for n in NAMES}})
    sess.run(save)
    # Built once the saves exist (their names are checked against them).
    basenames = multi_hash_table_ops.find_ps_checkpoints(directory, prefix)
    assert len(basenames) == 2
    with standalone():
      restore = served.restore(basenames).as_op()
      with pytest.raises(NotImplementedError, match="do not reshard"):
        served.restore(basenames[:1])
    sess.run(restore)
    want, got = sess.run(lookups, feed_dict=fd)
    for n in NAMES:
      np.testing.assert_array_equal(got[n], want[n])
