"""Tests for save_utils.SaveHelper."""

import os

import pytest
import tensorflow as tf

from monolith.native_training import save_utils


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
