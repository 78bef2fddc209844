"""Small deterministic Instance / Example / ExampleBatch records.

Real protos with fids (v2, slot << 48; v1, slot << 54, in Instance.fid),
dense values, labels and a line id, for
the committed sample dump, the tests and the benchmarks; and, with
with_unknown_field, records as a newer schema writes them. For configurable
random traffic use data_gen_utils.
"""

import random
from typing import Iterator, Optional

from idl.matrix.proto import example_pb2
from idl.matrix.proto import proto_parser_pb2

_SLOTS = (1, 2, 3, 7)


def _fids(rng: random.Random, slot: int, n: int, hash_bits: int = 48) -> list:
  return [(slot << hash_bits) | rng.getrandbits(hash_bits) for _ in range(n)]


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
    # Instance.fid carries v1 fids.
    instance.fid.extend(_fids(rng, slot, rng.randint(1, 4), hash_bits=54))
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
  """Serialized sample records.

  Args:
    variant_type: 'instance', 'example' or 'example_batch'.
    count: how many.
    seed: the same seed gives the same records.

  Yields:
    Serialized records of the variant's proto.
  """
  make = _MAKERS[variant_type]
  rng = random.Random(seed)
  for _ in range(count):
    yield make(rng).SerializeToString()


# No open-source proto defines this field number (the highest allowed is
# 2**29 - 1; 19000-19999 are reserved).
UNKNOWN_FIELD_NUMBER = 500_000_001


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte, value = value & 0x7F, value >> 7
    if not value:
      out.append(byte)
      return bytes(out)
    out.append(byte | 0x80)


def with_unknown_field(payload: bytes,
                       field_number: int = UNKNOWN_FIELD_NUMBER,
                       value: int = 7,
                       inside: Optional[int] = None) -> bytes:
  """A serialized message with one more field, as a newer schema writes it.

  The field's wire bytes (a varint) are appended to `payload`; parsers keep
  the field as an unknown field when the message does not define its number.

  Args:
    payload: a serialized message.
    field_number: the added field's number.
    value: the added field's varint value.
    inside: the number of a singular message field of `payload`'s message:
      the added field then goes into that message (appended as another
      occurrence of it, which parsers merge into the first).

  Returns:
    The serialized message with the field.
  """
  field = _varint(field_number << 3) + _varint(value)
  if inside is not None:
    field = _varint(inside << 3 | 2) + _varint(len(field)) + field
  return payload + field


def line_id_field_number(variant_type: str) -> Optional[int]:
  """The field number of the variant's line_id message.

  Args:
    variant_type: 'instance', 'example' or 'example_batch'.

  Returns:
    The number, or None for example_batch, which has no line_id.
  """
  message_class = {
      "instance": proto_parser_pb2.Instance,
      "example": example_pb2.Example,
  }.get(variant_type)
  if message_class is None:
    return None
  return message_class.DESCRIPTOR.fields_by_name["line_id"].number
