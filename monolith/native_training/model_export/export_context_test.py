"""Tests for export_context."""

import pytest
import tensorflow as tf

from monolith.native_training.model_export import export_context


def test_not_exporting_by_default():
  assert not export_context.is_exporting()
  assert not export_context.is_exporting_standalone()
  assert not export_context.is_exporting_distributed()
  assert export_context.get_current_export_ctx() is None
  assert export_context.EXPORT_MODE == export_context.ExportMode.NONE


def test_standalone_mode():
  with export_context.enter_export_mode(
      export_context.ExportMode.STANDALONE) as ctx:
    assert isinstance(ctx, export_context.ExportContext)
    assert export_context.is_exporting()
    assert export_context.is_exporting_standalone()
    assert not export_context.is_exporting_distributed()
    assert export_context.get_current_export_ctx() is ctx
  assert not export_context.is_exporting()
  assert export_context.get_current_export_ctx() is None


def test_distributed_mode_with_given_context():
  ctx = export_context.ExportContext(with_remote_gpu=True)
  with export_context.enter_export_mode(export_context.ExportMode.DISTRIBUTED,
                                        ctx) as entered:
    assert entered is ctx
    assert export_context.is_exporting_distributed()
    assert export_context.get_current_export_ctx().with_remote_gpu


def test_mode_reset_after_error():
  with pytest.raises(KeyError):
    with export_context.enter_export_mode(
        export_context.ExportMode.STANDALONE):
      raise KeyError("boom")
  assert not export_context.is_exporting()
  assert export_context.get_current_export_ctx() is None


def test_nesting_rejected():
  with export_context.enter_export_mode(export_context.ExportMode.STANDALONE):
    with pytest.raises(RuntimeError, match="nested"):
      with export_context.enter_export_mode(
          export_context.ExportMode.DISTRIBUTED):
        pass
    assert export_context.is_exporting_standalone()
  assert not export_context.is_exporting()


@pytest.mark.parametrize("mode", [export_context.ExportMode.NONE, 1, None])
def test_bad_mode_rejected(mode):
  with pytest.raises(ValueError, match="mode"):
    with export_context.enter_export_mode(mode):
      pass
  assert not export_context.is_exporting()


def test_sub_graphs():
  ctx = export_context.ExportContext()
  assert ctx.sub_graph_num == 0
  g = ctx.sub_graph("ps_0")
  assert isinstance(g, tf.Graph)
  assert ctx.sub_graph("ps_0") is g
  assert ctx.sub_graph("ps_1") is not g
  assert ctx.sub_graph_num == 2
  assert set(ctx.sub_graphs) == {"ps_0", "ps_1"}
  dense = ctx.dense_sub_graph("dense_0")
  assert ctx.dense_sub_graphs == {"dense_0": dense}
  assert ctx.sub_graph_num == 2


def test_signatures():
  ctx = export_context.ExportContext()
  with tf.Graph().as_default() as g:
    ctx.add_signature(g, "predict", {"x": 1}, {"y": 2})
    ctx.add_signature(g, "serving_default", {"a": 3}, {"b": 4})
    ctx.merge_signature(g, "predict", {"x2": 5}, {"y2": 6})
    ctx.merge_signature(g, "new", {"n": 7}, {})
    assert g.get_collection("signature_name") == ["predict", "serving_default"]
  signatures = list(ctx.signatures(g))
  assert [s.name for s in signatures] == ["predict", "serving_default", "new"]
  assert signatures[0] == export_context.SavedModelSignature(
      name="predict", inputs={"x": 1, "x2": 5}, outputs={"y": 2, "y2": 6})
  assert signatures[2].inputs == {"n": 7}
  assert list(ctx.signatures(tf.Graph())) == []


def test_merging_into_a_signature_leaves_others_sharing_its_dicts():
  ctx = export_context.ExportContext()
  inputs, outputs = {"x": 1}, {"y": 2}
  with tf.Graph().as_default() as g:
    ctx.add_signature(g, "a", inputs, outputs)
    ctx.add_signature(g, "b", inputs, outputs)
    ctx.merge_signature(g, "a", {"extra": 3}, {"z": 4})
  a, b = ctx.signatures(g)
  assert a.inputs == {"x": 1, "extra": 3} and a.outputs == {"y": 2, "z": 4}
  assert b.inputs == {"x": 1} and b.outputs == {"y": 2}
  assert inputs == {"x": 1}


def test_is_dry_run_or_exporting():
  with tf.Graph().as_default() as g:
    assert not export_context.is_dry_run_or_exporting()
    with export_context.enter_export_mode(
        export_context.ExportMode.STANDALONE):
      assert export_context.is_dry_run_or_exporting()
    g.dry_run = True
    assert export_context.is_dry_run_or_exporting()
