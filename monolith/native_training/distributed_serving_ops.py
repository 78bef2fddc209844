"""Parameter sync between training and serving.

Only the dummy sync client exists here: tables are created without pushing
updates to online serving.
"""

import tensorflow as tf

from monolith.native_training.runtime.ops import gen_monolith_ops


def create_dummy_sync_client() -> tf.Tensor:
  """A sync client resource that syncs nothing."""
  return gen_monolith_ops.monolith_dummy_sync_client(
      shared_name="MonolithDummySyncClient")
