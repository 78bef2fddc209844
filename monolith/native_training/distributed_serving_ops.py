"""Parameter sync between training and serving.

Only the dummy sync client exists here: tables are created without pushing
updates to online serving. `create_parameter_sync_clients` keeps the
original's call (whose clients, built without a config, had no targets and
synced nothing either) and returns dummy clients.
"""

import contextlib
from typing import List

import tensorflow as tf

from monolith.native_training import utils
from monolith.native_training.model_export import export_context
from monolith.native_training.runtime.ops import gen_monolith_ops


def create_dummy_sync_client() -> tf.Tensor:
  """A sync client resource that syncs nothing."""
  return gen_monolith_ops.monolith_dummy_sync_client(
      shared_name="MonolithDummySyncClient")


def create_parameter_sync_clients(ps_num: int) -> List[tf.Tensor]:
  """One sync client per PS task, on its device (one for `ps_num` 0).

  As the original's call without a sync config: the clients sync nothing
  (here they are dummy clients; pushing to online serving is not ported).
  """
  ps_num = utils.check_count(ps_num, "ps_num")
  if ps_num == 0:
    return [create_dummy_sync_client()]
  clients = []
  for i in range(ps_num):
    with (contextlib.nullcontext()
          if export_context.is_exporting_standalone() else tf.device(
              utils.ps_device(i))):
      clients.append(create_dummy_sync_client())
  return clients
