"""Hash filters of embedding tables.

Only the dummy filter exists here: tables are created without occurrence
filtering (every id is admitted on its first update).
"""

import tensorflow as tf

from monolith.native_training.runtime.ops import gen_monolith_ops


def create_dummy_hash_filter(name_suffix: str = "0") -> tf.Tensor:
  """A filter resource that admits every id."""
  return gen_monolith_ops.monolith_dummy_hash_filter(
      shared_name="DummyHashFilter" + name_suffix)
