"""Fuzz tests of the warmup tools' parsers: mutated inputs give their errors.

Each test mutates valid inputs with a fixed seed for a bounded number of
rounds (truncations, flipped bytes, forged sizes, and for TFRecords forged
lengths with valid CRCs, which TF's own reader does not survive) and
requires every parser to return its problems or raise its documented error,
never anything else. A crash in a native reader fails the test process.
"""

import dataclasses
import io
import random
import struct

import tensorflow as tf

from idl.matrix.proto import example_pb2
from monolith.native_training import test_utils
from monolith.native_training.data import feature_list
from monolith.native_training.model_export import data_gen_utils
from monolith.native_training.model_export import dump_format
from monolith.native_training.model_export import sample_records
from monolith.native_training.model_export import warmup_data_check
from monolith.native_training.model_export import warmup_data_decoder
from monolith.native_training.model_export import warmup_data_gen
from monolith.native_training.model_export import warmup_example_batch
from monolith.native_training.model_export import warmup_io

SEED = 20261203
ROUNDS = 1000
LAYOUTS = [dump_format.DumpLayout(lagrangex_header=True)] + [
    dump_format.DumpLayout(kafka_dump_prefix=p, has_sort_id=s, kafka_dump=k)
    for p in (False, True) for s in (False, True) for k in (False, True)
]


def _tfrecord(data: bytes, length: int = None) -> bytes:
  """A TFRecord of `data`, its header claiming `length` (CRCs valid)."""
  crc = warmup_data_check._masked_crc32c
  header = struct.pack("<Q", len(data) if length is None else length)
  return (header + struct.pack("<I", crc(header)) + data +
          struct.pack("<I", crc(data)))


def _warmup_records():
  args = data_gen_utils.ParserArgs(
      sparse_features=["slot_1", "slot_2"], dense_features=["ctr"],
      variant_type="example", batch_size=2, max_records=6,
      signature_name=["a", "b"], seed=1)
  return [log.SerializeToString()
          for log in data_gen_utils.gen_prediction_log(args)]


def test_warmup_check_reports_problems_of_mutated_files(tmp_path):
  rng = random.Random(SEED)
  records = _warmup_records()
  valid = b"".join(_tfrecord(r) for r in records)
  path = str(tmp_path / "warmup")
  reported = 0
  for round_ in range(ROUNDS):
    if round_ % 3 == 0:
      # Valid CRCs over a forged length or over garbage: past the framing
      # checks, into what TF's reader and the proto checks do with them.
      pieces = [_tfrecord(r) for r in records]
      at = rng.randrange(len(pieces))
      if rng.random() < 0.5:
        pieces[at] = _tfrecord(records[at],
                               rng.choice(test_utils.FUZZ_EDGE_SIZES))
      else:
        pieces[at] = _tfrecord(test_utils.mutate_bytes(rng, records[at]))
      data = b"".join(pieces)
    else:
      data = test_utils.mutate_bytes(rng, valid)
    with open(path, "wb") as f:
      f.write(data)
    report = warmup_data_check.check_warmup_file(path)
    assert isinstance(report, warmup_data_check.CheckReport)
    for problem in report.problems:
      assert problem.reason
    reported += bool(report.problems)
    warmup_data_check.format_report(report)
    # The decoder reads on past TF Serving's limit (its own reading path);
    # what it finds wrong in reading, the check reports too (beside the
    # requests' own problems).
    blocks, problems = warmup_data_decoder.decode_warmup_file(path)
    assert all(isinstance(block, str) for block in blocks)
    assert ({(p.record, p.reason) for p in problems} <=
            {(p.record, p.reason) for p in report.problems})
  # Most mutations break something, and that is reported.
  assert reported > ROUNDS // 2


class _Pipe(io.RawIOBase):
  """A non-seekable stream handing out at most 5 bytes a read, as a pipe
  may: the reader cannot check sizes against what is left."""

  def __init__(self, data: bytes):
    super().__init__()
    self._data = memoryview(data)

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    n = min(len(buffer), len(self._data), 5)
    buffer[:n] = self._data[:n]
    self._data = self._data[n:]
    return n


def test_dump_reader_raises_only_its_error_on_mutated_dumps():
  rng = random.Random(SEED)
  payloads = list(sample_records.serialized_records("example", 4))
  check = dump_format.message_check(example_pb2.Example)
  refused = 0
  for round_ in range(ROUNDS):
    layout = LAYOUTS[round_ % len(LAYOUTS)]
    valid = b"".join(
        dump_format.encode_record(p, layout, sort_id=b"sid-%d" % i,
                                  sort_id_in_prefix=bool(i % 2),
                                  source_name="topic")
        for i, p in enumerate(payloads))
    data = test_utils.mutate_bytes(rng, valid)
    # Every third round through a pipe (no size to check against).
    stream = (io.BufferedReader(_Pipe(data))
              if round_ % 3 == 0 else io.BytesIO(data))
    assert stream.seekable() == (round_ % 3 != 0)
    reader = dump_format.DumpReader(stream, layout, name="fuzzed-input-7",
                                    check=check if round_ % 2 else None)
    try:
      for payload in reader:
        assert isinstance(payload, bytes)
    except dump_format.DumpFormatError as e:
      # Every error names the input.
      assert "fuzzed-input-7" in str(e), str(e)
      refused += 1
  assert refused > ROUNDS // 4


def test_warmup_data_gen_raises_only_its_errors_on_mutated_dumps(tmp_path):
  """warmup_data_gen's file mode over mutated dumps of each variant and
  layout, validating records or not: its logs, or DumpFormatError /
  WarmupDataError naming the input."""
  rng = random.Random(SEED)
  variants = ("instance", "example", "example_batch")
  payloads = {v: list(sample_records.serialized_records(v, 4))
              for v in variants}
  path = str(tmp_path / "dump")
  refused = 0
  rounds = ROUNDS // 4
  for round_ in range(rounds):
    variant = variants[round_ % len(variants)]
    layout = LAYOUTS[round_ % len(LAYOUTS)]
    valid = b"".join(
        dump_format.encode_record(p, layout, sort_id=b"sid-%d" % i,
                                  source_name="topic")
        for i, p in enumerate(payloads[variant]))
    with open(path, "wb") as f:
      f.write(test_utils.mutate_bytes(rng, valid))
    validate = round_ % 2 == 0
    try:
      for log in warmup_data_gen.gen_prediction_log_from_file(
          path, batch_size=2, variant_type=variant, model_name="m",
          signature_names="serving_default", validate=validate,
          reject_unknown_fields=validate and round_ % 4 == 0,
          **dataclasses.asdict(layout)):
        assert log.predict_log.request.inputs
    except (dump_format.DumpFormatError, warmup_io.WarmupDataError) as e:
      assert path in str(e), str(e)
      refused += 1
  assert 0 < refused < rounds


def test_feature_list_parser_raises_only_value_errors(tmp_path):
  rng = random.Random(SEED)
  valid = (b"column_name: feature_column\n"
           b"cache_column: cache_name=c1 capacity=100 timeout=3\n"
           b"feature_column: feature_name=f_user_id slot=1 shared=false "
           b"method=fid need_raw=false\n"
           b"feature_column: feature_name=f_item_id slot=2 cache=c1 "
           b"method=fid_v2\n")
  parsed = refused = 0
  for round_ in range(ROUNDS):
    path = str(tmp_path / f"features_{round_}.conf")
    with open(path, "wb") as f:
      f.write(test_utils.mutate_bytes(rng, valid))
    try:
      features = feature_list.FeatureList.parse(path)
    except ValueError as e:
      assert path in str(e)
      refused += 1
    else:
      # What parses is a feature list of features.
      assert isinstance(features, feature_list.FeatureList)
      assert all(isinstance(f, feature_list.Feature) for f in features)
      parsed += 1
  # Both outcomes: a parser taking anything, or refusing every change,
  # fails here.
  assert parsed > 0 and refused > 0, (parsed, refused)


def test_request_parser_raises_only_warmup_data_errors(tmp_path):
  rng = random.Random(SEED)
  request = warmup_io.predict_log("m", "serving_default", {
      "examples": tf.make_tensor_proto([b"a", b"bc"])
  }).predict_log.request.SerializeToString()
  path = str(tmp_path / "request")
  accepted = refused = 0
  for _ in range(ROUNDS):
    with open(path, "wb") as f:
      f.write(test_utils.mutate_bytes(rng, request))
    try:
      parsed = warmup_example_batch.parse_request(path)
      assert parsed.inputs
      accepted += 1
    except warmup_io.WarmupDataError as e:
      assert path in str(e)
      refused += 1
  assert accepted > 0 and refused > 0, (accepted, refused)

