"""Kill test of a training job's checkpoint sequence.

A child process trains through the production hooks
(`StrictChiefSessionCreator`, `CheckpointRestorerHook` with the restorer
listener, `NoFirstSaveCheckpointSaverHook` with the saver listener, a
sharded Saver keeping 2 checkpoints, hash filters and their listeners)
and saves every step: each PS task's filter and table files, the PS
counts, `ckpt.info`, then the Saver's variables and checkpoint state, then
the clean-up of what the Saver dropped. Every step writes one value into
every table entry and a dense variable: its number and the round's, so
that two children's saves of one step differ.

The test SIGKILLs the child, each round with another number of PS tasks
(3, 2, 1 and a table on the worker), at a seeded random time, at a random
point inside a save (after its first table file, before the Saver's
checkpoint state), right after every table of a save is written, or while
the Saver writes its temporaries; the next child restores. Its tables,
variable and global step must hold one save, no older than the last step
a child reported saved; at the end every checkpoint kept after each kill
restores one whole save. Nothing a kill leaves outlives the next save:
recorded checkpoints hold no temporaries and a whole ckpt.info, and no
Saver temporary of a recorded step stays.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from google.protobuf import text_format
import tensorflow as tf

from monolith.native_training import save_utils
from monolith.native_training import utils
from monolith.native_training.proto import ckpt_info_pb2

SEED = 20261204
# Each round's PS tasks (0: the table on the worker) and where its child is
# killed: "any" time, inside a "save", after a save's "tables", or while
# the "saver" writes its temporaries. A round after "tables" saves that
# step again with fewer PS tasks.
ROUNDS = ((2, "any"), (3, "tables"), (2, "save"), (1, "saver"),
          (3, "tables"), (1, "save"), (0, "any"), (2, "tables"), (2, "saver"))
IDS = 20000

_CHILD = """
import json
import os
import sys

import numpy as np
import tensorflow as tf

from monolith.native_training import basic_restore_hook
from monolith.native_training import distributed_ps_factory
from monolith.native_training import hash_filter_ops
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import save_utils
from monolith.native_training import test_utils
from monolith.native_training import utils

tf1 = tf.compat.v1
tf1.disable_eager_execution()
num_ps, num_ids, tag = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
train = sys.argv[4] == "train"
model_dirs = sys.argv[5:]
master, config = "", None
if num_ps:
  # Sessions of one cluster start with their own tables.
  servers, config = test_utils.create_test_ps_cluster(num_ps)
  master = servers[0].target


def run(model_dir):
  basename = os.path.join(model_dir, "model.ckpt")
  # Ids of both signs, spread over every PS count's remainders.
  ids = tf.constant((np.arange(num_ids, dtype=np.int64) - num_ids // 2) *
                    7919)
  filters = hash_filter_ops.create_hash_filters(
      num_ps, True, filter_capacity=1000, filter_split_num=5)
  dist = distributed_ps_factory.create_native_multi_hash_table(
      num_ps, {"a": test_utils.generate_test_hash_table_config(2)},
      hash_filters=filters)
  local = distributed_ps_factory.create_native_multi_hash_table(
      0, {"c": test_utils.generate_test_hash_table_config(1)},
      name_suffix="local")
  global_step = tf1.train.get_or_create_global_step()
  with tf.device(utils.ps_device(0) if num_ps else None):
    dense = tf1.get_variable("dense", [], tf.float32,
                             initializer=tf1.zeros_initializer())
  value = tf.cast((global_step + 1) * 100 + tag, tf.float32)
  write = tf.group(
      dist.assign({"a": (ids, tf.fill([num_ids, 2], value))}).as_op(),
      local.assign({"c": (ids, tf.fill([num_ids, 1], value))}).as_op(),
      dense.assign(value))
  with tf.control_dependencies([write]):
    step = global_step.assign_add(1)
  read = [dist.lookup({"a": ids})["a"], local.lookup({"c": ids})["c"], dense,
          global_step]
  saver = tf1.train.Saver(sharded=True, max_to_keep=2)
  hooks = [
      basic_restore_hook.CheckpointRestorerHook(listeners=[
          hash_filter_ops.HashFilterCheckpointRestorerListener(
              basename, filters, True),
          multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
              basename)
      ])
  ]
  if train:
    hooks.append(
        save_utils.NoFirstSaveCheckpointSaverHook(
            model_dir, save_steps=1, saver=saver, listeners=[
                hash_filter_ops.HashFilterCheckpointSaverListener(
                    basename, filters, True),
                multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
                    basename)
            ]))
  creator = save_utils.StrictChiefSessionCreator(
      tf1.train.Scaffold(saver=saver), master=master, config=config,
      checkpoint_dir=model_dir)
  with tf1.train.MonitoredSession(session_creator=creator,
                                  hooks=hooks) as sess:
    a, c, dense_value, step_value = sess.run(read)
    print(json.dumps({"dir": model_dir, "step": int(step_value),
                      "dense": float(dense_value),
                      "a": sorted(set(a.ravel().tolist())),
                      "c": sorted(set(c.ravel().tolist()))}), flush=True)
    while train:
      # The hook has saved this step when run returns.
      print("saved", sess.run(step), flush=True)


for model_dir in model_dirs:
  with tf.Graph().as_default():
    run(model_dir)
"""


def _child(num_ps: int, tag: int, mode: str,
           *model_dirs: str) -> subprocess.Popen:
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3")
  # stderr to a file: read while the child runs, a pipe could block both.
  with tempfile.NamedTemporaryFile("w", prefix="child-stderr-", suffix=".log",
                                   delete=False) as stderr:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(num_ps), str(IDS), str(tag), mode,
         *model_dirs],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
  child.stderr_path = stderr.name
  return child


def _stderr(child: subprocess.Popen) -> str:
  """The end of what the child wrote to stderr so far."""
  with open(child.stderr_path, errors="replace") as f:
    return f.read()[-4000:]


def _restored(child: subprocess.Popen) -> dict:
  line = child.stdout.readline()
  if not line:
    child.wait()
    raise AssertionError("the child did not restore:\n" +
                         _stderr(child))
  restored = json.loads(line)
  # All of one save: every entry of both tables (zeros: ids not in the
  # table), the variable and the global step.
  value = restored["dense"]
  assert value // 100 == restored["step"], restored
  assert value % 100 < len(ROUNDS), restored
  assert restored["a"] == [value], restored
  assert restored["c"] == [value], restored
  return restored


def _step_of(prefix: str) -> int:
  return int(prefix.rsplit("-", 1)[1])


def _latest_step(model_dir: str) -> int:
  latest = save_utils.latest_checkpoint(model_dir)
  return _step_of(latest) if latest else -1


def _saving_beyond(model_dir: str, latest_step: int) -> bool:
  """Whether a save after the latest recorded one had begun."""
  for name in os.listdir(model_dir):
    match = re.fullmatch(r"model\.ckpt-(\d+)\.assets", name)
    if match and int(match.group(1)) > latest_step:
      return True
  return False


def _tables_written(model_dir: str, step: int, num_ps: int) -> bool:
  """Whether every table of the save of `step` has its final meta file."""
  try:
    names = os.listdir(os.path.join(model_dir, f"model.ckpt-{step}.assets"))
  except FileNotFoundError:
    return False
  metas = {name.split(".meta-")[0] for name in names
           if re.search(r"\.meta-\d{5}-of-\d{5}$", name)}
  tables = {f"MonolithMultiHashTable_{i}" for i in range(num_ps)} or {
      "MonolithMultiHashTable_"}
  return tables | {"MonolithMultiHashTable_local"} <= metas


def _at_kill_point(model_dir: str, num_ps: int, mode: str) -> bool:
  try:
    latest = _latest_step(model_dir)
  except tf.errors.NotFoundError:
    # The child deleted the checkpoint the state file named as it was
    # read (two saves meanwhile): read it again next time.
    return False
  if mode == "save":
    return _saving_beyond(model_dir, latest)
  if mode == "tables":
    return _tables_written(model_dir, latest + 1, num_ps)
  return os.path.exists(
      os.path.join(model_dir, f"model.ckpt-{latest + 1}_temp"))


def _kill_point(model_dir: str, child: subprocess.Popen, num_ps: int,
                mode: str, rng: random.Random) -> None:
  """Waits, polling every millisecond, until the round's kill point."""
  if mode == "any":
    time.sleep(rng.uniform(0, 1.0))
    return
  deadline = time.monotonic() + 60
  while not _at_kill_point(model_dir, num_ps, mode):
    assert child.poll() is None and time.monotonic() < deadline, (
        f"no {mode} kill point: " + _stderr(child))
    time.sleep(0.001)
  if mode == "save":
    time.sleep(rng.uniform(0, 0.05))


def _assert_no_leftovers(model_dir: str) -> None:
  """Recorded checkpoints hold no temporaries and a whole ckpt.info; no
  Saver temporary of a recorded step is left."""
  state = save_utils.checkpoint_state(model_dir)
  latest = _step_of(state.model_checkpoint_path)
  for path in state.all_model_checkpoint_paths:
    names = os.listdir(path + ".assets")
    assert not [n for n in names if "-tmp-" in n], (path, names)
    with open(os.path.join(model_dir,
                           f"ckpt.info-{_step_of(path)}")) as f:
      info = text_format.Parse(f.read(), ckpt_info_pb2.CkptInfo())
    # Every entry of both tables counted (a file cut at a line parses).
    assert dict(info.feature_counts) == {"a": IDS, "c": IDS}, (path, info)
  saver_temporaries = [
      match.group(0) for match in (
          re.fullmatch(r"model\.ckpt-(\d+)_temp.*", name)
          for name in os.listdir(model_dir))
      if match and int(match.group(1)) <= latest
  ]
  assert not saver_temporaries, saver_temporaries


def test_a_killed_job_restores_one_whole_checkpoint(tmp_path):
  rng = random.Random(SEED)
  model_dir = str(tmp_path / "model")
  os.makedirs(model_dir)
  last_saved = 0
  snapshots = []
  for tag, (num_ps, mode) in enumerate(ROUNDS):
    child = _child(num_ps, tag, "train", model_dir)
    try:
      step = _restored(child)["step"]
      # Nothing a child reported saved is lost.
      assert step >= last_saved, (step, last_saved)
      first = child.stdout.readline()
      assert first.startswith("saved"), (first, _stderr(child))
      _kill_point(model_dir, child, num_ps, mode, rng)
    finally:
      child.send_signal(signal.SIGKILL)
      child.wait()
    saved = [int(line.split()[1])
             for line in [first] + child.stdout.read().splitlines()
             if re.fullmatch(r"saved \d+\n?", line)]
    assert saved[0] == step + 1, (saved, step)
    last_saved = saved[-1]
    latest_step = _latest_step(model_dir)
    assert latest_step >= last_saved, os.listdir(model_dir)
    _assert_no_leftovers(model_dir)
    snapshots.append(str(tmp_path / f"after_kill_{tag}"))
    shutil.copytree(model_dir, snapshots[-1])
  # Every checkpoint the Saver kept after each kill, not only the one the
  # next child restored, restores one whole save.
  checks = {}
  for snapshot in snapshots:
    state = save_utils.checkpoint_state(snapshot)
    for path in state.all_model_checkpoint_paths:
      check = f"{snapshot}_{os.path.basename(path)}"
      shutil.copytree(snapshot, check)
      prefix = os.path.join(check, os.path.basename(path))
      tf.compat.v1.train.update_checkpoint_state(check, prefix, [prefix])
      checks[check] = _step_of(path)
  assert len(checks) > len(snapshots)
  child = _child(2, 0, "check", *checks)
  for _ in checks:
    restored = _restored(child)
    assert restored["step"] == checks[restored["dir"]], restored
  assert child.wait() == 0, _stderr(child)


_ATOMIC_WRITER = """
import sys

from monolith.native_training import utils

path = sys.argv[1]
version = 0
while True:
  version += 1
  # Large enough that a kill often falls inside a write.
  utils.write_file_atomically(
      path, f"{version}\\n" + "x" * (1 << 20) + f"\\n{version}\\n")
  if version == 1:
    print("ready", flush=True)  # a whole file is there to read
"""


def test_a_killed_atomic_write_leaves_one_whole_version(tmp_path):
  """`utils.write_file_atomically` (ckpt.info, the filters' PS counts) on
  its own, SIGKILLed at seeded random times: the file holds one whole
  version, and only temporaries stay behind."""
  rng = random.Random(SEED)
  path = str(tmp_path / "ckpt.info")
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3")
  for _ in range(4):
    child = subprocess.Popen([sys.executable, "-c", _ATOMIC_WRITER, path],
                             stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline() == "ready\n"
    time.sleep(rng.uniform(0.05, 0.3))
    child.kill()
    child.wait()
    child.stdout.close()
    with open(path) as f:
      first, middle, end = f.read().split("\n")[:3]
    assert first == end and middle == "x" * (1 << 20), (first, end)
  assert all(name == "ckpt.info" or name.startswith("ckpt.info.tmp-")
             for name in os.listdir(tmp_path))
