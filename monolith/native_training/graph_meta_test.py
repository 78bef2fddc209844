"""Tests for graph_meta."""

import dataclasses

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
  with tf.Graph().as_default() as g:
    assert graph_meta.get_meta("names", _Meta).names == set()
    # Kept in the graph's own collection.
    assert len(g.get_collection("monolith_graph_meta")) == 1
