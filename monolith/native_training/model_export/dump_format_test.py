"""Tests for dump_format's reader: every layout, framing errors at every byte,
short reads, sizes checked before reading, and payload checks."""

import gzip
import io
import itertools
import os
import struct
import threading

import pytest
from tensorflow_serving.apis import predict_pb2

from idl.matrix.proto import example_pb2
from monolith.native_training.model_export import dump_format
from monolith.native_training.model_export import sample_records

LAYOUTS = [dump_format.DumpLayout(lagrangex_header=True)] + [
    dump_format.DumpLayout(kafka_dump_prefix=p, has_sort_id=s, kafka_dump=k)
    for p, s, k in itertools.product((False, True), repeat=3)
]
FULL = dump_format.DumpLayout(kafka_dump_prefix=True, has_sort_id=True,
                              kafka_dump=True)
UNKNOWN = sample_records.UNKNOWN_FIELD_NUMBER


def _layout_id(layout):
  return "+".join(k for k, v in vars(layout).items() if v) or "bare"


class _Pipe(io.RawIOBase):
  """An unseekable stream that returns at most `most` bytes a read, and
  remembers the largest read asked for."""

  def __init__(self, data, most=3):
    super().__init__()
    self._data = io.BytesIO(data)
    self._most = most
    self.largest_read = 0

  def readable(self):
    return True

  def read(self, n=-1):
    self.largest_read = max(self.largest_read, n)
    return self._data.read(min(n, self._most))


class _File(io.BytesIO):
  """A seekable stream that remembers the largest read asked for."""
  largest_read = 0

  def read(self, n=-1):
    self.largest_read = max(self.largest_read, n)
    return super().read(n)


def _dump(payloads, layout, sort_id_in_prefix=False):
  return b"".join(
      dump_format.encode_record(p, layout, sort_id=b"sid-%d" % i,
                                sort_id_in_prefix=sort_id_in_prefix,
                                source_name="topic")
      for i, p in enumerate(payloads))


@pytest.mark.parametrize("sort_id_in_prefix", (False, True))
@pytest.mark.parametrize("layout", LAYOUTS, ids=_layout_id)
@pytest.mark.parametrize("stream", (_File, _Pipe))
def test_reader_round_trips_every_layout(layout, sort_id_in_prefix, stream):
  payloads = list(sample_records.serialized_records("example", 5)) + [b""]
  data = _dump(payloads, layout, sort_id_in_prefix)
  reader = dump_format.DumpReader(stream(data), layout, name="d")
  assert list(reader) == payloads
  assert reader.read_record() is None  # stays at the end
  assert (reader.offset, reader.records_read) == (len(data), len(payloads))


def _golden(layout, payload, sort_id):
  """One record of `layout` built from the original reader's description
  (agent_service/tfs_client.py's read_header), not from dump_format."""
  q = lambda n: struct.pack("<Q", n)
  if layout.lagrangex_header:
    header = b"\x00\x12\x34\x56" + bytes(4)
  else:
    header = b""
    if layout.kafka_dump_prefix:
      header += q(0) + q(0)  # 0: the second u64 is ignored
    if layout.has_sort_id:
      header += q(len(sort_id)) + sort_id
    if layout.kafka_dump:
      header += b"\xaa" * 8  # 8 bytes skipped, whatever they hold
  return header + q(len(payload)) + payload


@pytest.mark.parametrize("layout", LAYOUTS, ids=_layout_id)
def test_reader_reads_the_originals_bytes(layout):
  payloads = [b"\x08\x01", b"\x08\x02\x10\x03"]
  data = b"".join(_golden(layout, p, b"sid%d" % i)
                  for i, p in enumerate(payloads))
  # The prefix form that carries the sort id's size (no second size).
  if layout.kafka_dump_prefix and layout.has_sort_id:
    carried = struct.pack("<Q", 4) + b"sidX"
    carried += b"\xaa" * 8 if layout.kafka_dump else b""
    data += carried + struct.pack("<Q", 1) + b"\x08"
    payloads.append(b"\x08")
  assert list(dump_format.DumpReader(_File(data), layout, name="d")) == payloads


def test_records_on_a_pipe_are_returned_before_the_writer_ends():
  # A live feed (a consumer piped in) keeps its pipe open: the records
  # already written are returned without waiting for more input.
  payloads = [b"first", b"second"]
  read_fd, write_fd = os.pipe()
  with os.fdopen(read_fd, "rb") as stream, os.fdopen(write_fd, "wb") as feed:
    feed.write(_dump(payloads, FULL))
    feed.flush()
    reader = dump_format.DumpReader(stream, FULL, name="pipe")
    got = []
    thread = threading.Thread(
        target=lambda: got.extend(reader.read_record() for _ in payloads),
        daemon=True)
    thread.start()
    thread.join(60)
    finished = not thread.is_alive()
    feed.close()  # ends the read, should it still wait
    thread.join(60)
    assert finished, "the reader waited for more input than the records"
    assert got == payloads
    assert reader.read_record() is None


def test_reader_starts_at_the_stream_position():
  data = _dump([b"abc", b"de"], FULL)
  stream = io.BytesIO(b"junk" + data)
  stream.seek(4)
  assert list(dump_format.DumpReader(stream, FULL)) == [b"abc", b"de"]


@pytest.mark.parametrize("stream", (_File, _Pipe))
def test_every_cut_inside_a_record_is_an_error_with_its_offset(stream):
  records = [dump_format.encode_record(b"payload-%d" % i, FULL,
                                       sort_id=b"sort-%d" % i)
             for i in range(2)]
  data = b"".join(records)
  for cut in range(1, len(data)):
    reader = dump_format.DumpReader(stream(data[:cut]), FULL, name="dump.bin")
    if cut == len(records[0]):  # a record boundary: a clean end
      assert list(reader) == [b"payload-0"]
      continue
    with pytest.raises(dump_format.DumpFormatError) as e:
      list(reader)
    message = str(e.value)
    assert message.startswith("dump.bin: truncated "), message
    offset = int(message.split("at byte offset ")[1].split(":")[0])
    assert offset <= cut
    assert "the dump is cut short, or check that --lagrangex_header" in message


def test_a_short_last_header_and_trailing_bytes_are_errors():
  data = _dump([b"abc"], dump_format.DumpLayout())
  for tail, what, offset in (
      (b"\x01\x02\x03", "header or size", len(data)),
      (dump_format.U64.pack(5) + b"ab", "record payload", len(data) + 8)):
    with pytest.raises(dump_format.DumpFormatError,
                       match=f"d: truncated {what} at byte offset {offset}"):
      list(dump_format.DumpReader(io.BytesIO(data + tail),
                                  dump_format.DumpLayout(), name="d"))


@pytest.mark.parametrize("stream", (_File, _Pipe))
def test_a_gzip_compressed_dump_is_named_so(stream):
  data = _dump([b"abc" * 100] * 20, dump_format.DumpLayout())
  with pytest.raises(dump_format.DumpFormatError,
                     match="d: .*the input starts as gzip-compressed data "
                     "does: decompress it first"):
    list(dump_format.DumpReader(stream(gzip.compress(data)),
                                dump_format.DumpLayout(), name="d"))
  # An uncompressed dump's errors do not say so.
  with pytest.raises(dump_format.DumpFormatError) as e:
    list(dump_format.DumpReader(stream(data + b"\x01"),
                                dump_format.DumpLayout(), name="d"))
  assert "gzip" not in str(e.value)


def test_size_beyond_the_input_is_refused_before_reading():
  layout = dump_format.DumpLayout(has_sort_id=True)
  good = dump_format.encode_record(b"x" * 10, layout, sort_id=b"ab")
  # The second record claims 1 GiB: with a file, nothing that large is read.
  bad = dump_format.encode_header(layout, sort_id=b"cd") + (
      dump_format.U64.pack(1 << 30) + b"y" * 10)
  stream = _File(good + bad)
  with pytest.raises(dump_format.DumpFormatError) as e:
    list(dump_format.DumpReader(stream, layout, name="f"))
  size_offset = len(good) + 8 + 2
  assert str(e.value).startswith(
      f"f: truncated record payload at byte offset {size_offset + 8}: its "
      f"size, read at byte offset {size_offset}, is {1 << 30} bytes, but the "
      f"input ends after 10;")
  assert stream.largest_read <= 1 << 20
  # A sort id size carried by the kafka prefix is checked the same way.
  prefix = dump_format.DumpLayout(kafka_dump_prefix=True, has_sort_id=True)
  data = dump_format.U64.pack(100) + b"short"
  with pytest.raises(dump_format.DumpFormatError,
                     match=r"truncated sort id at byte offset 8: its size, "
                     r"read at byte offset 0, is 100 bytes, but the input "
                     r"ends after 5"):
    list(dump_format.DumpReader(io.BytesIO(data), prefix))


@pytest.mark.parametrize("stream", (_File, _Pipe))
def test_sizes_above_2_gib_name_the_size_and_its_offset(stream):
  layout = dump_format.DumpLayout(has_sort_id=True)
  data = dump_format.U64.pack(3) + b"abc" + dump_format.U64.pack(1 << 40)
  with pytest.raises(dump_format.DumpFormatError,
                     match=r"d: record size 1099511627776 read at byte "
                     r"offset 11 exceeds 2147483647 bytes \(--max_record_bytes\); "
                     r"check that"):
    list(dump_format.DumpReader(stream(data), layout, name="d"))
  # A lower limit refuses a size before it is read, even on a pipe that
  # has the bytes.
  data = dump_format.U64.pack(3) + b"abc" + dump_format.U64.pack(100) + bytes(
      100)
  pipe = _Pipe(data)
  with pytest.raises(dump_format.DumpFormatError,
                     match=r"record size 100 read at byte offset 11 exceeds "
                     r"99 bytes"):
    list(dump_format.DumpReader(pipe, layout, name="d", max_record_bytes=99))
  with pytest.raises(ValueError, match="max_record_bytes must be in"):
    dump_format.DumpReader(_Pipe(b""), layout, max_record_bytes=0)


def test_message_check_allows_unknown_fields_unless_told_not_to():
  payload = next(sample_records.serialized_records("example", 1))
  top = sample_records.with_unknown_field(payload)
  nested = sample_records.with_unknown_field(payload, inside=100)
  lenient = dump_format.message_check(example_pb2.Example)
  strict = dump_format.message_check(example_pb2.Example,
                                     reject_unknown_fields=True)
  for record in (payload, top, nested):
    assert lenient(record) is None
  assert strict(payload) is None
  prefix = "is not a valid monolith.io.proto.Example: it has field number "
  assert strict(top) == f"{prefix}{UNKNOWN}, which the message does not define"
  assert strict(nested) == (f"{prefix}{UNKNOWN} in line_id, which the message "
                            "does not define")
  for check in (lenient, strict):
    assert check(b"\xff\xff").startswith(
        "is not a valid monolith.io.proto.Example: Error parsing message")


def test_unknown_field_path_walks_repeated_and_map_fields():
  example = example_pb2.Example.FromString(
      next(sample_records.serialized_records("example", 1)))
  assert dump_format.unknown_field_path(example) is None
  example.named_feature[1].feature.MergeFromString(
      sample_records.with_unknown_field(b""))
  assert dump_format.unknown_field_path(example) == (
      f"field number {UNKNOWN} in named_feature[1].feature")
  request = predict_pb2.PredictRequest()
  request.inputs["a"].dtype = 7
  request.inputs["b"].MergeFromString(
      sample_records.with_unknown_field(b"", field_number=99))
  assert dump_format.unknown_field_path(request) == (
      "field number 99 in inputs['b']")


def test_reader_names_the_record_a_check_refuses():
  payloads = list(sample_records.serialized_records("example", 3))
  payloads[2] = sample_records.with_unknown_field(payloads[2], inside=100)
  data = _dump(payloads, FULL)
  record_2 = len(_dump(payloads[:2], FULL))
  check = dump_format.message_check(example_pb2.Example, True)
  reader = dump_format.DumpReader(io.BytesIO(data), FULL, name="n",
                                  check=check, payload_hint="a hint")
  assert reader.read_record() == payloads[0]
  assert reader.read_record() == payloads[1]
  with pytest.raises(dump_format.DumpFormatError) as e:
    reader.read_record()
  assert str(e.value) == (
      f"n: record 2 (starting at byte offset {record_2}) is not a valid "
      f"monolith.io.proto.Example: it has field number {UNKNOWN} in line_id, "
      "which the message does not define; a hint")
  # Without the strict check the same dump reads whole.
  lenient = dump_format.message_check(example_pb2.Example)
  assert list(dump_format.DumpReader(io.BytesIO(data), FULL,
                                     check=lenient)) == payloads


def test_a_zero_kafka_prefix_read_without_the_flag_is_refused():
  # Written with the zero-form kafka prefix and sort ids; read with sort ids
  # only, the prefix's two zeros become an empty sort id and an empty
  # record, which would parse as any proto.
  payloads = list(sample_records.serialized_records("example", 3))
  written = dump_format.DumpLayout(kafka_dump_prefix=True, has_sort_id=True)
  data = _dump(payloads, written)
  read_as = dump_format.DumpLayout(has_sort_id=True)
  check = dump_format.message_check(example_pb2.Example)
  reader = dump_format.DumpReader(io.BytesIO(data), read_as, name="n",
                                  check=check, payload_hint="a hint")
  with pytest.raises(dump_format.DumpFormatError,
                     match=r"n: record 0 \(starting at byte offset 0\) is "
                     r"empty \(0 bytes\) after an empty sort id; a hint"):
    reader.read_record()
  # Unchecked too: the rule is framing, not the payload's parse.
  reader = dump_format.DumpReader(io.BytesIO(data), read_as, name="n")
  with pytest.raises(dump_format.DumpFormatError,
                     match=r"empty \(0 bytes\) after an empty sort id; check "
                     "that --lagrangex_header"):
    reader.read_record()
  # An empty record after a sort id is a record (an empty Example), but for
  # the first.
  data = _dump([payloads[0], b""], dump_format.DumpLayout(has_sort_id=True))
  reader = dump_format.DumpReader(io.BytesIO(data), read_as, name="n",
                                  check=check)
  assert [reader.read_record(), reader.read_record()] == [payloads[0], b""]


def test_an_empty_first_record_is_refused():
  # A dump with empty sort ids (as gen_random_data_file writes) or a zero
  # kafka field, read without --has_sort_id or --kafka_dump: the empty sort
  # id, or the field, reads as an empty first record, which every proto
  # parses.
  payloads = list(sample_records.serialized_records("example", 4))
  for written in (dump_format.DumpLayout(has_sort_id=True),
                  dump_format.DumpLayout(kafka_dump=True)):
    data = b"".join(
        dump_format.encode_record(p, written, sort_id=b"") for p in payloads)
    reader = dump_format.DumpReader(
        io.BytesIO(data), dump_format.DumpLayout(), name="n",
        check=dump_format.message_check(example_pb2.Example))
    with pytest.raises(dump_format.DumpFormatError,
                       match=r"n: record 0 \(starting at byte offset 0\) is "
                       r"empty \(0 bytes\); check that --lagrangex_header"):
      reader.read_record()
    # Unchecked (--novalidate_records), the empty record goes through.
    reader = dump_format.DumpReader(io.BytesIO(data), dump_format.DumpLayout())
    assert reader.read_record() == b""


def test_the_first_record_check_sees_record_0_only():
  payloads = list(sample_records.serialized_records("example", 3))
  data = _dump(payloads, FULL)
  seen = []

  def first(payload):
    seen.append(payload)
    return "is the first" if len(seen) > 1 else None

  assert list(dump_format.DumpReader(io.BytesIO(data), FULL,
                                     first_record_check=first)) == payloads
  assert seen == payloads[:1]
  reader = dump_format.DumpReader(io.BytesIO(data), FULL, name="n",
                                  first_record_check=first,
                                  payload_hint="a hint")
  with pytest.raises(dump_format.DumpFormatError,
                     match=r"^n: record 0 \(starting at byte offset 0\) is "
                     "the first; a hint$"):
    reader.read_record()


def test_record_like_check():
  payload = next(sample_records.serialized_records("example", 1))
  check = dump_format.record_like_check(example_pb2.Example)
  # Records, also with fields of a newer schema, are like records.
  assert check(payload) is None
  assert check(sample_records.with_unknown_field(payload)) is None
  # A text key that parses as an Example, all of unknown fields, is not.
  key = b"z9v_y9nu_otn0ub2w2ymoyeayld14vr3f9doli2j11cudr9wqpsap_addqiehgwk"
  assert dump_format.message_check(example_pb2.Example)(key) is None
  assert check(key) == ("is not like a monolith.io.proto.Example: most of its "
                        "bytes are fields it does not define")
  assert check(b"\xff\xff").startswith("is not a valid")


def test_a_dump_without_sort_ids_read_with_them_is_refused():
  # Read with --has_sort_id, a bare dump of an even number of records ends
  # cleanly with every other record taken for a sort id.
  payloads = list(sample_records.serialized_records("example", 4))
  assert min(map(len, payloads)) >= dump_format.RECORD_LIKE_SORT_ID_BYTES
  bare = _dump(payloads, dump_format.DumpLayout())
  with_sort_ids = dump_format.DumpLayout(has_sort_id=True)
  check = dump_format.record_like_check(example_pb2.Example)
  assert list(dump_format.DumpReader(io.BytesIO(bare),
                                     with_sort_ids)) == payloads[1::2]
  reader = dump_format.DumpReader(io.BytesIO(bare), with_sort_ids, name="n",
                                  sort_id_check=check)
  with pytest.raises(dump_format.DumpFormatError,
                     match=r"n: the sort id of record 0 \(starting at byte "
                     r"offset 0\) is \d+ bytes that parse as a record: the "
                     r"dump has no sort ids \(pass --nohas_sort_id\)"):
    reader.read_record()
  # So is a dump of a newer schema's records (fields Example lacks).
  newer = _dump([sample_records.with_unknown_field(p) for p in payloads],
                dump_format.DumpLayout())
  reader = dump_format.DumpReader(io.BytesIO(newer), with_sort_ids,
                                  sort_id_check=check)
  with pytest.raises(dump_format.DumpFormatError, match="parse as a record"):
    reader.read_record()
  # The first long sort id is checked, also past record 0: a dump whose
  # first record is shorter than a record-like sort id is refused too.
  small = example_pb2.Example()
  small.named_feature.add(name="f")
  small_payload = small.SerializeToString()
  assert len(small_payload) < dump_format.RECORD_LIKE_SORT_ID_BYTES
  reader = dump_format.DumpReader(
      io.BytesIO(_dump([small_payload, small_payload] + payloads,
                       dump_format.DumpLayout())),
      with_sort_ids, sort_id_check=check)
  assert reader.read_record() == small_payload
  with pytest.raises(dump_format.DumpFormatError,
                     match=r"the sort id of record 1 \(starting at byte "
                     r"offset \d+\) is \d+ bytes that parse as a record"):
    reader.read_record()
  # Long sort ids that are no record (one that does not parse, a key that
  # parses only as unknown fields), and any after the first long one, are
  # kept.
  key = b"z9v_y9nu_otn0ub2w2ymoyeayld14vr3f9doli2j11cudr9wqpsap_addqiehgwk"
  for first in (b"\xff" * 200, key):
    data = b"".join(
        dump_format.encode_record(p, with_sort_ids, sort_id=s)
        for p, s in zip(payloads, [first, payloads[0], b"", b"x"]))
    assert list(dump_format.DumpReader(io.BytesIO(data), with_sort_ids,
                                       sort_id_check=check)) == payloads
