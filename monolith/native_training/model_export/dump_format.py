"""The size-prefixed dump layout that warmup_data_gen's PBReader reads.

A dump is a sequence of records; each is a header followed by
`[size: u64 little-endian][payload: size bytes]`. The header depends on how
the dump was produced:

* lagrangex header: exactly 8 bytes (a zero byte, the low 3 bytes of the Java
  `String.hashCode` of the source name, four zero bytes); nothing else.
* otherwise, each optional and in this order:
  - kafka_dump_prefix: a u64; if it is 0 another u64 follows (ignored),
    otherwise it is the size of the sort id that follows (no second size);
  - sort id: `[size: u64][sort id: size bytes]` (the size is omitted when the
    kafka prefix carried it);
  - kafka_dump: 8 bytes, skipped.

This module writes dumps in every layout (tests, sample data, benchmarks);
`warmup_data_gen.PBReader` reads them.
"""

import dataclasses
import struct
from typing import BinaryIO, Iterable

U64 = struct.Struct("<Q")


@dataclasses.dataclass(frozen=True)
class DumpLayout:
  """Which headers precede every record of a dump.

  The field names are those of PBReader's and gen_prediction_log_from_file's
  arguments, so `**dataclasses.asdict(layout)` passes a layout to them.
  """
  lagrangex_header: bool = False
  kafka_dump_prefix: bool = False
  has_sort_id: bool = False
  kafka_dump: bool = False


def java_string_hash(text: str) -> int:
  """Java's String.hashCode of `text`, as an unsigned 32-bit value."""
  h = 0
  for (unit,) in struct.iter_unpack(">H", text.encode("utf-16-be")):
    h = (31 * h + unit) & 0xFFFFFFFF
  return h


def lagrangex_header(source_name: str = "") -> bytes:
  """The 8-byte lagrangex header for records from `source_name`."""
  low3 = (java_string_hash(source_name) & 0xFFFFFF).to_bytes(3, "little")
  return b"\x00" + low3 + b"\x00" * 4


def encode_header(layout: DumpLayout,
                  sort_id: bytes = b"",
                  sort_id_in_prefix: bool = False,
                  source_name: str = "") -> bytes:
  """The header bytes of one record.

  Args:
    layout: the dump layout.
    sort_id: the sort id, written when `layout.has_sort_id`.
    sort_id_in_prefix: with kafka_dump_prefix and a non-empty sort id, write
      the prefix form that carries the sort id size (else the `0, 0` form).
    source_name: the source whose hash goes into a lagrangex header.
  """
  if layout.lagrangex_header:
    return lagrangex_header(source_name)
  parts = []
  size_in_prefix = (layout.kafka_dump_prefix and layout.has_sort_id and
                    sort_id_in_prefix and len(sort_id) > 0)
  if layout.kafka_dump_prefix:
    parts.append(U64.pack(len(sort_id)) if size_in_prefix else U64.pack(0) * 2)
  if layout.has_sort_id:
    if not size_in_prefix:
      parts.append(U64.pack(len(sort_id)))
    parts.append(sort_id)
  if layout.kafka_dump:
    parts.append(U64.pack(0))
  return b"".join(parts)


def encode_record(payload: bytes, layout: DumpLayout, **header_args) -> bytes:
  """Header plus size-prefixed payload; `header_args` go to encode_header."""
  return encode_header(layout, **header_args) + U64.pack(len(payload)) + payload


def write_dump(stream: BinaryIO, payloads: Iterable[bytes], layout: DumpLayout,
               **header_args) -> int:
  """Writes every payload as a record to `stream`; returns the record count."""
  count = 0
  for payload in payloads:
    stream.write(encode_record(payload, layout, **header_args))
    count += 1
  return count
