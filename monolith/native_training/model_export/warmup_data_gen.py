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
record, a short header, a size larger than the rest of the file or an empty
input is an error naming the byte offset; every record is checked to parse
(--validate_records; fields of newer schemas are allowed unless
--reject_unknown_fields);
the last partial batch is kept; in file mode max_records counts warmup
records in every variant; no mode writes more than TF Serving's 1000 records;
the output appears only complete.
Random mode works (the original called data_gen_utils with an outdated
signature) and --seed makes its output reproducible.
"""

import collections
import sys
import time
from typing import BinaryIO, Iterator, List, Optional, Sequence, Union

from absl import app
from absl import flags
from absl import logging
from google.protobuf import message
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import prediction_log_pb2

from idl.matrix.proto import example_pb2
from idl.matrix.proto import proto_parser_pb2
from monolith.native_training.model_export import data_gen_utils
from monolith.native_training.model_export import dump_format
from monolith.native_training.model_export import warmup_io

FLAGS = flags.FLAGS

# 256 MiB: far above any warmup request TF Serving takes, far below 2 GiB.
DEFAULT_MAX_RECORD_BYTES = 1 << 28

# What a library call takes for --model_name and --signature_names where
# the tool's flags are not defined and parsed.
_LIBRARY_DEFAULTS = {
    "model_name": "default",
    "signature_names": "serving_default"
}


def define_flags() -> None:
  """Defines the tool's flags: its binary calls this, not the import, so a
  program with a --batch_size, --model_name or --seed of its own imports
  this module as a library (absl refuses a flag defined twice)."""
  flags.DEFINE_string("file_name", None, "Input dump; stdin when empty.")
  flags.DEFINE_integer("batch_size", 256,
                       "Records per request (instance/example variants).",
                       lower_bound=1)
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
      "max_records // batch_size requests. Either way a value that allows "
      f"more than {warmup_io.MAX_WARMUP_RECORDS} warmup records (TF Serving's "
      "limit) is an error.",
      lower_bound=1)
  flags.DEFINE_string("model_name", _LIBRARY_DEFAULTS["model_name"],
                      "model_spec.name of requests.")
  flags.DEFINE_string(
      "signature_names", _LIBRARY_DEFAULTS["signature_names"],
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
      "and item id slots 1 and 200 never are).",
      lower_bound=0, upper_bound=1)
  flags.DEFINE_integer(
      "seed", None,
      "Random mode: seed; the same seed and flags give a byte-identical file "
      "(line ids then carry a fixed req_time). Unset: different every run.")
  flags.DEFINE_bool(
      "validate_records", True,
      "Check the framing of every record: it parses as the --variant_type "
      "proto (fields the proto does not define, as newer schemas write, are "
      "allowed), its sizes are plausible, and the input ends on a record "
      "boundary. Catches wrong header flags early; --novalidate_records skips "
      "the parse (about 2x faster) and keeps the size and boundary checks.")
  flags.DEFINE_integer(
      "max_record_bytes", DEFAULT_MAX_RECORD_BYTES,
      "File mode: the largest record (or sort id) size accepted; larger sizes "
      "are refused before anything is read, so a wrong header flag fails at "
      "once instead of waiting for that much of a piped stream. At most "
      "2147483647.",
      lower_bound=1, upper_bound=dump_format.MAX_RECORD_BYTES)
  flags.DEFINE_bool(
      "reject_unknown_fields", False,
      "Strict validation: also refuse records in which any message has fields "
      "the open-source protos do not define. Production dumps written by "
      "newer schemas carry such fields, so use it only for dumps known to "
      "match the protos. Needs --validate_records.")


def _not_an_example_batch(payload: bytes) -> Optional[str]:
  """Refuses an Example record that is an ExampleBatch.

  An ExampleBatch parses as an Example (its feature lists as features, its
  batch_size an unknown field), so a dump of them read with
  --variant_type=example would make requests of whole batches taken for
  rows. An Example never parses as an ExampleBatch without unknown fields
  and with a batch_size.
  """
  if not dump_format.has_unknown_fields(example_pb2.Example.FromString(payload)):
    return None
  if dump_format.message_check(example_pb2.ExampleBatch,
                               reject_unknown_fields=True)(payload):
    return None
  batch = example_pb2.ExampleBatch.FromString(payload)
  if batch.batch_size < 1:
    return None
  return (f"is an {batch.DESCRIPTOR.full_name} of {batch.batch_size} rows, "
          "not an Example: pass --variant_type=example_batch")


RECORD_CLASSES = {
    "instance": proto_parser_pb2.Instance,
    "example": example_pb2.Example,
    "example_batch": example_pb2.ExampleBatch,
}
INPUT_NAMES = warmup_io.INPUT_NAMES
DumpFormatError = dump_format.DumpFormatError


def _example_batch_of_rows(batch: example_pb2.ExampleBatch) -> Optional[str]:
  """Refuses an ExampleBatch record of no rows: a request of none, and what
  an Example read as an ExampleBatch parses to (it has no batch_size)."""
  if batch.batch_size >= 1:
    return None
  return (f"is an {batch.DESCRIPTOR.full_name} of batch_size "
          f"{batch.batch_size}: no rows to request (Examples read as "
          "ExampleBatches parse so: pass --variant_type=example)")


# What a dump's first record is checked for beyond parsing, per variant:
# a wrong --variant_type shows there.
_FIRST_RECORD_CHECKS = {
    "example": _not_an_example_batch,
}
# What every record is checked for beyond parsing, per variant.
_RECORD_CHECKS = {
    "example_batch": _example_batch_of_rows,
}


def _open_input(file_name: Optional[str]) -> BinaryIO:
  if not file_name:
    if sys.stdin.isatty():
      # Under `bazel run` a forgotten --file_name would wait for a terminal.
      raise warmup_io.WarmupDataError(
          "no --file_name, and stdin is a terminal: give the dump with "
          "--file_name, or pipe it in")
    return sys.stdin.buffer
  if "://" in file_name:
    return tf.io.gfile.GFile(file_name, "rb")
  return open(file_name, "rb", buffering=0)


def _check_variant(variant_type: str) -> None:
  if variant_type not in INPUT_NAMES:
    raise ValueError(f"variant_type must be one of {sorted(INPUT_NAMES)}, "
                     f"got {variant_type!r}")


class PBReader:
  """Iterates over batches of records of a dump, as string TensorProtos.

  Each item is a 1-D DT_STRING TensorProto: `batch_size` records for the
  instance and example variants (the last batch may be shorter), one record
  for example_batch. The records come from a dump_format.DumpReader over the
  file or stdin (binary, streamed, in constant memory), which decodes the
  layout and raises DumpFormatError, with the byte offset, for any partial
  header or record; a clean end of input between records ends the iteration.

  Attributes:
    dump_reader: the DumpReader the records come from (its read_record gives
      single records).
  """

  def __init__(self,
               file_name: Optional[str],
               batch_size: int,
               lagrangex_header: bool = False,
               has_sort_id: bool = False,
               kafka_dump_prefix: bool = False,
               kafka_dump: bool = False,
               variant_type: str = "instance",
               validate: bool = True,
               reject_unknown_fields: bool = False,
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
    """Opens the dump.

    Args:
      file_name: the dump (local path or tf.io.gfile URI); stdin when None or
        empty.
      batch_size: records per batch for the instance and example variants.
      lagrangex_header: every record starts with an 8-byte lagrangex header.
      has_sort_id: every record carries a sort id.
      kafka_dump_prefix: every record starts with a kafka dump prefix.
      kafka_dump: every record carries an 8-byte kafka dump field.
      variant_type: 'instance', 'example' or 'example_batch'.
      validate: check that every record parses as the variant's proto;
        fields the proto does not define are allowed.
      reject_unknown_fields: with `validate`, also refuse records in which
        any message has fields the proto does not define.
      max_record_bytes: larger record or sort id sizes are refused before
        they are read.

    Raises:
      ValueError: a batch_size below 1, an unknown variant_type, or
        reject_unknown_fields without validate, or max_record_bytes outside
        1 .. 2^31 - 1.
      OSError: the file cannot be opened.
    """
    if batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    _check_variant(variant_type)
    if reject_unknown_fields and not validate:
      raise ValueError("reject_unknown_fields needs validate (records must "
                       "be parsed to see their fields)")
    self.file_name = file_name
    self.batch_size = batch_size
    self.variant_type = variant_type
    # The layout, as the original's reader kept it.
    self.lagrangex_header = lagrangex_header
    self.has_sort_id = has_sort_id
    self.kafka_dump_prefix = kafka_dump_prefix
    self.kafka_dump = kafka_dump
    check, sort_id_check, hint = None, None, dump_format.LAYOUT_HINT
    first_record_check = None
    if validate:
      check = dump_format.message_check(RECORD_CLASSES[variant_type],
                                        reject_unknown_fields,
                                        _RECORD_CHECKS.get(variant_type))
      sort_id_check = dump_format.record_like_check(
          RECORD_CLASSES[variant_type])
      first_record_check = _FIRST_RECORD_CHECKS.get(variant_type)
      hint += f" and --variant_type={variant_type} its records"
      if reject_unknown_fields:
        hint += (", or leave out --reject_unknown_fields to accept fields of "
                 "newer schemas")
    self._stream = _open_input(file_name)
    try:
      self.dump_reader = dump_format.DumpReader(
          self._stream,
          dump_format.DumpLayout(lagrangex_header=lagrangex_header,
                                 kafka_dump_prefix=kafka_dump_prefix,
                                 has_sort_id=has_sort_id,
                                 kafka_dump=kafka_dump),
          name=file_name or "<stdin>",
          check=check,
          payload_hint=hint,
          max_record_bytes=max_record_bytes,
          sort_id_check=sort_id_check,
          first_record_check=first_record_check)
    except BaseException:
      self.close()
      raise
    self._batches = 0
    self._max_iter = None
    self._exhausted = False

  @property
  def offset(self) -> int:
    """Bytes of input consumed so far."""
    return self.dump_reader.offset

  def set_max_iter(self, max_records: int) -> None:
    """Stops after a number of batches.

    Args:
      max_records: most batches (warmup records) to yield, in every variant.

    Raises:
      ValueError: max_records below 1.
    """
    if max_records <= 0:
      raise ValueError(f"max_records must be positive, got {max_records}")
    self._max_iter = max_records

  def close(self) -> None:
    """Closes the input (never stdin)."""
    if self._stream is not sys.stdin.buffer:
      self._stream.close()

  def __enter__(self) -> "PBReader":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __iter__(self) -> "PBReader":
    return self

  def __next__(self) -> tensor_pb2.TensorProto:
    """The next batch.

    Returns:
      A 1-D DT_STRING TensorProto of the batch's records.

    Raises:
      StopIteration: at the end of input or after set_max_iter batches.
      DumpFormatError: the dump does not follow the layout.
    """
    if self._exhausted or (self._max_iter is not None and
                           self._batches >= self._max_iter):
      raise StopIteration
    per_batch = 1 if self.variant_type == "example_batch" else self.batch_size
    records = []
    for _ in range(per_batch):
      record = self.dump_reader.read_record()
      if record is None:
        self._exhausted = True
        break
      records.append(record)
    if not records:
      raise StopIteration
    self._batches += 1
    return warmup_io.string_tensor(records)


def gen_prediction_log_from_file(
    file_name: Optional[str] = None,
    batch_size: int = 64,
    lagrangex_header: bool = False,
    kafka_dump_prefix: bool = False,
    has_sort_id: bool = True,
    kafka_dump: bool = False,
    max_records: int = 1000,
    variant_type: str = "instance",
    model_name: Optional[str] = None,
    signature_names: Optional[Union[str, Sequence[str]]] = None,
    validate: bool = True,
    reject_unknown_fields: bool = False,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[prediction_log_pb2.PredictionLog]:
  """Yields one PredictionLog per batch of the dump, up to `max_records`.

  Args:
    file_name: the dump; stdin when None or empty.
    batch_size: records per request for the instance and example variants.
    lagrangex_header: every record starts with an 8-byte lagrangex header.
    kafka_dump_prefix: every record starts with a kafka dump prefix.
    has_sort_id: every record carries a sort id.
    kafka_dump: every record carries an 8-byte kafka dump field.
    max_records: most PredictionLogs to yield (TF Serving allows 1000).
    variant_type: 'instance', 'example' or 'example_batch'.
    model_name: the requests' model_spec.name; None: --model_name (as the
      original, which read only the flag).
    signature_names: signatures to cycle over (list or comma-separated);
      serving_default is appended when missing. None: --signature_names.
    validate: check that every record parses as the variant's proto; fields
      the proto does not define (newer schemas) are allowed.
    reject_unknown_fields: with `validate`, also refuse records in which any
      message has fields the proto does not define.
    max_record_bytes: larger record or sort id sizes are refused before they
      are read.

  Yields:
    PredictionLogs whose PredictRequest feeds one batch to the variant's
    input.

  Raises:
    DumpFormatError: truncated or malformed input, a record that fails
      validation, or an empty input.
    WarmupDataError: max_records above TF Serving's limit or below the
      number of signatures, or fewer requests than signatures (raised
      after the last one is yielded).
    ValueError: a bad batch_size or variant_type, or reject_unknown_fields
      without validate.
  """
  warmup_io.check_record_limit(max_records, f"--max_records={max_records}")
  _check_variant(variant_type)
  input_name = INPUT_NAMES[variant_type]
  if model_name is None:
    model_name = _flag_value("model_name")
  signatures = warmup_io.signature_list(
      _flag_value("signature_names") if signature_names is None else
      signature_names)
  _check_records_reach_signatures(max_records, signatures)
  with PBReader(file_name, batch_size, lagrangex_header, has_sort_id,
                kafka_dump_prefix, kafka_dump, variant_type, validate,
                reject_unknown_fields, max_record_bytes) as reader:
    reader.set_max_iter(max_records)
    count = 0
    for count, batch in enumerate(reader, start=1):
      yield warmup_io.predict_log(model_name,
                                  signatures[(count - 1) % len(signatures)],
                                  {input_name: batch})
    if count == 0:
      raise DumpFormatError(f"{file_name or '<stdin>'}: no records (empty "
                            "input)")
    if count < len(signatures):
      # TF Serving would serve them cold: refused, as random mode does.
      if variant_type == "example_batch":
        remedy = "give a dump of more records"
      else:
        remedy = "lower --batch_size"
      raise warmup_io.WarmupDataError(
          f"{file_name or '<stdin>'}: made {count} request(s) for the "
          f"{len(signatures)} signatures {signatures}, so "
          f"{', '.join(signatures[count:])} would get none; {remedy}, or "
          "give fewer --signature_names")


def _check_records_reach_signatures(max_records: int,
                                    signatures: List[str]) -> None:
  """Refuses, before reading, a `max_records` of fewer requests than
  `signatures` (WarmupDataError): some would get none."""
  if max_records < len(signatures):
    raise warmup_io.WarmupDataError(
        f"--max_records={max_records} is fewer than the {len(signatures)} "
        f"signatures {signatures}: each needs a request; raise "
        "--max_records, or give fewer --signature_names")


def _flag_value(name: str) -> str:
  """The tool's flag's value, or its default where `define_flags` did not
  define it or flags are not parsed (a library call outside the tool; a
  flag of the same name that the importing program defined means
  something of its own)."""
  # By the module object: absl names a flag defined from the script by
  # sys.argv[0], not __name__.
  if (name in FLAGS and FLAGS.is_parsed() and
      FLAGS.find_module_id_defining_flag(name) == id(sys.modules[__name__])):
    return FLAGS[name].value
  return _LIBRARY_DEFAULTS[name]


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


def _rows_of_example_batch(payload: bytes) -> int:
  try:
    return example_pb2.ExampleBatch.FromString(payload).batch_size
  except message.DecodeError:
    return 1


class WarmupSummary:
  """Running counts over written warmup logs, for the closing summary line.

  Samples are rows: an ExampleBatch (`variant_type` "example_batch") counts
  its batch_size (one if it does not parse: --novalidate_records passes
  such records on), any other record one.
  """

  def __init__(self, variant_type: str = "instance"):
    self._batches = variant_type == "example_batch"
    self.records = 0
    self.samples = 0
    self.payload_bytes = 0
    self.per_signature = collections.Counter()

  def add(self, log: prediction_log_pb2.PredictionLog) -> None:
    request = log.predict_log.request
    self.records += 1
    self.per_signature[request.model_spec.signature_name] += 1
    for tensor in request.inputs.values():
      if self._batches:
        self.samples += sum(map(_rows_of_example_batch, tensor.string_val))
      else:
        self.samples += len(tensor.string_val)
      self.payload_bytes += sum(len(v) for v in tensor.string_val)

  def __str__(self) -> str:
    signatures = ", ".join(
        f"{k}={v}" for k, v in sorted(self.per_signature.items()))
    return (f"{self.records} warmup records, {self.samples} samples, "
            f"{self.payload_bytes} payload bytes; per signature: {signatures}")


# How often a long run logs how far it got.
PROGRESS_EVERY_SECS = 30.0


def logged_progress(
    logs: Iterator[prediction_log_pb2.PredictionLog], summary: WarmupSummary,
    output_path: str
) -> Iterator[prediction_log_pb2.PredictionLog]:
  """`logs`, each added to `summary`, logging where the run stands every
  PROGRESS_EVERY_SECS (a dump of millions of records is otherwise silent
  until its closing line)."""
  start = time.monotonic()
  next_line = start + PROGRESS_EVERY_SECS
  for log in logs:
    summary.add(log)
    yield log
    now = time.monotonic()
    if now >= next_line:
      next_line = now + PROGRESS_EVERY_SECS
      logging.info("warmup_data_gen: %d records, %d samples to %s so far "
                   "(%.0f s, %.0f records/s)", summary.records,
                   summary.samples, output_path, now - start,
                   summary.records / max(now - start, 1e-9))


def _comma_list(flag_name: str, convert=str,
                distinct: bool = False) -> Optional[list]:
  """The comma list of --flag_name converted item by item; None when unset.

  Empty items (e.g. a trailing comma) are refused, and with `distinct`
  repeated ones.
  """
  text = FLAGS[flag_name].value
  if not text:
    return None
  items = [item.strip() for item in text.split(",")]
  if not all(items):
    raise app.UsageError(f"--{flag_name}={text}: empty item")
  repeated = sorted({item for item in items if items.count(item) > 1})
  if distinct and repeated:
    raise app.UsageError(f"--{flag_name}={text}: {', '.join(repeated)} "
                         f"given more than once")
  try:
    return [convert(item) for item in items]
  except ValueError as e:
    raise app.UsageError(f"--{flag_name}={text}: {e}") from e


def random_parser_args() -> data_gen_utils.ParserArgs:
  """The random-mode ParserArgs the flags describe."""
  names = _comma_list("sparse_features", distinct=True)
  instance = FLAGS.variant_type == "instance"
  if not names and not (instance and FLAGS.fidv1_features):
    raise app.UsageError(
        "--gen_type=random needs --sparse_features"
        f"{' or --fidv1_features' if instance else ''}")
  if FLAGS.fidv1_features and not instance:
    raise app.UsageError("--fidv1_features is for --variant_type=instance")
  fidv1_slots = _comma_list("fidv1_features", int, distinct=True)
  # The library skips such slots with a warning, as the original; on the
  # command line they are a mistake.
  for slot in fidv1_slots or ():
    if not 0 < slot <= data_gen_utils.MAX_SLOT_V1:
      raise app.UsageError(
          f"--fidv1_features: fid v1 slots are 1..{data_gen_utils.MAX_SLOT_V1}"
          f", got {slot}")
  feature_list = None
  if FLAGS.feature_list:
    path = warmup_io.resolve_user_path(FLAGS.feature_list)
    try:
      feature_list = data_gen_utils.FeatureList.parse(path)
    except tf.errors.OpError as e:
      raise ValueError(f"--feature_list={path}: {e.message}") from e
  return data_gen_utils.ParserArgs(
      model_name=FLAGS.model_name,
      fidv1_features=fidv1_slots,
      fidv2_features=names if instance else None,
      sparse_features=None if instance else names,
      dense_features=_comma_list("dense_features", distinct=True),
      dense_feature_shapes=_comma_list("dense_feature_shapes", int),
      dense_feature_types=_comma_list("dense_feature_types", tf_dtype),
      extra_features=_comma_list("extra_features", distinct=True),
      extra_feature_shapes=_comma_list("extra_feature_shapes", int),
      feature_list=feature_list,
      batch_size=FLAGS.batch_size,
      max_records=FLAGS.max_records,
      signature_name=warmup_io.signature_list(FLAGS.signature_names),
      variant_type=FLAGS.variant_type,
      drop_rate=FLAGS.drop_rate,
      seed=FLAGS.seed)


# Flags that only one --gen_type reads; given to the other, they are refused
# rather than silently ignored.
_RANDOM_ONLY_FLAGS = ("sparse_features", "fidv1_features", "dense_features",
                      "dense_feature_shapes", "dense_feature_types",
                      "extra_features", "extra_feature_shapes", "feature_list",
                      "drop_rate", "seed")
_FILE_ONLY_FLAGS = ("file_name", "lagrangex_header", "kafka_dump_prefix",
                    "has_sort_id", "kafka_dump", "validate_records",
                    "reject_unknown_fields", "max_record_bytes")


def _check_flags_of_gen_type() -> None:
  other = _FILE_ONLY_FLAGS if FLAGS.gen_type == "random" else _RANDOM_ONLY_FLAGS
  given = [f"--{name}" for name in other if FLAGS[name].present]
  if given:
    raise app.UsageError(
        f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply "
        f"to --gen_type={FLAGS.gen_type}")


def main(argv: Optional[Sequence[str]]) -> None:
  """Writes the warmup file the flags describe.

  Args:
    argv: the command line left after flag parsing; only the program name.

  Raises:
    app.UsageError: extra arguments or contradictory flags.
    warmup_io.ToolError: bad input or output, with the reason.
  """
  warmup_io.check_no_arguments(argv)
  _check_flags_of_gen_type()
  if FLAGS.reject_unknown_fields and not FLAGS.validate_records:
    raise app.UsageError("--reject_unknown_fields needs --validate_records")
  try:
    if FLAGS.gen_type == "file":
      warmup_io.check_record_limit(FLAGS.max_records,
                                   f"--max_records={FLAGS.max_records}")
      _check_records_reach_signatures(
          FLAGS.max_records, warmup_io.signature_list(FLAGS.signature_names))
    else:
      warmup_io.check_record_limit(
          FLAGS.max_records // FLAGS.batch_size,
          f"--max_records={FLAGS.max_records} // "
          f"--batch_size={FLAGS.batch_size}")
  except warmup_io.WarmupDataError as e:
    raise app.UsageError(str(e)) from None
  output_path = warmup_io.resolve_user_path(FLAGS.output_path)
  if FLAGS.gen_type == "file" and warmup_io.is_input_file(
      output_path, warmup_io.resolve_user_path(FLAGS.file_name)):
    raise app.UsageError(
        f"--output_path {output_path} is the dump read "
        f"({'--file_name' if FLAGS.file_name else 'stdin'}): the warmup "
        "file would replace it")
  summary = WarmupSummary(FLAGS.variant_type)
  try:
    if FLAGS.gen_type == "random":
      generated = data_gen_utils.gen_prediction_log(random_parser_args())
    else:
      generated = gen_prediction_log_from_file(
          warmup_io.resolve_user_path(FLAGS.file_name), FLAGS.batch_size,
          FLAGS.lagrangex_header, FLAGS.kafka_dump_prefix, FLAGS.has_sort_id,
          FLAGS.kafka_dump, FLAGS.max_records, FLAGS.variant_type,
          FLAGS.model_name, FLAGS.signature_names, FLAGS.validate_records,
          FLAGS.reject_unknown_fields, FLAGS.max_record_bytes)
    warmup_io.write_prediction_logs(
        output_path, logged_progress(generated, summary, output_path),
        too_large_remedy="lower --batch_size")
  except (warmup_io.WarmupDataError, ValueError, OSError,
          tf.errors.OpError) as e:
    raise warmup_io.ToolError(f"warmup_data_gen: error: {e}") from e
  print(f"wrote {output_path}: {summary}")


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  define_flags()
  warmup_io.run_tool("warmup_data_gen", main)
