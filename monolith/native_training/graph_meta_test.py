"""Tests for graph_meta."""

import dataclasses
import gc
import logging
import threading
import time
import weakref

import tensorflow as tf

from monolith.native_training import graph_meta


@dataclasses.dataclass
class _Meta:
  names: set = dataclasses.field(default_factory=set)


def test_same_object_within_a_graph():
  with tf.Graph().as_default():
    meta = graph_meta.get_meta("names", _Meta)
    meta.names.add("a")
    assert graph_meta.get_meta("names", _Meta) is meta
    assert graph_meta.get_meta("names", _Meta).names == {"a"}


def test_factory_called_once_per_key():
  calls = []

  def factory():
    calls.append(1)
    return _Meta()

  with tf.Graph().as_default():
    first = graph_meta.get_meta("k1", factory)
    graph_meta.get_meta("k1", factory)
    second = graph_meta.get_meta("k2", factory)
  assert len(calls) == 2
  assert first is not second


def test_each_graph_has_its_own_meta():
  with tf.Graph().as_default():
    graph_meta.get_meta("names", _Meta).names.add("a")
  with tf.Graph().as_default():
    assert graph_meta.get_meta("names", _Meta).names == set()


def test_meta_goes_away_with_its_graph():
  graph = tf.Graph()
  with graph.as_default():
    meta = weakref.ref(graph_meta.get_meta("names", _Meta))
  assert meta() is not None
  del graph
  gc.collect()
  assert meta() is None


def test_graph_goes_away_with_metadata_holding_its_tensors():
  """Metadata may hold the graph's own tensors (the export's asset paths
  do): the graph must still be freed once its last user lets go."""
  graph = tf.Graph()
  with graph.as_default():
    graph_meta.get_meta("tensors", dict)["one"] = tf.constant(1)
  graph_ref = weakref.ref(graph)
  del graph
  gc.collect()
  assert graph_ref() is None


def test_saving_a_meta_graph_logs_no_warning(caplog, tmp_path):
  """The original kept the metadata in a graph collection, which every
  checkpoint save's export_meta_graph failed to serialize, with a warning."""
  with tf.Graph().as_default():
    graph_meta.get_meta("names", _Meta).names.add("a")
    tf.compat.v1.get_variable("v", initializer=1.0)
    with caplog.at_level(logging.WARNING):
      tf.compat.v1.train.export_meta_graph(str(tmp_path / "model.meta"))
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [
      r.getMessage() for r in caplog.records]


def test_threads_share_one_object_per_key():
  made = []

  def factory():
    made.append(1)
    time.sleep(0.01)  # A window for another thread to make its own.
    return _Meta()

  graph = tf.Graph()
  found = []

  def ask():
    with graph.as_default():
      found.append(graph_meta.get_meta("names", factory))

  threads = [threading.Thread(target=ask) for _ in range(8)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert len(made) == 1
  # Every thread got it (one that raised would be missing here).
  assert len(found) == 8
  assert all(meta is found[0] for meta in found)


def test_a_function_graph_shares_its_outer_graphs_meta():
  with tf.Graph().as_default():
    outer = graph_meta.get_meta("names", _Meta)
    inner = []

    @tf.function
    def body():
      inner.append(graph_meta.get_meta("names", _Meta))
      return tf.constant(1)

    body.get_concrete_function()
  assert len(inner) == 1 and inner[0] is outer
