"""Turns a traffic dump, or random records, into a TF Serving warmup file.

File mode (--gen_type=file, the default) reads size-prefixed Instance /
Example / ExampleBatch records (see dump_format.py for every header layout)
from --file_name or stdin; random mode (--gen_type=random) generates them
from feature names with data_gen_utils. Either way the records are grouped
into batches and written as a TFRecord of `tensorflow.serving.PredictionLog`
whose PredictRequests feed the batch, as a string tensor, to the input
`instances`, `examples` or `example_batch`, cycling over --signature_names
(plus `serving_default`). Put the output at
`<saved_model>/assets.extra/tf_serving_warmup_requests`.

    bazel run //monolith/native_training/model_export:warmup_data_gen -- \
        --file_name=dump.bin --variant_type=example --batch_size=64 \
        --output_path=/tmp/warmup/tf_serving_warmup_requests
    bazel run //monolith/native_training/model_export:warmup_data_gen -- \
        --gen_type=random --variant_type=example --sparse_features=slot_1,slot_2 \
        --dense_features=ctr --dense_feature_shapes=4 --seed=7 \
        --output_path=/tmp/warmup/tf_serving_warmup_requests

Unlike the original, the dump is read in binary and streamed; a truncated
record, a short header or an empty input is an error naming the byte offset;
the last partial batch is kept; in file mode max_records counts warmup
records in every variant; no mode writes more than TF Serving's 1000 records;
the output appears only complete.
Random mode works (the original called data_gen_utils with an outdated
signature) and --seed makes its output reproducible.
"""

import collections
import sys
from typing import BinaryIO, Iterator, Optional, Sequence, Union

from absl import app
from absl import flags
from absl import logging
from google.protobuf import message
from google.protobuf import unknown_fields
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import prediction_log_pb2

from idl.matrix.proto import example_pb2
from idl.matrix.proto import proto_parser_pb2
from monolith.native_training.model_export import data_gen_utils
from monolith.native_training.model_export import dump_format
from monolith.native_training.model_export import warmup_io

FLAGS = flags.FLAGS

flags.DEFINE_string("file_name", None, "Input dump; stdin when empty.")
flags.DEFINE_integer("batch_size", 256,
                     "Records per request (instance/example variants).")
flags.DEFINE_bool("lagrangex_header", False,
                  "Every record starts with an 8-byte lagrangex header.")
flags.DEFINE_bool("kafka_dump_prefix", False,
                  "Every record starts with a kafka dump prefix.")
flags.DEFINE_bool("has_sort_id", True, "Every record carries a sort id.")
flags.DEFINE_bool("kafka_dump", False,
                  "Every record carries an 8-byte kafka dump field.")
flags.DEFINE_integer(
    "max_records", 1000,
    "File mode: maximum number of warmup records (PredictionLogs) to write. "
    "Random mode: records (samples) in all, as in the original: "
    "max_records // batch_size requests. Either way at most "
    f"{warmup_io.MAX_WARMUP_RECORDS} warmup records, TF Serving's limit.")
flags.DEFINE_string("model_name", "default", "model_spec.name of requests.")
flags.DEFINE_string(
    "signature_names", "serving_default",
    "Comma-separated signatures the requests cycle over; serving_default is "
    "always included.")
flags.DEFINE_string("output_path", "/tmp/tf_warmup_data",
                    "Output TFRecord file of PredictionLog.")
flags.DEFINE_enum("variant_type", "instance",
                  ["instance", "example", "example_batch"],
                  "Record type of the dump or of the random records.")
flags.DEFINE_string(
    "sparse_features", None,
    "Random mode: comma-separated sparse feature names (slots from "
    "--feature_list, else from slot_<N> names); the instance variant puts "
    "them in Instance.feature.")
flags.DEFINE_string(
    "fidv1_features", None,
    "Random mode, instance variant: comma-separated slots (1..1023) whose v1 "
    "fids go to Instance.fid.")
flags.DEFINE_string("dense_features", None,
                    "Random mode: comma-separated dense feature names.")
flags.DEFINE_string(
    "dense_feature_shapes", None,
    "Random mode: comma-separated values per dense feature (default 1 each).")
flags.DEFINE_string(
    "dense_feature_types", None,
    "Random mode: comma-separated dtypes per dense feature, e.g. float, "
    "double, int64, string (default float each).")
flags.DEFINE_string(
    "extra_features", None,
    "Random mode: comma-separated LineId fields to fill (default uid, "
    "item_id, req_time, sample_rate, actions).")
flags.DEFINE_string(
    "extra_feature_shapes", None,
    "Random mode: comma-separated values per repeated LineId field (default "
    "1 each).")
flags.DEFINE_string("feature_list", None,
                    "Random mode: feature list config giving slots and methods.")
flags.DEFINE_enum("gen_type", "file", ["file", "random"],
                  "file: read a dump; random: generate requests.")
flags.DEFINE_float(
    "drop_rate", 0,
    "Random mode: probability that a sparse feature is left empty (the user "
    "and item id slots 1 and 200 never are).")
flags.DEFINE_integer(
    "seed", None,
    "Random mode: seed; the same seed and flags give a byte-identical file "
    "(line ids then carry a fixed req_time). Unset: different every run.")
flags.DEFINE_bool(
    "validate_records", True,
    "Check that every record parses as the --variant_type proto (catches "
    "wrong header flags early; --novalidate_records is about 2x faster).")

RECORD_CLASSES = {
    "instance": proto_parser_pb2.Instance,
    "example": example_pb2.Example,
    "example_batch": example_pb2.ExampleBatch,
}
INPUT_NAMES = warmup_io.INPUT_NAMES
DEFAULT_SIGNATURE = warmup_io.DEFAULT_SIGNATURE
# Protobuf messages cannot exceed 2 GiB; a larger size means wrong header flags.
_MAX_RECORD_BYTES = 2**31 - 1
_CHUNK_BYTES = 1 << 20
_LAYOUT_HINT = ("check that --lagrangex_header, --kafka_dump_prefix, "
                "--has_sort_id and --kafka_dump match how the dump was written")


class DumpFormatError(warmup_io.WarmupDataError):
  """The dump does not follow the expected layout."""


def _open_input(file_name: Optional[str]) -> BinaryIO:
  if not file_name:
    return sys.stdin.buffer
  if "://" in file_name:
    return tf.io.gfile.GFile(file_name, "rb")
  return open(file_name, "rb", buffering=0)


class PBReader:
  """Iterates over batches of records of a dump, as string TensorProtos.

  Each item is a 1-D DT_STRING TensorProto: `batch_size` records for the
  instance and example variants (the last batch may be shorter), one record
  for example_batch. Reading is streamed from the file or stdin (binary), in
  constant memory. A clean end of input between records ends the iteration;
  any partial header or record raises DumpFormatError with the byte offset.
  """

  def __init__(self,
               file_name: Optional[str],
               batch_size: int,
               lagrangex_header: bool = False,
               has_sort_id: bool = False,
               kafka_dump_prefix: bool = False,
               kafka_dump: bool = False,
               variant_type: str = "instance",
               validate: bool = True):
    if batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    if variant_type not in INPUT_NAMES:
      raise ValueError(f"variant_type must be one of {sorted(INPUT_NAMES)}, "
                       f"got {variant_type!r}")
    self.file_name = file_name
    self.batch_size = batch_size
    self.lagrangex_header = lagrangex_header
    self.has_sort_id = has_sort_id
    self.kafka_dump_prefix = kafka_dump_prefix
    self.kafka_dump = kafka_dump
    self.variant_type = variant_type
    self._record_class = RECORD_CLASSES[variant_type] if validate else None
    self._records_read = 0
    self._display_name = file_name or "<stdin>"
    self._stream = _open_input(file_name)
    self._buf = b""  # unread input starts at self._buf[self._pos]
    self._pos = 0
    self._buf_offset = 0  # input offset of self._buf[0]
    self._batches = 0
    self._max_iter = None
    self._exhausted = False

  @property
  def offset(self) -> int:
    """Bytes of input consumed so far."""
    return self._buf_offset + self._pos

  def set_max_iter(self, max_records: int) -> None:
    """Stops after `max_records` batches (warmup records), in every variant."""
    if max_records <= 0:
      raise ValueError(f"max_records must be positive, got {max_records}")
    self._max_iter = max_records

  def close(self) -> None:
    if self._stream is not sys.stdin.buffer:
      self._stream.close()

  def __enter__(self) -> "PBReader":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __iter__(self) -> "PBReader":
    return self

  def __next__(self) -> tensor_pb2.TensorProto:
    if self._exhausted or (self._max_iter is not None and
                           self._batches >= self._max_iter):
      raise StopIteration
    per_batch = 1 if self.variant_type == "example_batch" else self.batch_size
    records = []
    for _ in range(per_batch):
      record = self.read_record()
      if record is None:
        self._exhausted = True
        break
      records.append(record)
    if not records:
      raise StopIteration
    self._batches += 1
    return warmup_io.string_tensor(records)

  def read_record(self) -> Optional[bytes]:
    """The next record's payload, or None at a clean end of input."""
    record_offset = self.offset
    if not self._ensure(8):
      if self._pos == len(self._buf):
        return None
      raise self._truncated("header or size", 8)
    if self.lagrangex_header:
      self._pos += 8
    else:
      sort_id_size = None
      if self.kafka_dump_prefix:
        prefix = self._u64("kafka dump prefix")
        if prefix == 0:
          self._u64("kafka dump prefix")
        else:
          sort_id_size = prefix
      if self.has_sort_id:
        if sort_id_size is None:
          sort_id_size = self._u64("sort id size")
        self._take(self._checked_size(sort_id_size, "sort id"), "sort id")
      if self.kafka_dump:
        self._take(8, "kafka dump field")
    size = self._checked_size(self._u64("record size"), "record")
    payload = self._take(size, "record payload")
    if self._record_class is not None:
      self._validate(payload, record_offset)
    self._records_read += 1
    return payload

  def _validate(self, payload: bytes, record_offset: int) -> None:
    """Wrong layout flags can still yield plausible sizes: check the proto."""
    reason = None
    try:
      record = self._record_class.FromString(payload)
      if len(unknown_fields.UnknownFieldSet(record)):
        reason = "it has fields the message does not define"
    except message.DecodeError as e:
      reason = str(e)
    if reason:
      raise DumpFormatError(
          f"{self._display_name}: record {self._records_read} (starting at "
          f"byte offset {record_offset}) is not a valid "
          f"{self._record_class.DESCRIPTOR.full_name}: {reason}; "
          f"{_LAYOUT_HINT} and --variant_type={self.variant_type} its records")

  # The dump is parsed out of large chunks: per-field stream reads would cost
  # more than everything else the tool does.
  def _ensure(self, n: int) -> bool:
    """Makes `n` bytes available at the read position, if the input has them."""
    available = len(self._buf) - self._pos
    if available >= n:
      return True
    chunks = [self._buf[self._pos:]]
    while available < n:
      chunk = self._stream.read(max(n - available, _CHUNK_BYTES))
      if not chunk:
        break
      chunks.append(chunk)
      available += len(chunk)
    self._buf_offset += self._pos
    self._buf = b"".join(chunks)
    self._pos = 0
    return available >= n

  def _u64(self, what: str) -> int:
    if len(self._buf) - self._pos < 8 and not self._ensure(8):
      raise self._truncated(what, 8)
    value = dump_format.U64.unpack_from(self._buf, self._pos)[0]
    self._pos += 8
    return value

  def _take(self, n: int, what: str) -> bytes:
    if len(self._buf) - self._pos < n and not self._ensure(n):
      raise self._truncated(what, n)
    start = self._pos
    self._pos += n
    return self._buf[start:self._pos]

  def _checked_size(self, size: int, what: str) -> int:
    if size > _MAX_RECORD_BYTES:
      raise DumpFormatError(
          f"{self._display_name}: {what} size {size} read at byte offset "
          f"{self.offset - 8} exceeds 2 GiB; {_LAYOUT_HINT}")
    return size

  def _truncated(self, what: str, wanted: int) -> DumpFormatError:
    return DumpFormatError(
        f"{self._display_name}: truncated {what} at byte offset "
        f"{self.offset}: input ends after {len(self._buf) - self._pos} of "
        f"{wanted} bytes; {_LAYOUT_HINT}")


def gen_prediction_log_from_file(
    file_name: Optional[str] = None,
    batch_size: int = 64,
    lagrangex_header: bool = False,
    kafka_dump_prefix: bool = False,
    has_sort_id: bool = True,
    kafka_dump: bool = False,
    max_records: int = 1000,
    variant_type: str = "instance",
    model_name: str = "default",
    signature_names: Union[str, Sequence[str]] = DEFAULT_SIGNATURE,
    validate: bool = True,
) -> Iterator[prediction_log_pb2.PredictionLog]:
  """Yields one PredictionLog per batch of the dump, up to `max_records`.

  Args:
    file_name: the dump; stdin when None or empty.
    batch_size: records per request for the instance and example variants.
    lagrangex_header, kafka_dump_prefix, has_sort_id, kafka_dump: the layout.
    max_records: most PredictionLogs to yield (TF Serving allows 1000).
    variant_type: 'instance', 'example' or 'example_batch'.
    model_name: the requests' model_spec.name.
    signature_names: signatures to cycle over (list or comma-separated);
      serving_default is appended when missing.
    validate: check that every record parses as the variant's proto.

  Raises:
    DumpFormatError: truncated or malformed input, or an empty input.
    WarmupDataError: max_records above TF Serving's limit.
  """
  warmup_io.check_record_limit(max_records, f"--max_records={max_records}")
  input_name = INPUT_NAMES.get(variant_type)
  if input_name is None:
    raise ValueError(f"variant_type must be one of {sorted(INPUT_NAMES)}, "
                     f"got {variant_type!r}")
  signatures = warmup_io.signature_list(signature_names)
  with PBReader(file_name, batch_size, lagrangex_header, has_sort_id,
                kafka_dump_prefix, kafka_dump, variant_type,
                validate) as reader:
    reader.set_max_iter(max_records)
    count = 0
    for count, batch in enumerate(reader, start=1):
      yield warmup_io.predict_log(model_name,
                                  signatures[(count - 1) % len(signatures)],
                                  {input_name: batch})
    if count == 0:
      raise DumpFormatError(f"{file_name or '<stdin>'}: no records (empty "
                            "input)")


def tf_dtype(dtype: str) -> tf.dtypes.DType:
  """Maps a dtype alias (name or proto enum number as text) to a TF dtype."""
  dtype = str(dtype).strip()
  for names, tf_type in _DTYPE_ALIASES:
    if dtype in names:
      return tf_type
  known = sorted(n for names, _ in _DTYPE_ALIASES for n in names)
  raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(known)}")


_DTYPE_ALIASES = (
    ({"int", "int32", "short", "uint", "uint32", "3", "22"}, tf.int32),
    ({"int64", "long", "uint64", "9", "23"}, tf.int64),
    ({"float", "float32", "1"}, tf.float32),
    ({"float64", "double", "2"}, tf.float64),
    ({"bool", "boolean", "10"}, tf.bool),
    ({"str", "string", "char", "7"}, tf.string),
)


class WarmupSummary:
  """Running counts over written warmup logs, for the closing summary line."""

  def __init__(self):
    self.records = 0
    self.samples = 0
    self.payload_bytes = 0
    self.per_signature = collections.Counter()

  def add(self, log: prediction_log_pb2.PredictionLog) -> None:
    request = log.predict_log.request
    self.records += 1
    self.per_signature[request.model_spec.signature_name] += 1
    for tensor in request.inputs.values():
      self.samples += len(tensor.string_val)
      self.payload_bytes += sum(len(v) for v in tensor.string_val)

  def __str__(self) -> str:
    signatures = ", ".join(
        f"{k}={v}" for k, v in sorted(self.per_signature.items()))
    return (f"{self.records} warmup records, {self.samples} samples, "
            f"{self.payload_bytes} payload bytes; per signature: {signatures}")


def _comma_list(flag_name: str, convert=str) -> Optional[list]:
  """The comma list of --flag_name converted item by item; None when unset."""
  text = FLAGS[flag_name].value
  if not text:
    return None
  items = [item.strip() for item in text.split(",")]
  try:
    return [convert(item) for item in items]
  except ValueError as e:
    raise app.UsageError(f"--{flag_name}={text}: {e}") from e


def random_parser_args() -> data_gen_utils.ParserArgs:
  """The random-mode ParserArgs the flags describe."""
  names = _comma_list("sparse_features")
  instance = FLAGS.variant_type == "instance"
  if not names and not (instance and FLAGS.fidv1_features):
    raise app.UsageError(
        "--gen_type=random needs --sparse_features"
        f"{' or --fidv1_features' if instance else ''}")
  if FLAGS.fidv1_features and not instance:
    raise app.UsageError("--fidv1_features is for --variant_type=instance")
  feature_list = None
  if FLAGS.feature_list:
    feature_list = data_gen_utils.FeatureList.parse(
        warmup_io.resolve_user_path(FLAGS.feature_list))
  return data_gen_utils.ParserArgs(
      model_name=FLAGS.model_name,
      fidv1_features=_comma_list("fidv1_features", int),
      fidv2_features=names if instance else None,
      sparse_features=None if instance else names,
      dense_features=_comma_list("dense_features"),
      dense_feature_shapes=_comma_list("dense_feature_shapes", int),
      dense_feature_types=_comma_list("dense_feature_types", tf_dtype),
      extra_features=_comma_list("extra_features"),
      extra_feature_shapes=_comma_list("extra_feature_shapes", int),
      feature_list=feature_list,
      batch_size=FLAGS.batch_size,
      max_records=FLAGS.max_records,
      signature_name=warmup_io.signature_list(FLAGS.signature_names),
      variant_type=FLAGS.variant_type,
      drop_rate=FLAGS.drop_rate,
      seed=FLAGS.seed)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  output_path = warmup_io.resolve_user_path(FLAGS.output_path)
  summary = WarmupSummary()

  def logs(generated):
    for log in generated:
      summary.add(log)
      yield log

  try:
    if FLAGS.gen_type == "random":
      generated = data_gen_utils.gen_prediction_log(random_parser_args())
    else:
      generated = gen_prediction_log_from_file(
          warmup_io.resolve_user_path(FLAGS.file_name), FLAGS.batch_size,
          FLAGS.lagrangex_header, FLAGS.kafka_dump_prefix, FLAGS.has_sort_id,
          FLAGS.kafka_dump, FLAGS.max_records, FLAGS.variant_type,
          FLAGS.model_name, FLAGS.signature_names, FLAGS.validate_records)
    warmup_io.write_prediction_logs(output_path, logs(generated))
  except (warmup_io.WarmupDataError, ValueError, OSError,
          tf.errors.OpError) as e:
    sys.exit(f"warmup_data_gen: error: {e}")
  print(f"wrote {output_path}: {summary}")


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
