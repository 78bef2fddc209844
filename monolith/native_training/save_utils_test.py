"""Tests for save_utils.SaveHelper."""

import ast
import collections
import contextlib
import os
import random
import re
import shutil
import threading
from unittest import mock

import pytest
import tensorflow as tf

from monolith.native_training import basic_restore_hook
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import save_utils


def test_a_checkpoint_run_near_its_deadline_warns():
  # A save or restore that ran past its deadline failed at every retry
  # (checkpoints grow with the tables): the warning comes while there is
  # time to raise it.
  def run(options, seconds):
    clock = iter([100.0, 100.0 + seconds])
    # The module's clock alone: other threads keep the real one.
    stub = mock.Mock(monotonic=lambda: next(clock))
    with mock.patch.object(save_utils, "time", stub), mock.patch.object(
        save_utils.logging, "warning") as warning:
      with save_utils.explaining_deadline(options, "restoring x",
                                          "SomeListener", "nothing left"):
        pass
    return [c[0][0] % c[0][1:] for c in warning.call_args_list]

  hour = save_utils.checkpoint_run_options(3600)
  assert run(hour, 2100) == [
      "restoring x took 2100.0 s, 58% of its deadline of 3600 s "
      "(timeout_secs of SomeListener): raise it before the checkpoints "
      "outgrow it; a run past it fails, and so does every retry."
  ]
  assert run(hour, 1700) == []
  assert run(save_utils.checkpoint_run_options(None), 2100) == []
  # RunOptions without a deadline (0): nothing to warn of.
  assert run(tf.compat.v1.RunOptions(), 2100) == []


def test_ckpt_prefix_and_asset_dir():
  helper = save_utils.SaveHelper("/models/run/model.ckpt")
  assert helper.basename == "/models/run/model.ckpt"
  prefix = helper.get_ckpt_prefix(100)
  assert prefix == "/models/run/model.ckpt-100"
  assert helper.get_ckpt_asset_dir(prefix) == (
      "/models/run/model.ckpt-100.assets/")
  # Also usable on the class.
  assert save_utils.SaveHelper.get_ckpt_asset_dir("p") == "p.assets/"


@pytest.mark.parametrize("path, step", [
    ("/models/run/model.ckpt-100", 100),
    ("model.ckpt-0", 0),
    ("/models/my-run/model.ckpt-7", 7),
    ("/models/my-run/model.ckpt", 0),
    ("/models/run/model.ckpt", 0),
    ("/models/run/model-best", 0),
])
def test_global_step_value(path, step):
  helper = save_utils.SaveHelper("/models/run/model.ckpt")
  assert helper.get_global_step_value(path) == step


def test_global_step_round_trips_prefix():
  helper = save_utils.SaveHelper("/models/my-run/model.ckpt")
  assert helper.get_global_step_value(helper.get_ckpt_prefix(42)) == 42


def test_empty_basename_rejected():
  with pytest.raises(ValueError, match="basename"):
    save_utils.SaveHelper("")


def test_a_directory_as_basename_is_rejected(tmp_path):
  with pytest.raises(ValueError, match=f"basename {tmp_path} is a directory: "
                     f"give .* e.g. {tmp_path}/model.ckpt"):
    save_utils.SaveHelper(str(tmp_path))


def test_a_basename_ending_with_a_separator_is_rejected(tmp_path):
  # Not a directory yet on a first run: tables went to "<dir>/-<step>.assets".
  with pytest.raises(ValueError, match="is a directory: give .* e.g. "
                     f"{tmp_path}/new/model.ckpt"):
    save_utils.SaveHelper(str(tmp_path / "new") + "/")


def test_a_path_like_basename_is_taken(tmp_path):
  helper = save_utils.SaveHelper(tmp_path / "model.ckpt")
  assert helper.basename == str(tmp_path / "model.ckpt")
  with pytest.raises(ValueError, match=f"basename {tmp_path} is a directory"):
    save_utils.SaveHelper(tmp_path)


def test_existing_checkpoint_steps(tmp_path):
  basename = os.path.join(str(tmp_path), "model.ckpt")
  helper = save_utils.SaveHelper(basename)
  assert helper.get_existing_checkpoint_steps() == set()

  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    global_step = tf.compat.v1.train.get_or_create_global_step()
    saver = tf.compat.v1.train.Saver(max_to_keep=2)
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in (1, 5, 9):
      saver.save(sess, basename, global_step=step)
  # max_to_keep drops the oldest from the state file.
  assert helper.get_existing_checkpoint_steps() == {5, 9}
  assert helper.step_is_recorded(5) and not helper.step_is_recorded(1)
  assert helper.has_checkpoint(5) and not helper.has_checkpoint(1)
  # Files the state does not list (keep_checkpoint_every_n_hours kept
  # them): a checkpoint too.
  with open(basename + "-1.index", "w"):
    pass
  assert not helper.step_is_recorded(1) and helper.has_checkpoint(1)
  os.remove(basename + "-1.index")
  assert helper.get_stale_checkpoint_files(9).asset_dirs == []
  os.makedirs(basename + "-1.assets")
  assert helper.get_stale_checkpoint_files(9).asset_dirs == [
      basename + "-1.assets"]
  # A state file that does not parse lists no step for sure: every step
  # counts as recorded, and nothing is stale.
  state_path = os.path.join(str(tmp_path), "checkpoint")
  with open(state_path, "w") as f:
    f.write("model_checkpoint_path: ")
  with pytest.raises(tf.errors.DataLossError,
                     match=f"checkpoint state file {state_path} does not "
                     "parse"):
    helper.get_existing_checkpoint_steps()
  assert helper.step_is_recorded(1)
  assert helper.get_stale_checkpoint_files(9) == (
      save_utils.StaleCheckpointFiles([], [], [], []))
  # Nor is a file larger than any state read into memory.
  with open(state_path, "w") as f:
    f.write("#" * (16 << 20) + "\n")
  with pytest.raises(tf.errors.DataLossError,
                     match="holds more than 16777216 bytes"):
    save_utils.checkpoint_state(str(tmp_path))


def test_ckpt_info_path():
  helper = save_utils.SaveHelper("/models/run/model.ckpt")
  assert helper.get_ckpt_info_path(7) == "/models/run/ckpt.info-7"


def _touch(path):
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("x")


def _make_asset_dir(path):
  tf.io.gfile.makedirs(path)
  _touch(os.path.join(path, "table-00000-of-00001"))


def test_stale_files_follow_the_checkpoint_files(tmp_path):
  model_dir = str(tmp_path)
  helper = save_utils.SaveHelper(os.path.join(model_dir, "model.ckpt"))

  def path(name):
    return os.path.join(model_dir, name)

  for step in (1, 2, 3, 4, 5, 6, 9):
    _make_asset_dir(path(f"model.ckpt-{step}.assets"))
  for step in (1, 2, 3, 7, 8, 9, 12):
    _touch(path(f"ckpt.info-{step}"))
  # Step 1: only the assets are left. Step 2: a V2 checkpoint. Step 3: the
  # Saver's deletion stopped after the index: not restorable any more. Step 4:
  # a V1 checkpoint. Step 5: the step being saved. Step 6: only named by the
  # state file.
  _touch(path("model.ckpt-2.index"))
  _touch(path("model.ckpt-2.data-00000-of-00001"))
  _touch(path("model.ckpt-3.data-00000-of-00001"))
  _touch(path("model.ckpt-3.meta"))
  _touch(path("model.ckpt-4"))
  _touch(path("model.ckpt-5.index"))
  tf.compat.v1.train.update_checkpoint_state(
      model_dir, path("model.ckpt-5"),
      all_model_checkpoint_paths=[path("model.ckpt-6"),
                                  path("model.ckpt-5")])
  # Other basenames in the same directory own steps 7, 8 and 12 as well.
  _touch(path("other.ckpt-7.index"))
  _make_asset_dir(path("other.ckpt-8.assets"))
  tf.io.gfile.makedirs(path("other.ckpt-12_temp_0123abcd"))
  # Names that are not this basename's stepped assets or info files (step 20
  # of other basenames: ckpt.info-20 would stay).
  for name in ("model.ckpt.assets", "other.ckpt-20.assets",
               "my-model.ckpt-20.assets", "model.ckpt-1-20.assets",
               "model.ckpt-x.assets", "model.ckpt-1.assets.tmp"):
    _make_asset_dir(path(name))
  # Temporaries of killed ckpt.info writes go with their step.
  _touch(path("ckpt.info-9.tmp"))
  _touch(path("ckpt.info-10.tmp-0123abcd"))
  _touch(path("ckpt.info-5.tmp-4567ef"))
  _touch(path("ckpt.info-latest"))
  _touch(path("ckpt.info-11.tmp-notHex"))
  # The sharded Saver's temporaries of killed saves up to the step saved;
  # a later step's may be a save under way.
  _make_asset_dir(path("model.ckpt-4_temp"))
  _touch(path("model.ckpt-5_temp_" + "89ab" * 8))
  _make_asset_dir(path("model.ckpt-6_temp"))
  # Names that only look like them are kept.
  _touch(path("model.ckpt-5_temp_89ab"))
  _make_asset_dir(path("model.ckpt-4_temp_backup"))
  # Temporaries of killed saves in the saved step's asset directory (only
  # there), and names that are not temporaries.
  for name in ("t-00000-of-00002-tmp-0123456789abcdef",
               "t.meta-00001-of-00002-tmp-0123456789abcdef.partial",
               "hash_filter_0-00003-of-00007-tmp-fedcba9876543210",
               "MonolithMultiHashTable.num_ps.tmp-" + "a" * 32,
               # MonolithWriteFileAtomically's (ReplaceFileTemporary).
               "g.num_ps.tmp-0000000000000001ffffffffffffffff",
               "t-00000-of-00002-tmp-0123", "t.partial", "u-tmp-x"):
    _touch(path("model.ckpt-5.assets/" + name))
  _touch(path("model.ckpt-6.assets/t-00000-of-00001-tmp-0123456789abcdef"))

  stale = helper.get_stale_checkpoint_files(5)
  # Steps past 5 (9, 10) are kept: another writer of the directory, ahead,
  # may be saving them.
  assert stale.asset_dirs == [
      path("model.ckpt-1.assets"),
      path("model.ckpt-3.assets"),
  ]
  # 7, 8 and 12 belong to other basenames' checkpoints.
  assert stale.info_files == [
      path("ckpt.info-1"),
      path("ckpt.info-3"),
  ]
  assert stale.saver_temporaries == [
      path("model.ckpt-4_temp"), path("model.ckpt-5_temp_" + "89ab" * 8)]
  assert stale.asset_temporaries == [
      path("model.ckpt-5.assets/" + name) for name in (
          "MonolithMultiHashTable.num_ps.tmp-" + "a" * 32,
          "g.num_ps.tmp-0000000000000001ffffffffffffffff",
          "hash_filter_0-00003-of-00007-tmp-fedcba9876543210",
          "t-00000-of-00002-tmp-0123456789abcdef",
          "t.meta-00001-of-00002-tmp-0123456789abcdef.partial")]

  before = set(tf.io.gfile.listdir(model_dir))
  assert helper.delete_stale_checkpoint_files(5) == sum(stale, [])
  deleted = {os.path.basename(p) for p in sum(stale[:3], [])}
  assert set(tf.io.gfile.listdir(model_dir)) == before - deleted
  assert sorted(tf.io.gfile.listdir(path("model.ckpt-5.assets"))) == [
      "t-00000-of-00002-tmp-0123", "t.partial", "table-00000-of-00001",
      "u-tmp-x"]
  assert helper.get_stale_checkpoint_files(5) == ([], [], [], [])
  # Once the directory's writer passes them, they go.
  assert helper.get_stale_checkpoint_files(11)[:2] == (
      [path("model.ckpt-9.assets")],
      [path("ckpt.info-9"), path("ckpt.info-9.tmp"),
       path("ckpt.info-10.tmp-0123abcd")])


def test_current_step_is_never_stale(tmp_path):
  helper = save_utils.SaveHelper(os.path.join(str(tmp_path), "model.ckpt"))
  _make_asset_dir(helper.get_ckpt_asset_dir(helper.get_ckpt_prefix(3)))
  _touch(helper.get_ckpt_info_path(3))
  # Its Saver has not written it (yet, or it failed): still not stale.
  assert helper.get_stale_checkpoint_files(3) == ([], [], [], [])
  assert helper.get_stale_checkpoint_files(4) == (
      [os.path.join(str(tmp_path), "model.ckpt-3.assets")],
      [helper.get_ckpt_info_path(3)], [], [])


def test_stale_files_of_a_basename_in_the_working_directory(
    tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  helper = save_utils.SaveHelper("model.ckpt")
  _make_asset_dir(helper.get_ckpt_asset_dir(helper.get_ckpt_prefix(3)))
  _touch(helper.get_ckpt_info_path(3))
  assert helper.get_stale_checkpoint_files(4) == (
      ["model.ckpt-3.assets"], ["ckpt.info-3"], [], [])
  assert helper.delete_stale_checkpoint_files(4) == [
      "model.ckpt-3.assets", "ckpt.info-3"]
  assert not os.listdir(tmp_path)


def test_a_name_that_is_not_utf8_stops_no_save(tmp_path):
  # TF's listdir raised UnicodeDecodeError, which the clean-up (that must
  # never stop training) did not catch, naming neither file nor folder.
  model_dir = str(tmp_path)
  with open(os.path.join(os.fsencode(model_dir), b"notes-\xe9.txt"), "w"):
    pass
  helper = save_utils.SaveHelper(os.path.join(model_dir, "model.ckpt"))
  with mock.patch.object(save_utils.logging, "warning") as warning:
    assert helper.delete_stale_checkpoint_files(4) == []
  assert "holds a file name that is not UTF-8 (b'notes-\\xe9.txt')" in (
      warning.call_args[0][0] % warning.call_args[0][1:])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=f"{re.escape(model_dir)} holds a file name that "
                     "is not UTF-8 .*: rename or move it"):
    save_utils.latest_checkpoint(model_dir)


def test_missing_directory_has_nothing_stale(tmp_path):
  helper = save_utils.SaveHelper(os.path.join(str(tmp_path), "no", "m.ckpt"))
  assert helper.get_stale_checkpoint_files(1) == ([], [], [], [])
  assert helper.delete_stale_checkpoint_files(1) == []


def test_delete_skips_what_is_already_deleted(tmp_path, monkeypatch):
  helper = save_utils.SaveHelper(os.path.join(str(tmp_path), "model.ckpt"))
  gone_dir = os.path.join(str(tmp_path), "model.ckpt-1.assets")
  gone_info = helper.get_ckpt_info_path(1)
  kept_dir = os.path.join(str(tmp_path), "model.ckpt-2.assets")
  _make_asset_dir(kept_dir)
  # As if another process deleted step 1's files after they were listed.
  monkeypatch.setattr(
      helper, "get_stale_checkpoint_files",
      lambda step, temporaries=True: save_utils.StaleCheckpointFiles(
          [gone_dir, kept_dir], [gone_info], [], []))
  assert helper.delete_stale_checkpoint_files(3) == [kept_dir]
  assert not tf.io.gfile.exists(kept_dir)


def test_a_folder_on_an_object_store_is_deleted_file_by_file_in_parallel(
    tmp_path, monkeypatch):
  # TF deletes a remote folder object after object (tens of ms each on
  # GCS), and a step's asset folder holds thousands of files.
  folder = os.path.join(str(tmp_path), "model.ckpt-1.assets")
  for sub in ("", "nested"):
    os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for i in range(40):
      with open(os.path.join(folder, sub, f"t-{i:05d}-of-00040"), "w") as f:
        f.write("x")
  removed_on = set()
  remove = tf.io.gfile.remove

  def recording_remove(path):
    removed_on.add(threading.current_thread().name)
    remove(path)

  monkeypatch.setattr(tf.io.gfile, "remove", recording_remove)
  save_utils._delete_tree(folder, parallel=True)
  assert not os.path.exists(folder)
  assert removed_on and threading.current_thread().name not in removed_on
  with pytest.raises(tf.errors.NotFoundError):
    save_utils._delete_tree(folder, parallel=True)
  assert [save_utils._deletes_one_object_at_a_time(p) for p in (
      "/tmp/m", "file:///tmp/m", "hdfs://nn/m", "viewfs://c/m", "gs://b/m",
      "s3://b/m")] == [False, False, False, False, True, True]


def test_a_delete_before_a_save_does_not_list_the_steps_asset_folder(
    tmp_path, monkeypatch):
  # It listed the folder for temporaries it then kept (twice a save, by
  # the tables' and the filters' listeners): a listing of a remote folder
  # that every PS writes into.
  helper = save_utils.SaveHelper(os.path.join(str(tmp_path), "model.ckpt"))
  asset_dir = helper.get_ckpt_asset_dir(helper.get_ckpt_prefix(5))
  _make_asset_dir(asset_dir)
  listed = []
  real_listdir = tf.io.gfile.listdir

  def listdir(path):
    listed.append(path)
    return real_listdir(path)

  monkeypatch.setattr(tf.io.gfile, "listdir", listdir)
  helper.delete_stale_checkpoint_files(5, temporaries=False)
  assert asset_dir not in listed and listed
  helper.delete_stale_checkpoint_files(5)
  assert asset_dir in listed


def test_stale_files_of_a_saver_with_max_to_keep(tmp_path):
  basename = os.path.join(str(tmp_path), "model.ckpt")
  helper = save_utils.SaveHelper(basename)
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    tf.compat.v1.train.get_or_create_global_step()
    saver = tf.compat.v1.train.Saver(max_to_keep=2)
    sess.run(tf.compat.v1.global_variables_initializer())
    for step in range(1, 6):
      _make_asset_dir(helper.get_ckpt_asset_dir(helper.get_ckpt_prefix(step)))
      _touch(helper.get_ckpt_info_path(step))
      saver.save(sess, basename, global_step=step)
  stale = helper.get_stale_checkpoint_files(5)
  assert stale.asset_dirs == [f"{basename}-{step}.assets" for step in (1, 2, 3)]
  assert stale.info_files == [helper.get_ckpt_info_path(s) for s in (1, 2, 3)]


class _StepsListener(tf.compat.v1.train.CheckpointSaverListener):
  """Records the steps saved."""

  def __init__(self):
    self.steps = []

  def before_save(self, session, global_step_value):
    self.steps.append(global_step_value)


def _train(model_dir: str, last_step: int, restore: bool = False,
           listeners=(), strict_creator: bool = False, **hook_kwargs):
  """Trains to last_step with the hook saving every 2 steps (from the latest
  checkpoint with `restore`, through TF's session creator or with
  `strict_creator` StrictChiefSessionCreator; `listeners` after one
  recording the steps); the first step and the steps saved."""
  with tf.Graph().as_default():
    step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(step, 1)
    listener = _StepsListener()
    hook = save_utils.NoFirstSaveCheckpointSaverHook(
        model_dir, save_steps=2, listeners=[listener, *listeners],
        **hook_kwargs)
    stop = tf.compat.v1.train.StopAtStepHook(last_step=last_step)
    session = (tf.compat.v1.train.MonitoredSession(
        session_creator=save_utils.StrictChiefSessionCreator(
            checkpoint_dir=model_dir),
        hooks=[hook, stop]) if strict_creator else
               tf.compat.v1.train.MonitoredTrainingSession(
                   checkpoint_dir=model_dir if restore else None,
                   save_checkpoint_steps=None, save_checkpoint_secs=None,
                   save_summaries_steps=None, hooks=[hook, stop]))
    with session as sess:
      first_step = sess.run(step)
      while not sess.should_stop():
        sess.run(train_op)
  return first_step, listener.steps


def test_no_first_save_hook_knows_the_step_through_a_relative_dir(
    tmp_path, monkeypatch):
  # The checkpoint state names absolute paths; the restart gives the
  # model dir relative to the working directory.
  assert _train(str(tmp_path / "model"), 3) == (0, [0, 2, 3])
  assert os.path.isabs(tf.train.get_checkpoint_state(
      str(tmp_path / "model")).model_checkpoint_path)
  monkeypatch.chdir(tmp_path)
  assert _train("model", 6, restore=True) == (3, [5, 6])


def test_no_first_save_hook_skips_only_the_restored_step(tmp_path):
  model_dir = str(tmp_path / "model")
  # A fresh job: step 0 has no checkpoint yet, so it is saved.
  assert _train(model_dir, 3) == (0, [0, 2, 3])
  mtime = os.path.getmtime(os.path.join(model_dir, "model.ckpt-3.index"))
  # A restart from step 3: not saved again on session creation.
  assert _train(model_dir, 6, restore=True) == (3, [5, 6])
  assert os.path.getmtime(
      os.path.join(model_dir, "model.ckpt-3.index")) == mtime


def test_no_first_save_hook_saves_over_files_of_no_restored_step(tmp_path):
  # A start that restores nothing (no checkpoint_dir): step 0's files
  # are not the session's, so step 0 is saved (and recorded).
  model_dir = str(tmp_path / "model")
  assert _train(model_dir, 3) == (0, [0, 2, 3])
  assert _train(model_dir, 1) == (0, [0, 1])


def test_a_lost_state_file_resumes_from_the_latest_whole_checkpoint(
    tmp_path):
  # The state file was lost (e.g. an HDFS rename that failed after it
  # deleted the old one): a fresh start would save over the checkpoints.
  model_dir = str(tmp_path / "model")
  assert _train(model_dir, 3) == (0, [0, 2, 3])
  index = os.path.join(model_dir, "model.ckpt-3.index")
  mtime = os.path.getmtime(index)
  os.remove(os.path.join(model_dir, "checkpoint"))
  latest = os.path.join(model_dir, "model.ckpt-3")
  assert save_utils.latest_checkpoint(model_dir) == latest
  # TF's creator takes the directory for one without checkpoints: the hook
  # refuses to save over them, naming the way out.
  with pytest.raises(tf.errors.FailedPreconditionError,
                     match="no \"checkpoint\" state file.*StrictChief"
                     ".*update_checkpoint_state") as e:
    _train(model_dir, 6, restore=True)
  assert repr(latest) in e.value.message
  assert os.path.getmtime(index) == mtime
  assert _train(model_dir, 6, strict_creator=True) == (3, [5, 6])
  assert os.path.getmtime(index) == mtime
  # The next save wrote the state file again; the older checkpoints the
  # recovered state did not list are kept.
  assert tf.train.latest_checkpoint(model_dir).endswith("model.ckpt-6")
  assert os.path.exists(os.path.join(model_dir, "model.ckpt-0.index"))


def test_the_state_file_written_back_as_the_error_says_resumes(tmp_path):
  model_dir = str(tmp_path / "model")
  assert _train(model_dir, 3) == (0, [0, 2, 3])
  os.remove(os.path.join(model_dir, "checkpoint"))
  with pytest.raises(tf.errors.FailedPreconditionError) as e:
    _train(model_dir, 6, restore=True)
  advice = re.search(
      r"tf\.compat\.v1\.train\.update_checkpoint_state\((.*?)\)$",
      e.value.message)
  tf.compat.v1.train.update_checkpoint_state(
      *ast.literal_eval(f"({advice.group(1)})"))
  assert _train(model_dir, 6, restore=True) == (3, [5, 6])


def test_a_lost_state_file_refuses_only_sessions_built_from_scratch(tmp_path):
  model_dir = str(tmp_path / "model")
  assert _train(model_dir, 3) == (0, [0, 2, 3])
  os.remove(os.path.join(model_dir, "checkpoint"))
  latest = os.path.join(model_dir, "model.ckpt-3")
  with tf.Graph().as_default():
    step = tf.compat.v1.train.get_or_create_global_step()
    with tf.compat.v1.Session() as sess:
      sess.run(step.initializer)
      with pytest.raises(tf.errors.FailedPreconditionError,
                         match="did not restore"):
        save_utils.restored_checkpoint(sess, model_dir, None)
      # A step above 0 was kept (PS tasks still up while the chief
      # restarted): its save writes the state file back, not refused.
      sess.run(step.assign(5))
      assert save_utils.restored_checkpoint(sess, model_dir, None) == latest
  # Checkpoints of another basename beside: which is this job's is not
  # known.
  shutil.copyfile(latest + ".index",
                  os.path.join(model_dir, "pretrained-9.index"))
  shutil.copyfile(latest + ".data-00000-of-00001",
                  os.path.join(model_dir, "pretrained-9.data-00000-of-00001"))
  with pytest.raises(tf.errors.FailedPreconditionError,
                     match="several basenames .*model.ckpt, .*pretrained"):
    save_utils.latest_checkpoint(model_dir)


def test_only_whole_checkpoints_stand_for_a_lost_state_file(tmp_path):
  model_dir = str(tmp_path / "model")
  assert _train(model_dir, 3) == (0, [0, 2, 3])
  os.remove(os.path.join(model_dir, "checkpoint"))
  # Step 3 lost a data shard; others' files and a leftover temporary of
  # the state file name no checkpoint.
  for name in os.listdir(model_dir):
    if name.startswith("model.ckpt-3.data-"):
      os.remove(os.path.join(model_dir, name))
  for name in ("checkpoint.tmp0123", "other.index"):
    (tmp_path / "model" / name).write_text("x")
  assert save_utils.latest_checkpoint(model_dir) == os.path.join(
      model_dir, "model.ckpt-2")
  # A sharded save's part before its merge (S3 writes parts beside the
  # checkpoint) is no checkpoint.
  for suffix in ("index", "data-00000-of-00001"):
    shutil.copyfile(
        os.path.join(model_dir, "model.ckpt-2." + suffix),
        os.path.join(model_dir, "model.ckpt-4.part-00000-of-00001." + suffix))
  assert save_utils.latest_checkpoint(model_dir) == os.path.join(
      model_dir, "model.ckpt-2")
  # An index cut short (a sharded Saver writes it in place) does not read.
  with open(os.path.join(model_dir, "model.ckpt-2.index"), "r+b") as f:
    f.truncate(0)
  assert save_utils.latest_checkpoint(model_dir) == os.path.join(
      model_dir, "model.ckpt-0")
  for name in os.listdir(model_dir):
    if name.startswith("model.ckpt-"):
      os.remove(os.path.join(model_dir, name))
  assert save_utils.latest_checkpoint(model_dir) is None
  assert save_utils.latest_checkpoint(str(tmp_path / "not_yet")) is None


@contextlib.contextmanager
def _session_with_saves(prefix, saves):
  """A session and its global step, saved as `prefix`-<name> holding
  <held> for each (name, held, listed) of `saves` (listed: written to the
  checkpoint state)."""
  with tf.Graph().as_default():
    step = tf.compat.v1.train.get_or_create_global_step()
    saver = tf.compat.v1.train.Saver(max_to_keep=5)
    with tf.compat.v1.Session() as sess:
      sess.run(step.initializer)
      for name, held, listed in saves:
        step.load(held, sess)
        saver.save(sess, prefix, global_step=name, write_state=listed)
      yield sess, step


def test_restored_checkpoint_follows_the_global_step_restored(tmp_path):
  model_dir = str(tmp_path / "model")
  prefix = os.path.join(model_dir, "model.ckpt")
  # The last save is not listed (killed before the state was written, or
  # of another timeline).
  saves = [(0, 0, True), (1, 1, True), (3, 3, True), (5, 5, False)]
  with _session_with_saves(prefix, saves) as (sess, step):
    for s, want in ((1, 1), (3, 3), (5, 3), (0, 3), (2, 3)):
      step.load(s, sess)
      assert save_utils.restored_checkpoint(sess, model_dir) == (
          f"{prefix}-{want}"), s


def test_restored_checkpoint_reads_the_step_each_checkpoint_holds(tmp_path):
  # With several workers a checkpoint named by step K holds a later global
  # step (the others trained on while the hook saved): here K + 2. A
  # rollback to model.ckpt-1 restores step 3, which names another
  # checkpoint; one to model.ckpt-5 restores step 7, which names none.
  model_dir = str(tmp_path / "model")
  prefix = os.path.join(model_dir, "model.ckpt")
  saves = [(s, s + 2, True) for s in (1, 3, 5, 7)]
  with _session_with_saves(prefix, saves) as (sess, step):
    for held, want in ((3, 1), (5, 3), (7, 5), (9, 7), (8, 7)):
      step.load(held, sess)
      assert save_utils.restored_checkpoint(sess, model_dir) == (
          f"{prefix}-{want}"), held
    # A listed checkpoint whose files are gone is not the one restored.
    for name in os.listdir(model_dir):
      if name.startswith("model.ckpt-3."):
        os.remove(os.path.join(model_dir, name))
    step.load(5, sess)
    assert save_utils.restored_checkpoint(sess, model_dir) == f"{prefix}-7"
    # Nor is one that cannot be read, the latest included: a rollback away
    # from a damaged latest checkpoint.
    with open(f"{prefix}-7.index", "wb") as f:
      f.write(b"damaged")
    step.load(7, sess)
    assert save_utils.restored_checkpoint(sess, model_dir) == f"{prefix}-5"


def test_no_first_save_hook_skips_a_restored_checkpoint_of_a_later_step(
    tmp_path):
  # Saved by one of several workers: named 3, holding step 5. The restart
  # starts at 5 and saves neither again nor as model.ckpt-5.
  model_dir = str(tmp_path / "model")
  prefix = os.path.join(model_dir, "model.ckpt")
  with _session_with_saves(prefix, [(3, 5, True)]):
    pass
  assert _train(model_dir, 7, restore=True) == (5, [7])
  assert not os.path.exists(f"{prefix}-5.index")


def test_no_first_save_false_saves_as_tf_does(tmp_path):
  model_dir = str(tmp_path / "model")
  assert _train(model_dir, 3, no_first_save=False) == (0, [0, 2, 3])
  assert _train(model_dir, 6, restore=True, no_first_save=False) == (
      3, [3, 5, 6])


def test_threads_running_after_run_at_once_save_a_step_once(tmp_path):
  with tf.Graph().as_default():
    step = tf.compat.v1.train.get_or_create_global_step()
    listener = _StepsListener()
    hook = save_utils.NoFirstSaveCheckpointSaverHook(
        str(tmp_path / "model"), save_steps=10, listeners=[listener],
        saver=tf.compat.v1.train.Saver())
    hook.begin()
    # Both threads meet after checking the schedule, if they can: without
    # a lock around after_run they then both found step 10 due.
    meet = threading.Barrier(2, timeout=1)
    should_trigger = hook._timer.should_trigger_for_step

    def meeting_check(global_step):
      due = should_trigger(global_step)
      try:
        meet.wait()
      except threading.BrokenBarrierError:
        pass  # The other thread is held off: as it should be.
      return due

    hook._timer.should_trigger_for_step = meeting_check
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      hook.after_create_session(sess, None)  # saves step 0
      meet.reset()
      sess.run(step.assign(10))
      context = tf.compat.v1.train.SessionRunContext((), sess)
      values = tf.compat.v1.train.SessionRunValues(9, None, None)
      threads = [
          threading.Thread(target=hook.after_run, args=(context, values))
          for _ in range(2)
      ]
      for thread in threads:
        thread.start()
      for thread in threads:
        thread.join()
  assert listener.steps == [0, 10]


class _FailingListener(tf.compat.v1.train.CheckpointSaverListener):
  """Fails the saves of the given steps; records what it was called for."""

  def __init__(self, calls, name, fail_steps=(), error=None):
    self.calls, self.name = calls, name
    self.fail_steps, self.error = fail_steps, error

  def before_save(self, session, global_step_value):
    self.calls.append((self.name, "before", global_step_value))
    if global_step_value in self.fail_steps:
      raise self.error

  def after_save(self, session, global_step_value):
    self.calls.append((self.name, "after", global_step_value))

  def begin(self):
    self.calls.append((self.name, "begin"))

  def end(self, session, global_step_value):
    self.calls.append((self.name, "end", global_step_value))


def test_save_errors_and_guard_listeners(tmp_path):
  # (MonitoredSession would recover from an UnavailableError on its own.)
  denied = tf.errors.PermissionDeniedError(None, None, "cannot write")
  calls = []
  guards = [
      _FailingListener(calls, "g1", fail_steps=(2,), error=RuntimeError("x")),
      _FailingListener(calls, "g2")
  ]
  # The save of step 2 fails; training goes on and step 3 is saved.
  model_dir = str(tmp_path / "ignored")
  _train(model_dir, 3,
         listeners=[
             _FailingListener(calls, "saver", fail_steps=(2,), error=denied)
         ],
         ignore_save_errors=True, guard_saver_listeners=guards)
  assert [c for c in calls if c[1:] == ("before", 2) or
          c[1:] == ("after", 2)] == [
      ("g1", "before", 2), ("g2", "before", 2), ("saver", "before", 2),
      ("g2", "after", 2), ("g1", "after", 2)]
  # The guards' begin and end run as the listeners' do.
  for name in ("g1", "g2", "saver"):
    assert calls.count((name, "begin")) == 1
    assert calls.count((name, "end", 3)) == 1
  assert tf.train.get_checkpoint_state(model_dir).model_checkpoint_path.\
      endswith("model.ckpt-3")
  def train_failing_at(step, folder):
    """Trains to step 3 without ignore_save_errors, the save of `step`
    failing: the error stops training."""
    calls.clear()
    with pytest.raises(tf.errors.PermissionDeniedError, match="cannot write"):
      _train(str(tmp_path / folder), 3,
             listeners=[
                 _FailingListener(calls, "saver", fail_steps=(step,),
                                  error=denied)
             ],
             guard_saver_listeners=guards[1:])

  # The guards still ran around the save.
  train_failing_at(2, "raised")
  assert calls[-3:] == [("g2", "before", 2), ("saver", "before", 2),
                        ("g2", "after", 2)]
  # A last save (at the session's end) that fails still ends the guards.
  train_failing_at(3, "last")
  assert calls[-2:] == [("g2", "after", 3), ("g2", "end", 3)]


def test_listeners_of_the_other_kind_are_refused(tmp_path):
  """A saver listener given to the restorer hook, or a restorer listener
  to the saver hook, failed (or a guard was passed over, its error
  logged) only once the session ran."""
  with pytest.raises(TypeError, match=r"CheckpointRestorerHook "
                     r"listeners\[1\] is a CheckpointSaverListener, which "
                     r"has no before_restore, after_restore: is it meant "
                     r"for a CheckpointSaverHook's listeners\?"):
    basic_restore_hook.CheckpointRestorerHook([
        basic_restore_hook.CheckpointRestorerListener(),
        tf.compat.v1.train.CheckpointSaverListener()])
  for kwargs in (dict(listeners=[object()]),
                 dict(guard_saver_listeners=[
                     basic_restore_hook.CheckpointRestorerListener()])):
    with pytest.raises(TypeError, match=r"NoFirstSaveCheckpointSaverHook "
                       r"\w+\[0\] is a \w+, which has no .*before_save"):
      save_utils.NoFirstSaveCheckpointSaverHook(str(tmp_path), save_steps=1,
                                                **kwargs)

  # A listener that saves the checkpoint's own files is no guard.
  with tf.Graph().as_default():
    tables = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        str(tmp_path / "model.ckpt"))
    with pytest.raises(TypeError, match=r"guard_saver_listeners\[0\] is a "
                       r"MultiHashTableCheckpointSaverListener, which saves "
                       r"files of the checkpoint: pass it in listeners"):
      save_utils.NoFirstSaveCheckpointSaverHook(
          str(tmp_path), save_steps=1, guard_saver_listeners=[tables])

  class OnlySaves:
    """A guard as the original's callers wrote them: no begin nor end."""

    def before_save(self, session, global_step_value):
      del session, global_step_value

    def after_save(self, session, global_step_value):
      del session, global_step_value

  assert _train(str(tmp_path / "duck"), 2,
                guard_saver_listeners=[OnlySaves()]) == (0, [0, 2])


@pytest.mark.parametrize("kwargs", [
    dict(tide_start_hour=1, tide_end_hour=5, tide_save_secs=60),
    dict(is_dense_only=True)
])
def test_the_originals_save_schedules_are_refused(tmp_path, kwargs):
  with pytest.raises(ValueError, match="not supported here"):
    save_utils.NoFirstSaveCheckpointSaverHook(str(tmp_path), save_steps=1,
                                              **kwargs)
  # Part of a tide schedule did nothing in the original: accepted.
  save_utils.NoFirstSaveCheckpointSaverHook(str(tmp_path), save_steps=1,
                                            tide_start_hour=1,
                                            tide_start_minute=0)


def test_saver_hook_order_is_checked_per_monitored_session(tmp_path):
  with tf.Graph().as_default():
    tf.compat.v1.train.get_or_create_global_step()

    def session(*hooks):
      return tf.compat.v1.train.MonitoredSession(hooks=list(hooks))

    def saver_hook(name):
      return save_utils.NoFirstSaveCheckpointSaverHook(
          str(tmp_path / name), save_steps=1)

    with session(basic_restore_hook.CheckpointRestorerHook(),
                 saver_hook("ordered")):
      pass
    # Later sessions of the (now finalized) graph: one without a restorer,
    # and one with a new restorer listed after the saver hook.
    with session(saver_hook("alone")):
      pass
    with pytest.raises(RuntimeError, match="NoFirstSaveCheckpointSaverHook "
                       "runs before a CheckpointRestorerHook"):
      session(saver_hook("misordered"),
              basic_restore_hook.CheckpointRestorerHook())


class _FailingSessionCreator(tf.compat.v1.train.SessionCreator):

  def create_session(self):
    raise tf.errors.PermissionDeniedError(None, None, "no session today")


def test_restorers_of_a_failed_session_creation_are_not_waited_for(
    tmp_path):
  # A restorer hook whose MonitoredSession failed to create its session
  # stays pending while its caller keeps it: later sessions of the graph,
  # with hooks of their own, must not be told it has yet to run, nor
  # pass a restorer of their own listed after the saver hook.
  with tf.Graph().as_default():
    tf.compat.v1.train.get_or_create_global_step()
    monitor = save_utils.PsMonitor(0)  # its ops before the graph is final

    def hooks(*kinds):
      made = {
          "restorer": basic_restore_hook.CheckpointRestorerHook,
          "saver": lambda: save_utils.NoFirstSaveCheckpointSaverHook(
              str(tmp_path / "model"), save_steps=1),
          "marker": lambda: save_utils.PsInitializedStateHook(monitor),
      }
      return [made[kind]() for kind in kinds]

    failed = hooks("restorer", "saver", "marker")
    with pytest.raises(tf.errors.PermissionDeniedError):
      tf.compat.v1.train.MonitoredSession(
          session_creator=_FailingSessionCreator(), hooks=failed)
    with tf.compat.v1.train.MonitoredSession(
        hooks=hooks("restorer", "saver", "marker")):
      pass
    for wrong in (("saver", "restorer"), ("marker", "restorer")):
      with pytest.raises(RuntimeError, match="runs before a "
                         "CheckpointRestorerHook"):
        tf.compat.v1.train.MonitoredSession(hooks=hooks(*wrong))
    # The same hooks again, the restorer after the saver: caught too.
    with pytest.raises(RuntimeError, match="runs before a "
                       "CheckpointRestorerHook"):
      tf.compat.v1.train.MonitoredSession(hooks=failed[1:] + failed[:1])
    assert failed  # kept throughout, as by a caller that keeps its hooks


def _save_variable(model_dir: str, value: float) -> str:
  """Saves a graph with the variable "v" = value at step 7; the prefix."""
  with tf.Graph().as_default():
    v = tf.compat.v1.get_variable("v", initializer=value)
    with tf.compat.v1.Session() as sess:
      sess.run(v.initializer)
      return tf.compat.v1.train.Saver().save(
          sess, os.path.join(model_dir, "model.ckpt"), global_step=7)


def test_latest_checkpoint_of_a_directory_without_one(tmp_path):
  assert save_utils.latest_checkpoint(str(tmp_path)) is None
  assert save_utils.get_latest_checkpoint_state(str(tmp_path), 5) is None
  prefix = _save_variable(str(tmp_path), 1.0)
  state = save_utils.get_latest_checkpoint_state(str(tmp_path), 7)
  assert state == save_utils.checkpoint_state(str(tmp_path))
  assert state.model_checkpoint_path == prefix
  assert save_utils.latest_checkpoint(str(tmp_path / "missing")) is None


def test_latest_checkpoint_resolves_a_relative_state(tmp_path):
  prefix = _save_variable(str(tmp_path), 1.0)
  (tmp_path / "checkpoint").write_text(
      'model_checkpoint_path: "model.ckpt-7"\n')
  assert save_utils.latest_checkpoint(str(tmp_path)) == prefix
  assert tf.train.latest_checkpoint(str(tmp_path)) == prefix


@pytest.mark.parametrize("state, error, message", [
    ("model_checkpoint_path: {", tf.errors.DataLossError, "does not parse"),
    ("model_checkpoint_path: 'model.ckpt-5'", tf.errors.NotFoundError,
     "model.ckpt-5, which has no files"),
    ("all_model_checkpoint_paths: 'model.ckpt-7'", tf.errors.DataLossError,
     "names no checkpoint"),
])
def test_latest_checkpoint_rejects_a_state_tf_ignores(tmp_path, state, error,
                                                      message):
  _save_variable(str(tmp_path), 1.0)
  (tmp_path / "checkpoint").write_text(state)
  if "all_model" not in state:
    # TF takes these for "no checkpoint" (and raises a ValueError naming
    # the directory for the last).
    assert tf.train.latest_checkpoint(str(tmp_path)) is None
  with pytest.raises(error, match=message) as e:
    save_utils.latest_checkpoint(str(tmp_path))
  assert str(tmp_path / "checkpoint") in e.value.message


def test_latest_checkpoint_rejects_a_state_of_other_bytes_than_utf8(tmp_path):
  _save_variable(str(tmp_path), 1.0)
  (tmp_path / "checkpoint").write_bytes(b'model_checkpoint_path: "\xff"\n')
  with pytest.raises(tf.errors.DataLossError,
                     match="checkpoint state file .* is not UTF-8 text"):
    save_utils.latest_checkpoint(str(tmp_path))


def test_latest_checkpoint_raises_when_the_state_cannot_be_read(tmp_path):
  # A state "file" that exists but cannot be read stands for a transient
  # file-system error.
  (tmp_path / "checkpoint").mkdir()
  assert tf.train.latest_checkpoint(str(tmp_path)) is None
  with pytest.raises(tf.errors.FailedPreconditionError,
                     match=re.escape(f"{tmp_path / 'checkpoint'}; Is a "
                                     "directory")):
    save_utils.latest_checkpoint(str(tmp_path))


def _session_value(creator_args: dict) -> float:
  """The value of "v" (initialized to 5.0) in a session that a
  StrictChiefSessionCreator creates."""
  with tf.Graph().as_default():
    v = tf.compat.v1.get_variable("v", initializer=5.0)
    creator = save_utils.StrictChiefSessionCreator(**creator_args)
    with tf.compat.v1.train.MonitoredSession(session_creator=creator) as sess:
      return sess.run(v)


def test_strict_chief_session_creator_restores_or_fails(tmp_path):
  model_dir = str(tmp_path)
  assert _session_value({"checkpoint_dir": model_dir}) == 5.0
  _save_variable(model_dir, 1.0)
  assert _session_value({"checkpoint_dir": model_dir}) == 1.0
  assert _session_value({}) == 5.0
  # The state names a checkpoint that is gone: TF's creator would
  # initialize "v"; this one fails.
  for name in os.listdir(model_dir):
    if name.startswith("model.ckpt-7"):
      os.remove(os.path.join(model_dir, name))
  with pytest.raises(tf.errors.NotFoundError, match="which has no files"):
    _session_value({"checkpoint_dir": model_dir})


@pytest.mark.parametrize("copy", [False, True], ids=["moved", "copied"])
def test_latest_checkpoint_of_a_moved_or_copied_model_directory(
    tmp_path, copy):
  # The Saver wrote absolute paths; the directory was then moved or copied:
  # it reads (and its Saver rotates) its own files, not the original's.
  _save_variable(str(tmp_path / "a"), 1.0)
  (shutil.copytree if copy else os.rename)(tmp_path / "a", tmp_path / "b")
  here = str(tmp_path / "b" / "model.ckpt-7")
  assert save_utils.latest_checkpoint(str(tmp_path / "b")) == here
  assert list(save_utils.checkpoint_state(
      str(tmp_path / "b")).all_model_checkpoint_paths) == [here]
  if copy:
    assert save_utils.latest_checkpoint(str(tmp_path / "a")) == str(
        tmp_path / "a" / "model.ckpt-7")


def test_latest_checkpoint_through_another_spelling_of_the_directory(
    tmp_path):
  # The same directory through a symlink is not a copy: the state's paths
  # are spelled as the directory is, one name per checkpoint.
  _save_variable(str(tmp_path / "a"), 1.0)
  os.symlink(tmp_path / "a", tmp_path / "link")
  assert save_utils.latest_checkpoint(str(tmp_path / "link")) == str(
      tmp_path / "link" / "model.ckpt-7")


def test_a_partial_copy_lists_only_its_own_checkpoints(tmp_path):
  # Only the latest checkpoint was copied: the older ones the state lists
  # stay the original directory's, out of the copy's rotation.
  a, b = tmp_path / "a", tmp_path / "b"
  with tf.Graph().as_default():
    step = tf.compat.v1.train.get_or_create_global_step()
    saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session() as sess:
      sess.run(step.initializer)
      for s in (1, 2):
        saver.save(sess, str(a / "model.ckpt"), global_step=s)
  os.makedirs(b)
  for name in os.listdir(a):
    if name == "checkpoint" or name.startswith("model.ckpt-2."):
      shutil.copy(a / name, b / name)
  state = save_utils.checkpoint_state(str(b))
  assert state.model_checkpoint_path == str(b / "model.ckpt-2")
  assert list(state.all_model_checkpoint_paths) == [str(b / "model.ckpt-2")]


def _saves_through_restarts(model_dir: str, steps_per_session):
  """Per session (a restart each), a StrictChiefSessionCreator session
  whose Saver (max_to_keep=2) saves the given steps."""
  for steps in steps_per_session:
    with tf.Graph().as_default():
      step = tf.compat.v1.train.get_or_create_global_step()
      saver = tf.compat.v1.train.Saver(max_to_keep=2)
      creator = save_utils.StrictChiefSessionCreator(
          scaffold=tf.compat.v1.train.Scaffold(saver=saver),
          checkpoint_dir=model_dir)
      with creator.create_session() as sess:
        for s in steps:
          step.load(s, sess)
          saver.save(sess, os.path.join(model_dir, "model.ckpt"),
                     global_step=s)


def test_max_to_keep_goes_on_after_a_restart(tmp_path):
  model_dir = str(tmp_path)
  _saves_through_restarts(model_dir, [[1, 2, 3], [4]])
  # The restarted Saver knew of 2 and 3 (TF's ChiefSessionCreator recovers
  # them too), so it deleted 2 when it saved 4.
  index_files = sorted(
      name for name in os.listdir(model_dir) if name.endswith(".index"))
  assert index_files == ["model.ckpt-3.index", "model.ckpt-4.index"]


def test_a_save_of_per_ps_files_that_stops_leaves_the_saving_mark(tmp_path):
  directory = str(tmp_path)
  pattern = re.compile(r"g_(0|[1-9][0-9]*)")
  with save_utils.saving_per_ps_files(directory, "g", pattern, 2, False):
    pass
  assert save_utils.read_ps_count(directory, "g") == 2
  with pytest.raises(RuntimeError, match="PS 1 went away"):
    with save_utils.saving_per_ps_files(directory, "g", pattern, 2, True):
      raise RuntimeError("PS 1 went away")
  with pytest.raises(tf.errors.DataLossError,
                     match="began and never recorded its end .* Restore "
                     "another checkpoint .* write the number of PS tasks "
                     "and a newline"):
    save_utils.read_ps_count(directory, "g")
  # Nothing of the group to save (no filters): no record, not the mark.
  with save_utils.saving_per_ps_files(directory, "g", pattern, 0, False):
    pass
  assert save_utils.read_ps_count(directory, "g") is None


def test_a_ps_count_record_lost_beside_its_temporary_is_data_loss(tmp_path):
  # An HDFS rename deletes the old record first: one that then failed left
  # only the temporary, and no record would read the group's files of
  # every PS ever saved there as the last save's.
  directory = str(tmp_path)
  save_utils.write_ps_count(directory, "g", 4)
  path = save_utils.ps_count_path(directory, "g")
  os.rename(path, path + ".tmp-" + "0" * 32)
  with pytest.raises(tf.errors.DataLossError,
                     match="g.num_ps is missing, but .*tmp-0+, a write of it"):
    save_utils.read_ps_count(directory, "g")
  os.rename(path + ".tmp-" + "0" * 32, path)
  assert save_utils.read_ps_count(directory, "g") == 4


@pytest.mark.parametrize("record", [b"1", b"12", b"", b"\xff\n", b"0\n",
                                    b"3\n\n", b"1" * 100 + b"\n"])
def test_a_damaged_ps_count_record_is_data_loss(tmp_path, record):
  # "1" of a torn "12\n" would drop PS 1 to 11's files: the newline is
  # part of the record.
  directory = str(tmp_path)
  with open(save_utils.ps_count_path(directory, "g"), "wb") as f:
    f.write(record)
  with pytest.raises(tf.errors.DataLossError,
                     match="should hold the number of PS tasks that saved g "
                     "and a newline"):
    save_utils.read_ps_count(directory, "g")


def test_a_ps_index_no_save_writes_is_data_loss_naming_the_file(tmp_path):
  # Without a count record, restores take the highest index found plus one
  # for the PS count: a stray name of index 10^12 must not become a
  # trillion PS tasks (or a set of that many indices).
  directory = str(tmp_path)
  pattern = re.compile(r"g_(0|[1-9][0-9]*)")
  for name in ("g_0", f"g_{save_utils.MAX_PS_TASKS - 1}"):
    (tmp_path / name).write_text("")
  assert save_utils.ps_indices_in(directory, pattern) == {
      0, save_utils.MAX_PS_TASKS - 1}
  (tmp_path / "g_1000000000000").write_text("")
  with pytest.raises(tf.errors.DataLossError,
                     match=re.escape(os.path.join(directory,
                                                  "g_1000000000000")) +
                     " names PS task 1000000000000, but saves write at most "
                     "999999 PS tasks' files"):
    save_utils.ps_indices_in(directory, pattern)
  for num_ps in (0, save_utils.MAX_PS_TASKS + 1):
    with pytest.raises(ValueError, match="num_ps must be in"):
      save_utils.ps_count_record(num_ps)
  assert save_utils.ps_count_record(save_utils.MAX_PS_TASKS) == "999999\n"


def test_mutated_state_files_and_ps_counts_read_or_fail_clearly(tmp_path):
  # Fuzz (fixed seed, bounded): a checkpoint state file or PS count record
  # cut, flipped or spliced gives a state, a count or a tf.errors.OpError
  # naming the file, never another exception.
  rng = random.Random(20261206)
  directory = str(tmp_path)
  for step in (3, 7):
    _touch(os.path.join(directory, f"model.ckpt-{step}.index"))
  state = (f'model_checkpoint_path: "{directory}/model.ckpt-7"\n'
           'all_model_checkpoint_paths: "model.ckpt-3"\n'
           'all_model_checkpoint_paths: "model.ckpt-7"\n').encode()
  pieces = (b'"', b"\\", b"\n", b":", b"{", b"all_model_checkpoint_paths",
            b"model.ckpt-", b"\xff", b"\x00", b"9" * 30, b"-1")
  helper = save_utils.SaveHelper(os.path.join(directory, "model.ckpt"))
  outcomes = collections.Counter()
  for _ in range(600):
    for original, path in ((state, os.path.join(directory, "checkpoint")),
                           (b"12\n", save_utils.ps_count_path(directory,
                                                              "g"))):
      data = bytearray(original)
      for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        kind = rng.randrange(3)
        if kind == 0:
          del data[at:]
        elif kind == 1 and at < len(data):
          data[at] ^= 1 << rng.randrange(8)
        else:
          data[at:at] = rng.choice(pieces)
      with open(path, "wb") as f:
        f.write(data)
      try:
        if path.endswith("checkpoint"):
          read = save_utils.checkpoint_state(directory)
          steps = helper.get_existing_checkpoint_steps()
          assert read is None or read.model_checkpoint_path
          assert all(isinstance(s, int) for s in steps)
        else:
          count = save_utils.read_ps_count(directory, "g")
          assert count is None or 1 <= count <= save_utils.MAX_PS_TASKS
        outcomes["read"] += 1
      except tf.errors.OpError as e:
        assert path in e.message, e.message
        outcomes[type(e).__name__] += 1
  # Both ways happened, often.
  assert outcomes["read"] > 100 and outcomes["DataLossError"] > 100, outcomes


def test_ps_counts_are_written_through_temporaries_of_their_own(
    tmp_path, monkeypatch):
  directory = str(tmp_path)
  save_utils.write_ps_count(directory, "MonolithMultiHashTable", 3)
  save_utils.write_ps_count(directory, "MonolithMultiHashTable", 2)
  assert save_utils.read_ps_count(directory, "MonolithMultiHashTable") == 2
  assert os.listdir(directory) == [
      os.path.basename(save_utils.ps_count_path(directory,
                                                "MonolithMultiHashTable"))]
  # Each write has its own temporary (two writers of one path never write
  # into one file); a failed write removes its own and keeps the record.
  temporaries = []

  def failing_replace(tmp_path, path):
    temporaries.append(tmp_path)
    assert os.path.exists(tmp_path)
    raise OSError("disk gone")

  monkeypatch.setattr(save_utils.utils, "replace_file", failing_replace)
  for _ in range(2):
    with pytest.raises(OSError, match="disk gone"):
      save_utils.write_ps_count(directory, "MonolithMultiHashTable", 5)
  assert len(set(temporaries)) == 2
  assert save_utils.read_ps_count(directory, "MonolithMultiHashTable") == 2
  assert len(os.listdir(directory)) == 1
