"""Graph-collection helpers the training code uses to publish its settings.

Training registers values (sparse feature names, the feature list, ...) in
the default graph's collections; tools such as
`model_export.data_gen_utils.ParserArgs` read them back as defaults.
"""

from typing import Any, List, Optional, Union

from absl import logging
import tensorflow as tf


def add_to_collections(names: Union[str, List[str]], value: Any) -> None:
  """Adds `value` to the collections `names`; empty values are skipped."""
  if isinstance(value, (bool, int, float, str)) or value:
    tf.compat.v1.add_to_collections(names, value)
  else:
    logging.info("value is %r, skip", value)


def get_collection(name: str) -> Optional[List[Any]]:
  """The collection `name` of the default graph, or None when it is empty."""
  return tf.compat.v1.get_collection(name) or None
