"""Per-graph metadata objects, kept in the graph itself.

`get_meta(key, factory)` returns the object stored under `key` for the
default graph, creating it with `factory()` on first use. The objects live in
a dict in the graph collection "monolith_graph_meta", so they go away with the
graph and every graph has its own.
"""

from typing import Any, Callable

import tensorflow as tf

_MONOLITH_GRAPH_META = "monolith_graph_meta"


def get_meta(
    key: str,
    # The original's argument name, kept for keyword callers.
    MetaFactory: Callable[[], Any],  # pylint: disable=invalid-name
) -> Any:
  """Returns the default graph's metadata for `key`, created on first use.

  Args:
    key: the name of the metadata.
    MetaFactory: called with no arguments to create the metadata the first
      time `key` is asked for in this graph.
  """
  metas = tf.compat.v1.get_default_graph().get_collection_ref(
      _MONOLITH_GRAPH_META)
  if not metas:
    metas.append({})
  meta_dict = metas[0]
  if key not in meta_dict:
    meta_dict[key] = MetaFactory()
  return meta_dict[key]
