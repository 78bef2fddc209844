"""Tests for multi_type_hash_table: the abstract base and its queue hooks."""

import pytest
import tensorflow as tf

from monolith.native_training import multi_type_hash_table


class _DictTable(multi_type_hash_table.BaseMultiTypeHashTable):
  """A minimal in-graph table: per slot a constant embedding per id."""

  def __init__(self, dims, tables=None):
    self._dims = dims
    if tables is not None:
      self._tables = tables

  def lookup(self, slot_to_id):
    return {
        slot: tf.ones([tf.size(ids), self._dims[slot]])
        for slot, ids in slot_to_id.items()
    }

  def assign(self, slot_to_id_and_value):
    return self

  def assign_add(self, slot_to_id_and_value):
    return self

  def reinitialize(self, slot, ids):
    return self, tf.zeros_like(ids, dtype=tf.int32)

  def apply_gradients(self, slot_to_id_and_grad, *args):
    return self

  def as_op(self, name=None):
    return tf.no_op(name=name)

  def get_table_dim_sizes(self):
    return [self._dims[slot] for slot in sorted(self._dims)]


def test_base_is_abstract():
  with pytest.raises(TypeError):
    multi_type_hash_table.BaseMultiTypeHashTable()

  class Partial(multi_type_hash_table.BaseMultiTypeHashTable):

    def lookup(self, slot_to_id):
      return {}

  with pytest.raises(TypeError, match="get_table_dim_sizes"):
    Partial()


def test_a_fresh_tables_queue_hooks_are_its_own():
  table = _DictTable({"a": 2, "b": 3})
  other = _DictTable({"a": 2})
  assert table.get_queue_hooks() == []
  table.get_queue_hooks().append("not added")
  assert table.get_queue_hooks() == []
  table.add_queue_hook("h")
  assert table.get_queue_hooks() == ["h"]
  assert other.get_queue_hooks() == []


def test_queue_hooks_include_wrapped_tables():
  inner1 = _DictTable({"a": 1})
  inner2 = _DictTable({"b": 1})
  inner1.add_queue_hook("h1")
  inner2.add_queue_hook("h2")
  outer = _DictTable({"a": 1, "b": 1}, tables=[inner1, inner2])
  outer.add_queue_hook("h0")
  assert outer.get_queue_hooks() == ["h0", "h1", "h2"]

  single = _DictTable({"a": 1})
  single._table = outer
  assert single.get_queue_hooks() == ["h0", "h1", "h2"]
  # Asking does not change the table's own hooks.
  assert outer.get_queue_hooks() == ["h0", "h1", "h2"]
