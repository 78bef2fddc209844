"""Per-graph metadata objects, kept beside the graph.

`get_meta(key, factory)` returns the object stored under `key` for the
default graph, creating it with `factory()` on first use. Every graph has
its own objects (a function's graph its outer graph's), and they go away
with the graph. The original kept them in
a graph collection, which every `export_meta_graph` (each checkpoint save)
then failed to serialize, logging a warning; here they live in an
attribute of the graph object instead, which no export reads. (A table
keyed weakly by the graph kept alive every graph whose metadata held one of
its tensors: the value's reference to the graph was a strong one from a
module global, where the attribute's is a cycle the collector frees.)
"""

import threading
from typing import Any, Callable

import tensorflow as tf
from tensorflow.python.framework import func_graph

# Reentrant: a factory may itself ask for another key's metadata.
_lock = threading.RLock()
_ATTRIBUTE = "_monolith_graph_meta"


def get_meta(
    key: str,
    # The original's argument name, kept for keyword callers.
    MetaFactory: Callable[[], Any],  # pylint: disable=invalid-name
) -> Any:
  """Returns the default graph's metadata for `key`, created on first use.

  Thread-safe: threads asking for one key of one graph get one object.

  Args:
    key: the name of the metadata.
    MetaFactory: called with no arguments to create the metadata the first
      time `key` is asked for in this graph.
  """
  graph = tf.compat.v1.get_default_graph()
  # A function's graph (tf.function, cond/while branches) shares its outer
  # graph's metadata, as it shared the collection the original kept it in.
  while isinstance(graph, func_graph.FuncGraph):
    graph = graph.outer_graph
  with _lock:
    meta_dict = getattr(graph, _ATTRIBUTE, None)
    if meta_dict is None:
      meta_dict = {}
      setattr(graph, _ATTRIBUTE, meta_dict)
    if key not in meta_dict:
      meta_dict[key] = MetaFactory()
    return meta_dict[key]
