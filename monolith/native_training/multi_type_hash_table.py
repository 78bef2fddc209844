"""The interface of hash tables that hold several kinds of embeddings.

A multi-type hash table maps each slot (a kind of id, e.g. a feature) to
embeddings of that slot's own dim and optimizer. Its methods take dicts keyed
by slot. Tables are immutable graph values: every update returns a new table
object whose ops depend on the update, and `as_op()` gives an op to run it.
"""

from __future__ import annotations

import abc
import copy
import itertools
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf


class BaseMultiTypeHashTable(abc.ABC):
  """A hash table keyed by slot; see the module docstring.

  Tables built from other tables keep them in `_table` or `_tables`, and
  `get_queue_hooks()` also gathers the queue hooks of those.
  """

  # Set by tables that wrap one or several other tables.
  _table: BaseMultiTypeHashTable
  _tables: List[BaseMultiTypeHashTable]
  # Hooks that run the queues of a pipelined (prefetching) graph.
  _local_queue_hooks: List[Any]

  @abc.abstractmethod
  def lookup(self, slot_to_id: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Returns, per slot, the embeddings of the slot's ids.

    Args:
      slot_to_id: per slot, 1-D int64 ids.

    Returns:
      Per slot of `slot_to_id`, float embeddings of shape [len(ids), dim].
    """

  @abc.abstractmethod
  def assign(
      self, slot_to_id_and_value: Dict[str, Tuple[tf.Tensor, tf.Tensor]]
  ) -> BaseMultiTypeHashTable:
    """Sets the embeddings of the given ids.

    Args:
      slot_to_id_and_value: per slot, 1-D int64 ids and values of shape
        [len(ids), dim].

    Returns:
      The updated table.
    """

  @abc.abstractmethod
  def assign_add(
      self, slot_to_id_and_value: Dict[str, Tuple[tf.Tensor, tf.Tensor]]
  ) -> BaseMultiTypeHashTable:
    """Adds values to the embeddings of the given ids.

    Args:
      slot_to_id_and_value: per slot, 1-D int64 ids and values of shape
        [len(ids), dim].

    Returns:
      The updated table.
    """

  @abc.abstractmethod
  def reinitialize(self, slot: str,
                   ids: tf.Tensor) -> Tuple[BaseMultiTypeHashTable, tf.Tensor]:
    """Resets the ids of `slot` to their initial values.

    Args:
      slot: the slot.
      ids: 1-D int64 ids.

    Returns:
      The updated table and a per-id status tensor.
    """

  @abc.abstractmethod
  def apply_gradients(self, slot_to_id_and_grad: Dict[str, Tuple[tf.Tensor,
                                                                 tf.Tensor]],
                      *args) -> BaseMultiTypeHashTable:
    """Applies gradients with the slots' optimizers.

    Args:
      slot_to_id_and_grad: per slot, 1-D int64 ids and gradients of shape
        [len(ids), dim].
      *args: further arguments of the implementation (e.g. the global step).

    Returns:
      The updated table.
    """

  @abc.abstractmethod
  def as_op(self, name: Optional[str] = None) -> tf.Operation:
    """An op that runs the updates this table object depends on.

    Args:
      name: the name of the op, where the implementation creates one.
    """

  @abc.abstractmethod
  def get_table_dim_sizes(self) -> List[int]:
    """The embedding dims of the underlying tables."""

  def add_queue_hook(self, hook: Any) -> None:
    """Registers a hook that runs a queue of a pipelined graph.

    Args:
      hook: the hook (a `tf.compat.v1.train.SessionRunHook`).
    """
    if not getattr(self, "_local_queue_hooks", None):
      self._local_queue_hooks = []
    self._local_queue_hooks.append(hook)

  def get_queue_hooks(self) -> List[Any]:
    """This table's queue hooks, then those of the tables it wraps.

    Returns:
      A new list: the hooks added to this table, then recursively those of
      `_table` and of each of `_tables`.
    """
    hooks = copy.copy(getattr(self, "_local_queue_hooks", []))
    if getattr(self, "_table", None):
      hooks.extend(self._table.get_queue_hooks())
    if getattr(self, "_tables", None):
      hooks.extend(
          itertools.chain.from_iterable(
              t.get_queue_hooks() for t in self._tables))
    return hooks
