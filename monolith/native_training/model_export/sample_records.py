"""Small deterministic Instance / Example / ExampleBatch records.

Real protos with v2 fids (slot << 48), dense values, labels and a line id, for
the committed sample dump, the tests and the benchmarks. For configurable
random traffic use data_gen_utils.
"""

import random
from typing import Iterator

from idl.matrix.proto import example_pb2
from idl.matrix.proto import proto_parser_pb2

_SLOTS = (1, 2, 3, 7)


def _fids(rng: random.Random, slot: int, n: int) -> list:
  return [(slot << 48) | rng.getrandbits(48) for _ in range(n)]


def make_example(rng: random.Random) -> example_pb2.Example:
  example = example_pb2.Example()
  for slot in _SLOTS:
    feature = example.named_feature.add(name=f"fc_slot_{slot}", id=slot)
    feature.feature.fid_v2_list.value.extend(_fids(rng, slot, rng.randint(1, 4)))
  dense = example.named_feature.add(name="fc_dense")
  dense.feature.float_list.value.extend(rng.uniform(-1, 1) for _ in range(4))
  example.line_id.uid = rng.getrandbits(64)
  example.line_id.req_time = 1_700_000_000 + rng.randint(0, 86_400)
  example.line_id.item_id = rng.getrandbits(64)
  example.label.append(float(rng.random() < 0.3))
  return example


def make_instance(rng: random.Random) -> proto_parser_pb2.Instance:
  instance = proto_parser_pb2.Instance()
  for slot in _SLOTS:
    instance.fid.extend(_fids(rng, slot, rng.randint(1, 4)))
  instance.line_id.uid = rng.getrandbits(64)
  instance.line_id.req_time = 1_700_000_000 + rng.randint(0, 86_400)
  instance.label.append(float(rng.random() < 0.3))
  dense = instance.feature.add(name="fc_dense")
  dense.float_value.extend(rng.uniform(-1, 1) for _ in range(4))
  return instance


def make_example_batch(rng: random.Random,
                       batch_size: int = 4) -> example_pb2.ExampleBatch:
  batch = example_pb2.ExampleBatch(batch_size=batch_size)
  for slot in _SLOTS:
    column = batch.named_feature_list.add(name=f"fc_slot_{slot}", id=slot)
    for _ in range(batch_size):
      column.feature.add().fid_v2_list.value.extend(
          _fids(rng, slot, rng.randint(1, 4)))
  return batch


_MAKERS = {
    "instance": make_instance,
    "example": make_example,
    "example_batch": make_example_batch,
}


def serialized_records(variant_type: str, count: int,
                       seed: int = 0) -> Iterator[bytes]:
  """`count` serialized records of `variant_type`, the same for a given seed."""
  make = _MAKERS[variant_type]
  rng = random.Random(seed)
  for _ in range(count):
    yield make(rng).SerializeToString()
