"""The size-prefixed dump layout: its encoder and its reader.

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

This module writes dumps in every layout (tests, sample data, benchmarks) and
reads them back (DumpReader, which warmup_data_gen's PBReader batches). The
reader checks the framing: sizes within 2 GiB and within what is left of the
input, the input ending on a record boundary, and, given a PayloadCheck such
as message_check's, each payload.
"""

import dataclasses
import os
import struct
from typing import BinaryIO, Callable, Iterable, Iterator, Optional, Type

from google.protobuf import message
from google.protobuf import unknown_fields

from monolith.native_training.model_export import warmup_io

U64 = struct.Struct("<Q")
LAGRANGEX_HEADER_BYTES = 8
KAFKA_DUMP_BYTES = 8
# Protobuf messages cannot exceed 2 GiB; a larger size means a wrong layout.
MAX_RECORD_BYTES = warmup_io.MAX_RECORD_BYTES
# DumpLayout's field names are warmup_data_gen's flags.
LAYOUT_HINT = ("check that --lagrangex_header, --kafka_dump_prefix, "
               "--has_sort_id and --kafka_dump match how the dump was written")
_CHUNK_BYTES = 1 << 20
# A first sort id this long that parses as a record is taken for one.
RECORD_LIKE_SORT_ID_BYTES = 64

# Takes a record's payload; returns why it is invalid, or None when it is fine.
PayloadCheck = Callable[[bytes], Optional[str]]


class DumpFormatError(warmup_io.WarmupDataError):
  """The dump does not follow the expected layout.

  The message names the input, the byte offset and, where it applies, the
  record.
  """


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
  """Java's String.hashCode of a string.

  Args:
    text: the string.

  Returns:
    The hash as an unsigned 32-bit value.
  """
  h = 0
  for (unit,) in struct.iter_unpack(">H", text.encode("utf-16-be")):
    h = (31 * h + unit) & 0xFFFFFFFF
  return h


def lagrangex_header(source_name: str = "") -> bytes:
  """The lagrangex header of records from one source.

  Args:
    source_name: the source whose Java string hash the header carries.

  Returns:
    LAGRANGEX_HEADER_BYTES bytes.
  """
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

  Returns:
    Everything of the record before its size.
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
    parts.append(bytes(KAFKA_DUMP_BYTES))
  return b"".join(parts)


def encode_record(payload: bytes, layout: DumpLayout, **header_args) -> bytes:
  """One whole record.

  Args:
    payload: the serialized record.
    layout: the dump layout.
    **header_args: passed to encode_header.

  Returns:
    The header, the payload size and the payload.
  """
  return encode_header(layout, **header_args) + U64.pack(len(payload)) + payload


def write_dump(stream: BinaryIO, payloads: Iterable[bytes], layout: DumpLayout,
               **header_args) -> int:
  """Writes every payload as a record.

  Args:
    stream: the binary output.
    payloads: the serialized records.
    layout: the dump layout.
    **header_args: passed to encode_header for every record.

  Returns:
    The number of records written.
  """
  count = 0
  for payload in payloads:
    stream.write(encode_record(payload, layout, **header_args))
    count += 1
  return count


def unknown_field_path(record: message.Message) -> Optional[str]:
  """Finds a field that a message, or a message inside it, does not define.

  Parsers keep such fields (written by a newer schema, or bytes that are not
  this message at all) as unknown fields.

  Args:
    record: a parsed message.

  Returns:
    None when no message in `record` has unknown fields; else where the first
    one found is, e.g. "field number 250" or "field number 9 in
    line_id" or "field number 7 in named_feature[2].feature".
  """
  pending = [(record, "")]
  while pending:
    msg, path = pending.pop()
    unknown = unknown_fields.UnknownFieldSet(msg)
    if len(unknown):
      where = f" in {path}" if path else ""
      return f"field number {unknown[0].field_number}{where}"
    for field, value in msg.ListFields():
      if field.message_type is None:
        continue
      name = f"{path}.{field.name}" if path else field.name
      if field.message_type.GetOptions().map_entry:
        if field.message_type.fields_by_name["value"].message_type is None:
          continue
        items = ((f"{name}[{key!r}]", v) for key, v in value.items())
      elif field.is_repeated:
        items = ((f"{name}[{i}]", v) for i, v in enumerate(value))
      else:
        items = ((name, value),)
      pending.extend((v, where) for where, v in reversed(list(items)))
  return None


def message_check(
    message_class: Type[message.Message],
    reject_unknown_fields: bool = False,
    record_check: Optional[Callable[[message.Message], Optional[str]]] = None
) -> PayloadCheck:
  """A PayloadCheck: does the payload parse as `message_class`?

  Args:
    message_class: the generated message class the records should be.
    reject_unknown_fields: also refuse payloads in which any message has
      fields the class's proto does not define. Dumps written by a newer
      schema carry such fields, so this is only for dumps known to match the
      protos exactly; bytes of another message type often parse with unknown
      fields, so it catches more wrong layouts and variants.
    record_check: also checks the parsed record (parsed once for both):
      None when it is valid, else the reason.

  Returns:
    A function of a payload that returns None when it is valid, else the
    reason, starting "is not a valid <full message name>: ".
  """
  prefix = f"is not a valid {message_class.DESCRIPTOR.full_name}: "

  def check(payload: bytes) -> Optional[str]:
    try:
      record = message_class.FromString(payload)
    except message.DecodeError as e:
      return prefix + str(e)
    if reject_unknown_fields and has_unknown_fields(record):
      where = unknown_field_path(message_class.FromString(payload))
      return f"{prefix}it has {where}, which the message does not define"
    return record_check(record) if record_check is not None else None

  return check


def has_unknown_fields(record: message.Message) -> bool:
  """Whether any message in `record` has unknown fields; discards them.

  Unknown fields anywhere add to the size; the C++/upb discard and size are
  far faster than walking the messages in Python, which only locates the
  field of a record that has one.
  """
  size = record.ByteSize()
  record.DiscardUnknownFields()
  return record.ByteSize() != size


def record_like_check(message_class: Type[message.Message]) -> PayloadCheck:
  """A PayloadCheck for bytes that should not be a record (a sort id).

  Accepts (returns None for) bytes that `message_check` accepts and of
  which at least half are fields the message defines: records pass, also
  a newer schema's unless most of it is fields this one lacks; short text
  keys that parse by chance (about 1 in 200 of random 64-byte ones do) are
  almost all unknown fields.
  """
  valid = message_check(message_class)
  prefix = f"is not like a {message_class.DESCRIPTOR.full_name}: "

  def check(payload: bytes) -> Optional[str]:
    reason = valid(payload)
    if reason:
      return reason
    record = message_class.FromString(payload)
    record.DiscardUnknownFields()
    if 2 * record.ByteSize() < len(payload):
      return f"{prefix}most of its bytes are fields it does not define"
    return None

  return check


class DumpReader:
  """Reads the records of a dump, one by one, from a binary stream.

  The stream is read in large chunks (reading field by field would cost more
  than everything else warmup_data_gen does), in constant memory but for the
  record at hand. A clean end of input between records ends the dump; every
  framing error raises DumpFormatError naming the input and the byte offset:
  a partial header, size or payload (the last record cut short, or a short
  header), a size above 2 GiB, a size larger than what is left of the input
  (checked before reading when the stream is seekable, as files are), and,
  with a `check`, a payload the check refuses.

  Iterating over the reader yields the payloads of the remaining records.

  Attributes:
    layout: the layout the reader decodes.
    name: the input's name in error messages.
    records_read: records returned so far.
  """

  def __init__(self,
               stream: BinaryIO,
               layout: DumpLayout,
               name: str = "<stream>",
               check: Optional[PayloadCheck] = None,
               payload_hint: str = LAYOUT_HINT,
               max_record_bytes: int = MAX_RECORD_BYTES,
               sort_id_check: Optional[PayloadCheck] = None,
               first_record_check: Optional[PayloadCheck] = None):
    """Starts reading at the stream's current position.

    Args:
      stream: a binary stream; read() may return fewer bytes than asked.
      layout: the headers that precede every record.
      name: the input's name in error messages.
      check: validates each payload; see message_check.
      payload_hint: what to do about a payload the check refuses, appended to
        the error.
      max_record_bytes: the largest size (of a record or sort id) read; a
        larger one is refused before anything of it is read (on a pipe, a
        wrong layout would otherwise read a size from payload bytes and wait
        for that much input). At most MAX_RECORD_BYTES.
      sort_id_check: with a sort-id layout, the first sort id of
        RECORD_LIKE_SORT_ID_BYTES or more, if this check accepts it, is
        taken for a record (the dump has no sort ids) and refused; best
        `record_like_check`, so that a sort id that parses by chance is not
        refused.
      first_record_check: also validates the first record's payload (for
        mistakes that show in any record: a wrong variant).
    """
    if not 0 < max_record_bytes <= MAX_RECORD_BYTES:
      raise ValueError(f"max_record_bytes must be in [1, {MAX_RECORD_BYTES}], "
                       f"got {max_record_bytes}")
    self._max_record_bytes = max_record_bytes
    self.layout = layout
    self.name = name
    self.records_read = 0
    self._stream = stream
    self._check = check
    self._sort_id_check = sort_id_check
    # Whether a sort id long enough to be a record was checked yet.
    self._long_sort_id_checked = False
    self._first_record_check = first_record_check
    self._payload_hint = payload_hint
    self._input_size = _bytes_left(stream)  # None: unknown (a pipe)
    # read1 returns what a pipe has now; read would wait for the whole chunk
    # (or the writer's end) before the records already there are returned.
    self._read = getattr(stream, "read1", stream.read)
    self._buf = b""  # unread input starts at self._buf[self._pos]
    self._pos = 0
    self._buf_offset = 0  # input offset of self._buf[0]
    self._first_bytes = None  # the input's first 2 bytes, once read

  @property
  def offset(self) -> int:
    """Bytes of input consumed so far."""
    return self._buf_offset + self._pos

  def __iter__(self) -> Iterator[bytes]:
    """Yields the payload of each remaining record.

    Raises:
      DumpFormatError: as read_record.
    """
    while True:
      payload = self.read_record()
      if payload is None:
        return
      yield payload

  def read_record(self) -> Optional[bytes]:
    """Reads the next record.

    Returns:
      The record's payload, or None at a clean end of input.

    Raises:
      DumpFormatError: the input ends inside the record; a size is above
        2 GiB or larger than what is left of the input; the check refuses
        the payload.
    """
    record_offset = self.offset
    sort_id = None
    if not self._ensure(8):
      if self._pos == len(self._buf):
        return None
      raise self._truncated("header or size", 8)
    if self.layout.lagrangex_header:
      self._pos += LAGRANGEX_HEADER_BYTES
    else:
      sort_id_size = None
      if self.layout.kafka_dump_prefix:
        prefix = self._u64("kafka dump prefix")
        if prefix == 0:
          self._u64("kafka dump prefix")
        else:
          sort_id_size = prefix
      if self.layout.has_sort_id:
        sort_id = self._sized("sort id", "sort id size", sort_id_size)
        self._check_first_long_sort_id(sort_id, record_offset)
      if self.layout.kafka_dump:
        self._take(KAFKA_DUMP_BYTES, "kafka dump field")
    payload = self._sized("record payload", "record size")
    # An empty payload parses as any proto. After an empty sort id it is the
    # zero kafka prefix read as the two sizes (--kafka_dump_prefix
    # forgotten): a framing error, refused unchecked too. As the first
    # record of a checked dump, an empty sort id or a zero kafka field read
    # as a record (--has_sort_id or --kafka_dump forgotten).
    first = self.records_read == 0
    if not payload and (sort_id == b"" or
                        (first and self._check is not None)):
      reason = "is empty (0 bytes)" + (" after an empty sort id"
                                       if sort_id == b"" else "")
    else:
      reason = self._check(payload) if self._check is not None else None
      if not reason and first and self._first_record_check is not None:
        reason = self._first_record_check(payload)
    if reason:
      hint = (self._payload_hint if self._check is not None or
              self._first_record_check is not None else self._layout_hint())
      raise DumpFormatError(
          f"{self.name}: record {self.records_read} (starting at byte "
          f"offset {record_offset}) {reason}; {hint}")
    self.records_read += 1
    return payload

  def _check_first_long_sort_id(self, sort_id: bytes,
                                record_offset: int) -> None:
    """Refuses the first sort id of RECORD_LIKE_SORT_ID_BYTES or more if it
    is itself a record (sort_id_check).

    Reading a dump without sort ids as one with them (--has_sort_id, the
    default, where --nohas_sort_id was meant) takes every other record for
    a sort id, and with an even number of records ends cleanly: half the
    records would be dropped without a word. Sort ids are short keys; the
    first long one is checked, not only record 0's (a dump whose first
    record is small would pass).
    """
    if (self._long_sort_id_checked or self._sort_id_check is None or
        len(sort_id) < RECORD_LIKE_SORT_ID_BYTES):
      return
    self._long_sort_id_checked = True
    if self._sort_id_check(sort_id) is None:
      raise DumpFormatError(
          f"{self.name}: the sort id of record {self.records_read} (starting "
          f"at byte offset {record_offset}) is {len(sort_id)} bytes that "
          "parse as a record: the dump has no sort ids (pass "
          f"--nohas_sort_id), or {self._layout_hint()}; --novalidate_records "
          "skips this check")

  def _sized(self, what: str, size_what: str,
             size: Optional[int] = None) -> bytes:
    """Reads `[size: u64][size bytes]`, or only the bytes when `size` is given.

    A given size was just read (the kafka prefix), 8 bytes back.
    """
    size_offset = self.offset - 8
    if size is None:
      size_offset += 8
      size = self._u64(size_what)
    if size > self._max_record_bytes:
      raise DumpFormatError(
          f"{self.name}: {size_what} {size} read at byte offset {size_offset} "
          f"exceeds {self._max_record_bytes} bytes (--max_record_bytes); "
          f"{self._layout_hint()}")
    if self._input_size is not None and size > self._input_size - self.offset:
      raise DumpFormatError(
          f"{self.name}: truncated {what} at byte offset {self.offset}: its "
          f"size, read at byte offset {size_offset}, is {size} bytes, but the "
          f"input ends after {self._input_size - self.offset}; the dump is "
          f"cut short, or {self._layout_hint()}")
    return self._take(size, what)

  def _ensure(self, n: int) -> bool:
    """Makes `n` bytes available at the read position, if the input has them."""
    available = len(self._buf) - self._pos
    if available >= n:
      return True
    chunks = [self._buf[self._pos:]]
    while available < n:
      chunk = self._read(max(n - available, _CHUNK_BYTES))
      if not chunk:
        break
      chunks.append(chunk)
      available += len(chunk)
    self._buf_offset += self._pos
    self._buf = b"".join(chunks)
    self._pos = 0
    if self._first_bytes is None and self._buf_offset == 0:
      self._first_bytes = bytes(self._buf[:2])
    return available >= n

  def _u64(self, what: str) -> int:
    if len(self._buf) - self._pos < 8 and not self._ensure(8):
      raise self._truncated(what, 8)
    value = U64.unpack_from(self._buf, self._pos)[0]
    self._pos += 8
    return value

  def _take(self, n: int, what: str) -> bytes:
    if len(self._buf) - self._pos < n and not self._ensure(n):
      raise self._truncated(what, n)
    start = self._pos
    self._pos += n
    return self._buf[start:self._pos]

  def _layout_hint(self) -> str:
    """LAYOUT_HINT, or that the input looks gzip-compressed where it does
    (a compressed dump fails as a wrong layout would)."""
    if self._first_bytes == warmup_io.GZIP_MAGIC:
      return ("the input starts as gzip-compressed data does: decompress it "
              "first (zcat it into the tool: an empty --file_name reads "
              "stdin), or " + LAYOUT_HINT)
    return LAYOUT_HINT

  def _truncated(self, what: str, wanted: int) -> DumpFormatError:
    return DumpFormatError(
        f"{self.name}: truncated {what} at byte offset {self.offset}: input "
        f"ends after {len(self._buf) - self._pos} of {wanted} bytes; the dump "
        f"is cut short, or {self._layout_hint()}")


def _bytes_left(stream: BinaryIO) -> Optional[int]:
  """Bytes from the stream's position to its end; None when not seekable."""
  try:
    if not stream.seekable():
      return None
    start = stream.tell()
    stream.seek(0, os.SEEK_END)
    end = stream.tell()
    stream.seek(start)
    return end - start
  except Exception:  # pylint: disable=broad-except
    # The size only sharpens errors; without it the reader reads and sees.
    return None
