"""Checks a TF Serving warmup file, replays it against a SavedModel, installs it.

TF Serving runs `<saved_model>/assets.extra/tf_serving_warmup_requests`
before it serves a model, and fails the model load when that file is not a
TFRecord, a record is not a PredictionLog, a log type is one it does not run,
the file has more than 1000 records, or a request fails against the model.
This tool finds those failures before a deployment does:

* `--warmup_file=F`: F must be a TFRecord file (length and data CRCs intact,
  nothing after the last record), every record a PredictionLog of a type TF
  Serving runs (predict, classify, regress, multi_inference; not
  session_run), at most 1000 records, and every input tensor of a predict
  request one that TF Serving parses (below). Prints, per signature, the
  records, log types, input names with dtypes, and batch sizes.
* `--saved_model_dir=D`: also checks every request against the signature
  defs of D's `serve` meta graph, as TF Serving loads it (the signature
  exists, input names, dtypes and shapes match, output filters exist, and
  with --enable_signature_method_name_check its method fits the log
  type), then replays each request through its signature
  `--replay_iterations` times (TF Serving's num_request_iterations) and
  reports per signature the latency of the first request and of the later
  ones.
* `--install`: when every check passed, copies F to
  `D/assets.extra/tf_serving_warmup_requests`, atomically.

Request tensors are checked as TF Serving parses them, with
`Tensor::FromProto` (tensorflow/core/framework/tensor.cc; a failure fails the
request with "tensor parsing error: NAME", and so the model load), by
arithmetic on the TensorProto alone, so that a tensor claiming 10^16 elements
costs nothing to check:

* the dtype is one TF holds: not DT_INVALID, not a _REF type, not a number
  TF does not define;
* the shape has at most 254 dimensions, each >= 0 (-1, unknown, is for
  signatures, not values), and at most 2^63 - 1 elements. TF ignores
  `unknown_rank` and uses the dimensions (none: a scalar), and so does the
  checker;
* a non-empty `tensor_content` (which then wins over the typed field) has
  exactly elements x dtype size bytes; bool bytes are 0 or 1; a string
  tensor's decodes as TF's string list (one varint32 length per element, then
  exactly that many bytes);
* otherwise the typed field (float_val, int_val, half_val for half and
  bfloat16, scomplex_val pairs, float8_val, ...) may hold any number of
  values: TF fills elements past the last value with it (zeros when there is
  none) and ignores extra values, so neither is a problem;
* an empty tensor's content is not read at all;
* a tensor that takes more than `--max_tensor_bytes` once parsed (a few
  values stretched over a huge shape) is a problem too: TF Serving would
  allocate that on every warmup run, and the checker never materializes it.

Resource and variant tensors, whose elements are protos decoded by TF's
registries, are parsed by TF itself once the arithmetic has bounded their
size.

Exits 0 when every check passes; otherwise 1, with one line per problem
naming the file, the record index and the reason (a request tensor's also
names its input).

    bazel run //monolith/native_training/model_export:warmup_data_check -- \\
        --warmup_file=/tmp/warmup --saved_model_dir=/models/ranker/1 --install
"""

import collections
import dataclasses
import itertools
import os
import re
import statistics
import time
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
from google.protobuf import message
from google.protobuf import unknown_fields
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.python.saved_model import loader_impl
from tensorflow.python.util import deprecation
from tensorflow_serving.apis import input_pb2
from tensorflow_serving.apis import prediction_log_pb2

from idl.matrix.proto import example_pb2
from monolith.native_training import utils
from monolith.native_training.model_export import warmup_io
# Registers monolith's ops (hash tables), so replay loads models serving them.
from monolith.native_training.runtime.ops import gen_monolith_ops  # pylint: disable=unused-import

FLAGS = flags.FLAGS

# The most bytes a request tensor may take once parsed (--max_tensor_bytes).
DEFAULT_MAX_TENSOR_BYTES = 1 << 30


def define_flags() -> None:
  """Defines the command line's flags (by the binary only, so that the
  checker imports into programs with flags of the same names)."""
  flags.DEFINE_string("warmup_file", None,
                      "The warmup file (TFRecord of PredictionLog) to check.")
  flags.DEFINE_string(
      "saved_model_dir", None,
      "A SavedModel (a version folder) to check and replay the requests "
      "against.")
  flags.DEFINE_bool(
      "install", False,
      "After every check passed, copy the warmup file to "
      "<saved_model_dir>/assets.extra/tf_serving_warmup_requests.")
  flags.DEFINE_bool(
      "replay", True,
      "With --saved_model_dir, run every request through the model.")
  flags.DEFINE_integer(
      "replay_iterations", 1,
      "Runs per request when replaying (TF Serving's num_request_iterations).",
      lower_bound=1)
  flags.DEFINE_bool(
      "enable_signature_method_name_check", False,
      "Check signatures' method names as TF Serving does under its flag of "
      "the same name (off by default there too): a classify or regress "
      "request then needs a signature of that method, and a predict request "
      "one of the predict, classify or regress methods.")
  flags.DEFINE_integer(
      "max_tensor_bytes", DEFAULT_MAX_TENSOR_BYTES,
      "A request tensor that takes more bytes than this once parsed is a "
      "problem; the checker never materializes it.", lower_bound=0)


# The log types TF Serving's warmup runs; others fail the model load.
SUPPORTED_LOG_TYPES = ("predict_log", "classify_log", "regress_log",
                       "multi_inference_log")
SERVING_TAGS = frozenset({tf.saved_model.SERVING})
_METHOD_KINDS = {
    tf.saved_model.CLASSIFY_METHOD_NAME: "classify",
    tf.saved_model.REGRESS_METHOD_NAME: "regress",
}
_KIND_METHODS = {kind: method for method, kind in _METHOD_KINDS.items()}
# The methods of signatures a predict request may run (TF Serving's
# VerifySignature, under --enable_signature_method_name_check).
_PREDICTABLE_METHODS = (tf.saved_model.PREDICT_METHOD_NAME,
                        tf.saved_model.CLASSIFY_METHOD_NAME,
                        tf.saved_model.REGRESS_METHOD_NAME)
# Classify and regress requests carry tf.Examples, listed under this name.
_EXAMPLES_INPUT = "<tf.Example>"
# The input of classify and regress signatures, as TF Serving requires.
_SIGNATURE_EXAMPLES_INPUT = "inputs"
_INTERNAL_SIGNATURE_PREFIX = "__saved_model_"
# Lines of TF op errors that say where, not what.
_OP_ERROR_NOISE = ("Graph execution error", "Detected at node",
                   "<stack traces unavailable>", "[[", "File ")
_MAX_PROBLEMS_SHOWN = 20


@dataclasses.dataclass(frozen=True)
class _Encoding:
  """How Tensor::FromProto reads one dtype from a TensorProto.

  Attributes:
    field: the typed repeated field it reads when tensor_content is empty
      (tensor.cc's ProtoHelper<T>).
    per_element: values of `field` per element (2 for complex numbers).
    content_bytes: bytes per element of tensor_content (sizeof(T)); None for
      the types whose tensor_content is a string list (string, resource,
      variant).
    memory_bytes: bytes per element of the parsed tensor (sizeof(T)); a lower
      bound for resource and variant.
  """
  field: str
  per_element: int = 1
  content_bytes: Optional[int] = None
  memory_bytes: int = 0


def _pod(field: str, size: int, per_element: int = 1) -> _Encoding:
  """A plain-old-data dtype: `size` bytes per element, content and parsed."""
  return _Encoding(field, per_element, content_bytes=size, memory_bytes=size)


# Every dtype Tensor::FromProto accepts (TF 2.21: all but DT_INVALID, the
# _REF types and numbers DataType does not define).
_ENCODINGS = {
    types_pb2.DT_FLOAT: _pod("float_val", 4),
    types_pb2.DT_DOUBLE: _pod("double_val", 8),
    types_pb2.DT_INT32: _pod("int_val", 4),
    types_pb2.DT_UINT8: _pod("int_val", 1),
    types_pb2.DT_INT16: _pod("int_val", 2),
    types_pb2.DT_INT8: _pod("int_val", 1),
    types_pb2.DT_STRING: _Encoding("string_val", memory_bytes=24),  # tstring
    types_pb2.DT_COMPLEX64: _pod("scomplex_val", 8, per_element=2),
    types_pb2.DT_INT64: _pod("int64_val", 8),
    types_pb2.DT_BOOL: _pod("bool_val", 1),
    types_pb2.DT_QINT8: _pod("int_val", 1),
    types_pb2.DT_QUINT8: _pod("int_val", 1),
    types_pb2.DT_QINT32: _pod("int_val", 4),
    types_pb2.DT_BFLOAT16: _pod("half_val", 2),
    types_pb2.DT_QINT16: _pod("int_val", 2),
    types_pb2.DT_QUINT16: _pod("int_val", 2),
    types_pb2.DT_UINT16: _pod("int_val", 2),
    types_pb2.DT_COMPLEX128: _pod("dcomplex_val", 16, per_element=2),
    types_pb2.DT_HALF: _pod("half_val", 2),
    types_pb2.DT_RESOURCE: _Encoding("resource_handle_val", memory_bytes=64),
    types_pb2.DT_VARIANT: _Encoding("variant_val", memory_bytes=64),
    types_pb2.DT_UINT32: _pod("uint32_val", 4),
    types_pb2.DT_UINT64: _pod("uint64_val", 8),
    types_pb2.DT_FLOAT8_E5M2: _pod("float8_val", 1),
    types_pb2.DT_FLOAT8_E4M3FN: _pod("float8_val", 1),
    types_pb2.DT_FLOAT8_E4M3FNUZ: _pod("float8_val", 1),
    types_pb2.DT_FLOAT8_E4M3B11FNUZ: _pod("float8_val", 1),
    types_pb2.DT_FLOAT8_E5M2FNUZ: _pod("float8_val", 1),
    types_pb2.DT_INT4: _pod("int_val", 1),
    types_pb2.DT_UINT4: _pod("int_val", 1),
    types_pb2.DT_INT2: _pod("int_val", 1),
    types_pb2.DT_UINT2: _pod("int_val", 1),
    types_pb2.DT_FLOAT4_E2M1FN: _pod("float8_val", 1),
}
# TensorShape's limits.
_MAX_DIMS = 254
_MAX_ELEMENTS = (1 << 63) - 1


@dataclasses.dataclass
class Problem:
  """Why the warmup file would fail; `record` is None for the whole file."""
  record: Optional[int]
  reason: str

  def __str__(self) -> str:
    return self.reason if self.record is None else (
        f"record {self.record}: {self.reason}")


@dataclasses.dataclass
class SignatureSummary:
  """What the warmup file sends to one signature, and how replaying it went."""
  records: int = 0
  log_types: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  inputs: Dict[str, str] = dataclasses.field(default_factory=dict)
  batch_sizes: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  first_ms: Optional[float] = None
  later_ms: List[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class CheckReport:
  warmup_file: str
  records: int
  signatures: Dict[str, SignatureSummary]
  problems: List[Problem]
  replayed: bool = False

  @property
  def ok(self) -> bool:
    return not self.problems


@dataclasses.dataclass
class _Call:
  """One signature run of a warmup record (multi_inference makes several)."""
  record: int
  log_type: str
  signature: str
  kind: str  # predict, classify or regress
  tensors: Mapping[str, tensor_pb2.TensorProto] = dataclasses.field(
      default_factory=dict)
  examples: Optional[input_pb2.Input] = None
  output_filter: Sequence[str] = ()


def _dtype_name(dtype: int) -> str:
  if not dtype:
    return "invalid"
  try:
    return tf.as_dtype(dtype).name
  except TypeError:
    return f"unknown dtype {dtype}"


def _dims(tensor: tensor_pb2.TensorProto) -> List[int]:
  """The tensor's shape as TF reads it: its dims; unknown_rank is ignored."""
  return [d.size for d in tensor.tensor_shape.dim]


def _shape_text(dims: Sequence[int]) -> str:
  return "[" + ", ".join(str(d) for d in dims) + "]"


def tensor_problem(tensor: tensor_pb2.TensorProto,
                   max_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Optional[str]:
  """Why TF Serving cannot parse `tensor` as a request input, or None.

  Mirrors Tensor::FromProto by arithmetic on the proto (see the module
  docstring), so its cost does not depend on the shape the tensor claims;
  only resource and variant tensors, once their parsed size is known to be at
  most `max_bytes`, are parsed by TF.

  Args:
    tensor: a request input.
    max_bytes: the most bytes the parsed tensor may take.

  Returns:
    None when TF Serving parses the tensor and it takes at most `max_bytes`
    bytes parsed; otherwise the reason, a sentence fragment.
  """
  rejected = ("; TF Serving fails the request on it (tensor parsing error), "
              "and with it the model load")
  encoding = _ENCODINGS.get(tensor.dtype)
  if encoding is None:
    if not tensor.dtype:
      why = "its dtype is not set (DT_INVALID)"
    elif tensor.dtype in types_pb2.DataType.values():
      why = (f"its dtype {types_pb2.DataType.Name(tensor.dtype)} is a "
             "reference type, which no tensor value has")
    else:
      why = (f"its dtype {tensor.dtype} is not a TensorFlow DataType "
             "number")
    return why + rejected
  dims = _dims(tensor)
  if len(dims) > _MAX_DIMS:
    return (f"its shape has {len(dims)} dimensions, more than the "
            f"{_MAX_DIMS} TF allows" + rejected)
  num_elements = 1
  for i, size in enumerate(dims):
    if size < 0:
      return (f"dimension {i} of its shape {_shape_text(dims)} is {size}; a "
              "tensor's dimensions must be >= 0 (-1, unknown, is only for "
              "signatures)" + rejected)
    num_elements *= size
    if num_elements > _MAX_ELEMENTS:
      return (f"its shape {_shape_text(dims)} has more than 2^63 - 1 "
              "elements" + rejected)
  if not num_elements:
    return None  # TF reads no content for an empty tensor.
  dtype = _dtype_name(tensor.dtype)
  content = tensor.tensor_content
  if content:
    why = _content_problem(content, num_elements, dtype, dims, encoding)
    if why:
      return why + rejected
    parsed_bytes = num_elements * encoding.memory_bytes
    if encoding.content_bytes is None:
      parsed_bytes += len(content)  # at least the strings' bytes
    source = f"{len(content)} bytes of tensor_content"
  else:
    values = getattr(tensor, encoding.field)
    parsed_bytes = num_elements * encoding.memory_bytes
    if tensor.dtype == types_pb2.DT_STRING and values:
      # The values, the last one repeated over the elements past them.
      used = min(len(values), num_elements)
      parsed_bytes += sum(len(v) for v in values[:used]) + (
          num_elements - used) * len(values[used - 1])
    source = (f"{len(values) // encoding.per_element} element(s) of "
              f"{encoding.field}")
  if parsed_bytes > max_bytes:
    return (f"it takes {parsed_bytes} bytes once parsed ({num_elements} "
            f"{dtype} elements of shape {_shape_text(dims)}, from {source}), "
            f"more than --max_tensor_bytes={max_bytes}; TF Serving would "
            "allocate that on every warmup run, the checker does not")
  if tensor.dtype in (types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT):
    try:
      tf.io.parse_tensor(tensor.SerializeToString(), tensor.dtype)
    except tf.errors.OpError:
      return f"TF cannot parse its {dtype} elements" + rejected
  return None


def _content_problem(content: bytes, num_elements: int, dtype: str,
                     dims: Sequence[int],
                     encoding: _Encoding) -> Optional[str]:
  """Why Tensor::FromProto rejects a non-empty tensor_content, or None."""
  if encoding.content_bytes is not None:
    expected = num_elements * encoding.content_bytes
    if len(content) != expected:
      return (f"its tensor_content has {len(content)} bytes, but shape "
              f"{_shape_text(dims)} of {dtype} takes {num_elements} x "
              f"{encoding.content_bytes} = {expected} bytes")
    if encoding.field == "bool_val":
      bad = content.translate(None, b"\x00\x01")
      if bad:
        return (f"its tensor_content has byte {bad[0]:#04x} at offset "
                f"{content.index(bad[:1])}; a bool is 0 or 1")
    return None
  return _string_list_problem(content, num_elements)


def _string_list_problem(content: bytes, count: int) -> Optional[str]:
  """Why TF's DecodeStringList fails on `content` for `count` items, or None.

  The encoding: one varint32 length per item, then the items' bytes, exactly.
  Every length takes a byte, so this reads at most len(content) lengths.
  """
  position = 0
  total = 0
  for i in range(count):
    length = 0
    for shift in range(0, 35, 7):
      if position == len(content):
        return (f"its tensor_content ends inside the length of item {i} of "
                f"{count}; TF reads it as {count} varint32 lengths, then the "
                "items' bytes")
      byte = content[position]
      position += 1
      length |= (byte & 0x7F) << shift
      if byte < 0x80:
        break
    else:
      return (f"its tensor_content's length of item {i} is not a varint32 "
              "(over 5 bytes)")
    total += length & 0xFFFFFFFF
  if total != len(content) - position:
    return (f"its tensor_content's {count} item lengths add up to {total} "
            f"bytes, but {len(content) - position} bytes follow them; TF "
            f"reads it as {count} varint32 lengths, then exactly that many "
            "bytes")
  return None


def _batch_size(name: str, tensor: tensor_pb2.TensorProto) -> int:
  """The rows a request input holds: its first dimension, or for one
  serialized ExampleBatch (the example_batch variant's input) its
  batch_size."""
  if (name == warmup_io.INPUT_NAMES["example_batch"] and
      tensor.dtype == types_pb2.DT_STRING and len(tensor.string_val) == 1):
    try:
      rows = example_pb2.ExampleBatch.FromString(
          tensor.string_val[0]).batch_size
    except message.DecodeError:
      rows = 0
    if rows >= 1:
      return rows
  dims = tensor.tensor_shape.dim
  return dims[0].size if dims else 1


def _serialized_examples(examples: input_pb2.Input) -> List[bytes]:
  """The examples' serialized tf.Examples, as TF Serving feeds them."""
  kind = examples.WhichOneof("kind")
  if kind == "example_list":
    return [e.SerializeToString() for e in examples.example_list.examples]
  if kind == "example_list_with_context":
    with_context = examples.example_list_with_context
    # TF Serving concatenates the context and each example: proto merging.
    context = with_context.context.SerializeToString()
    return [context + e.SerializeToString() for e in with_context.examples]
  return []


def _crc32c_table() -> List[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    table.append(crc)
  return table


_CRC32C_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC32C of `data` (record headers: pure Python)."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record_running_past_the_end(
    path: str, size: int,
    records_read: Optional[int]) -> Optional[Tuple[List[int], Problem]]:
  """Finds the first record whose length (with a valid length CRC) runs past
  the end of `path` (`size` bytes). TF's reader is not safe against such a
  length (one near 2^40 crashes the process), so it never sees these files.
  The walk stops where TF's reader reports a problem itself, and past the
  `records_read` records TF's reader will be asked for (None: all).

  Returns:
    None, or the byte offsets of the records before that length, and the
    problem it is.
  """
  offsets = []  # of the records before
  offset = 0
  with tf.io.gfile.GFile(path, "rb") as f:
    while records_read is None or len(offsets) <= records_read:
      header = f.read(12)
      if len(header) < 12 or _masked_crc32c(header[:8]) != int.from_bytes(
          header[8:], "little"):
        return None
      length = int.from_bytes(header[:8], "little")
      if length + 16 > size - offset:
        break
      offsets.append(offset)
      offset += length + 16
      f.seek(offset)
    else:
      return None
    problem = Problem(
        len(offsets), f"its length at byte offset {offset} is {length} "
        f"bytes, but the file has {size - offset - 12} bytes after its "
        "header: it was cut short or is not a TFRecord file; TF Serving's "
        "record reader fails on it (DataLoss: a truncated record), and "
        "with it the model load")
  return offsets, problem


def read_warmup_file(
    path: str,
    stop_past_limit: bool = True
) -> Tuple[List[Optional[prediction_log_pb2.PredictionLog]], List[Problem]]:
  """Reads every record of `path` as a PredictionLog.

  Args:
    path: the warmup file.
    stop_past_limit: whether to stop reading at record MAX_WARMUP_RECORDS
      (a problem either way); False reads the rest too.

  Returns:
    One entry per record read, None for a record with a problem, and the
    problems found: framing errors (which end the reading), records that do
    not parse or whose log type TF Serving does not run, more than
    MAX_WARMUP_RECORDS records, or no records at all.

  Raises:
    WarmupDataError: `path` does not exist.
  """
  problems = []
  logs = list(iter_warmup_file(path, problems, stop_past_limit))
  return logs, problems


def iter_warmup_file(
    path: str,
    problems: List[Problem],
    stop_past_limit: bool = True
) -> Iterator[Optional[prediction_log_pb2.PredictionLog]]:
  """`read_warmup_file`'s records one at a time (of a file with a length
  past its end, after a walk over the record headers before it), appending
  the problems to `problems` as they are found.

  Raises:
    WarmupDataError: `path` does not exist (when iteration begins).
  """
  if not tf.io.gfile.exists(path):
    raise warmup_io.WarmupDataError(f"{path}: no such file")
  size = tf.io.gfile.stat(path).length
  count = 0
  past_the_end = _record_running_past_the_end(
      path, size, warmup_io.MAX_WARMUP_RECORDS if stop_past_limit else None)
  if past_the_end:
    offsets, framing = past_the_end
    # Only the records before that length, one at a time: TF's reader
    # checks their data CRCs (in C++: they may be hundreds of MB) and is
    # stopped before the bad length.
    with deprecation.silence():
      reader = tf.compat.v1.io.tf_record_iterator(path)
    try:
      for raw in itertools.islice(reader, len(offsets)):
        if count == warmup_io.MAX_WARMUP_RECORDS:
          problems.append(_too_many_records())
        log = _parsed_log(count, raw, problems)
        count += 1
        yield log
    except tf.errors.DataLossError:
      # Where TF Serving stops.
      problems.append(Problem(
          count, f"not a valid TFRecord at byte offset {offsets[count]} (its "
          "data CRC does not match); the file is damaged; TF Serving fails "
          "the model load with DataLoss"))
      return
    problems.append(framing)
    return
  offset = 0  # bytes of the complete records read so far
  # The v1 iterator reports framing errors plainly ("corrupted record at 12")
  # where tf.data wraps them in op names.
  with deprecation.silence():
    records = tf.compat.v1.io.tf_record_iterator(path)
  try:
    for raw in records:
      if count == warmup_io.MAX_WARMUP_RECORDS:
        problems.append(_too_many_records())
        if stop_past_limit:
          return
      offset += len(raw) + 16  # length, length CRC, data, data CRC
      log = _parsed_log(count, raw, problems)
      count += 1
      yield log
  except tf.errors.DataLossError as e:
    problems.append(Problem(count, _framing_reason(path, e.message, offset)))
    return
  if offset != size:
    problems.append(
        Problem(count, f"the file ends in a partial record ({size - offset}"
                f" bytes at byte offset {offset}): it was cut short; TF "
                "Serving's warmup reads a partial header as the end of the "
                "file and stops there without an error"))
  elif not count:
    problems.append(Problem(None, "no records: TF Serving would load the "
                            "model without warming it up"))


def _too_many_records() -> Problem:
  return Problem(
      warmup_io.MAX_WARMUP_RECORDS, "the file has more than "
      f"{warmup_io.MAX_WARMUP_RECORDS} records; TF Serving fails to load a "
      "model whose warmup file has more")


def _framing_reason(path: str, error: str, offset: int) -> str:
  with tf.io.gfile.GFile(path, "rb") as f:
    compressed = f.read(2) == warmup_io.GZIP_MAGIC
  hint = ("it looks gzip-compressed, but TF Serving reads uncompressed "
          "TFRecords" if compressed else
          "the file is damaged or is not a TFRecord file")
  return (f"not a valid TFRecord at byte offset {offset} ({error}); {hint}; "
          "TF Serving fails the model load with DataLoss")


def _parse_log(index: int,
               raw: bytes) -> Tuple[prediction_log_pb2.PredictionLog,
                                    Optional[Problem]]:
  try:
    log = prediction_log_pb2.PredictionLog.FromString(raw)
  except message.DecodeError as e:
    return None, Problem(
        index, f"does not parse as tensorflow.serving.PredictionLog: {e}")
  log_type = log.WhichOneof("log_type")
  supported = ", ".join(SUPPORTED_LOG_TYPES)
  if log_type is None:
    extra = len(unknown_fields.UnknownFieldSet(log))
    hint = (f"; it has {extra} fields PredictionLog does not define (was "
            "another message written instead?)" if extra else "")
    return None, Problem(
        index, f"the PredictionLog sets no log type, so TF Serving skips it "
        f"and warms nothing up{hint}")
  if log_type == "session_run_log":
    return None, Problem(
        index, "session_run_log: TF Serving fails the model load on these "
        f"(Unimplemented); use one of {supported}")
  if log_type not in SUPPORTED_LOG_TYPES:
    return None, Problem(
        index, f"{log_type}: TF Serving's warmup skips these and warms "
        f"nothing up; use one of {supported}")
  if log_type == "multi_inference_log":
    tasks = log.multi_inference_log.request.tasks
    if not tasks:
      return None, Problem(
          index, "multi_inference_log with no tasks: TF Serving refuses the "
          "request (InvalidArgument), and with it the model load")
    model_names = [task.model_spec.name for task in tasks]
    if not all(model_names):
      return None, Problem(
          index, f"multi_inference_log task {model_names.index('')} has no "
          "model_spec.name: TF Serving refuses the request (InvalidArgument: "
          "a ModelSpec with an empty model name), and with it the model load")
    if len(set(model_names)) > 1:
      return None, Problem(
          index, f"multi_inference_log tasks name models "
          f"{sorted(set(model_names))}: TF Serving refuses the request "
          "(InvalidArgument: all tasks must name the same model), and with it "
          "the model load")
    signatures = [
        task.model_spec.signature_name or warmup_io.DEFAULT_SIGNATURE
        for task in tasks
    ]
    twice = sorted(
        s for s, n in collections.Counter(signatures).items() if n > 1)
    if twice:
      return None, Problem(
          index, f"multi_inference_log runs signature {twice[0]} in two "
          "tasks: TF Serving refuses the request (InvalidArgument: "
          "duplicate evaluation of a signature), and with it the model load")
    methods = [task.method_name for task in tasks]
    unsupported = [m for m in methods if m not in _METHOD_KINDS]
    if unsupported:
      return None, Problem(
          index, f"multi_inference_log task {methods.index(unsupported[0])} "
          f"has method {unsupported[0]!r}: TF Serving runs "
          f"{' and '.join(sorted(_METHOD_KINDS))} tasks only "
          "(Unimplemented: unsupported signature method_name), and fails "
          "the model load")
  if log_type != "predict_log" and not _serialized_examples(
      getattr(log, log_type).request.input):
    return None, Problem(
        index, f"{log_type} has no examples: TF Serving refuses the request "
        "(InvalidArgument: Input is empty), and with it the model load")
  return log, None


def _parsed_log(index: int, raw: bytes, problems: List[Problem]
               ) -> Optional[prediction_log_pb2.PredictionLog]:
  """`_parse_log`'s log (None where it is refused), its problem appended
  to `problems`."""
  log, problem = _parse_log(index, raw)
  if problem:
    problems.append(problem)
  return log


def _calls(index: int, log: prediction_log_pb2.PredictionLog) -> List[_Call]:
  log_type = log.WhichOneof("log_type")
  request = getattr(log, log_type).request

  def signature(model_spec) -> str:
    return model_spec.signature_name or warmup_io.DEFAULT_SIGNATURE

  if log_type == "predict_log":
    return [
        _Call(index, log_type, signature(request.model_spec), "predict",
              tensors=request.inputs, output_filter=request.output_filter)
    ]
  if log_type in ("classify_log", "regress_log"):
    return [
        _Call(index, log_type, signature(request.model_spec),
              log_type[:-len("_log")], examples=request.input)
    ]
  return [
      _Call(index, log_type, signature(task.model_spec),
            _METHOD_KINDS[task.method_name], examples=request.input)
      for task in request.tasks
  ]


def summarize(calls: Sequence[_Call]) -> Dict[str, SignatureSummary]:
  summaries = collections.defaultdict(SignatureSummary)
  for call in calls:
    summary = summaries[call.signature]
    summary.records += 1
    summary.log_types[call.log_type] += 1
    if call.kind == "predict":
      for name, tensor in call.tensors.items():
        summary.inputs[name] = _dtype_name(tensor.dtype)
      if call.tensors:
        summary.batch_sizes[_batch_size(*next(iter(
            call.tensors.items())))] += 1
    else:
      summary.inputs[_EXAMPLES_INPUT] = "string"
      summary.batch_sizes[len(_serialized_examples(call.examples))] += 1
  return dict(sorted(summaries.items()))


def _version_folders(base: str) -> List[str]:
  """The numbered subfolders of `base` holding a SavedModel (TF Serving's
  layout of a model's versions), in version order."""
  try:
    names = utils.listdir(base)
  except tf.errors.OpError:
    return []
  versions = [n.rstrip("/") for n in names if n.rstrip("/").isdigit()]
  return sorted((v for v in versions
                 if warmup_io.holds_saved_model(os.path.join(base, v))),
                key=int)


def load_signature_defs(
    saved_model_dir: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
  """The signature defs of the `serve` meta graph TF Serving loads."""
  try:
    saved_model = loader_impl.parse_saved_model(saved_model_dir)
  # OSError: unparsable saved_model.pb; ValueError (UnicodeDecodeError) and
  # RecursionError: a saved_model.pbtxt not UTF-8 or nested too deep;
  # OpError: one that cannot be read (e.g. a folder).
  except (OSError, ValueError, RecursionError, tf.errors.OpError) as e:
    hint = ""
    versions = _version_folders(saved_model_dir)
    if versions:
      hint = (f"; it holds the model's versions: pass one, e.g. "
              f"{os.path.join(saved_model_dir, versions[-1])}")
    raise warmup_io.WarmupDataError(
        f"{saved_model_dir}: not a SavedModel: {e}{hint}") from e
  for meta_graph in saved_model.meta_graphs:
    if frozenset(meta_graph.meta_info_def.tags) == SERVING_TAGS:
      # TF2 exports keep their init op as a signature; nobody serves it.
      return {
          name: signature_def
          for name, signature_def in meta_graph.signature_def.items()
          if not name.startswith(_INTERNAL_SIGNATURE_PREFIX)
      }
  tags = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
  raise warmup_io.WarmupDataError(
      f"{saved_model_dir}: no meta graph tagged exactly 'serve', which TF "
      f"Serving loads (tag sets: {tags})")


def _examples_signature_problems(kind: str,
                                 signature_def: meta_graph_pb2.SignatureDef,
                                 where: str) -> List[str]:
  """Why TF Serving cannot run a classify or regress request on a signature.

  Its PreProcessClassification / PreProcessRegression refuse the signature
  and PostProcess* the outputs' dtypes, failing the warmup and the load.
  """
  reasons = []
  inputs = signature_def.inputs
  if len(inputs) != 1 or _SIGNATURE_EXAMPLES_INPUT not in inputs:
    reasons.append(f"{where} must have one input, named "
                   f"{_SIGNATURE_EXAMPLES_INPUT!r}, for {kind} requests (it has "
                   f"{sorted(inputs)})")
  elif inputs[_SIGNATURE_EXAMPLES_INPUT].dtype != tf.string.as_datatype_enum:
    reasons.append(f"{where}'s input {_SIGNATURE_EXAMPLES_INPUT!r} must be a string "
                   "tensor (serialized tf.Examples), not "
                   f"{_dtype_name(inputs[_SIGNATURE_EXAMPLES_INPUT].dtype)}")
  outputs = signature_def.outputs
  wanted_dtypes = {
      "classify": {"classes": tf.string, "scores": tf.float32},
      "regress": {"outputs": tf.float32},
  }[kind]
  if kind == "classify":
    if not 1 <= len(outputs) <= 2 or not set(wanted_dtypes) & set(outputs):
      reasons.append(f"{where} must have one or two outputs, among them "
                     f"'classes' or 'scores', for classify requests (it has "
                     f"{sorted(outputs)})")
  elif list(outputs) != ["outputs"]:
    reasons.append(f"{where} must have one output, named 'outputs', for "
                   f"regress requests (it has {sorted(outputs)})")
  for name, dtype in wanted_dtypes.items():
    if name in outputs and outputs[name].dtype != dtype.as_datatype_enum:
      reasons.append(f"{where}'s output {name!r} must be {dtype.name} for "
                     f"{kind} requests, not "
                     f"{_dtype_name(outputs[name].dtype)}")
  return reasons


def _check_call(call: _Call,
                signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
                saved_model_dir: str,
                method_name_check: bool = False) -> List[str]:
  """Why TF Serving would reject `call` against these signatures
  (`method_name_check`: as under its --enable_signature_method_name_check).
  """
  signature_def = signature_defs.get(call.signature)
  if signature_def is None:
    return [
        f"signature {call.signature!r} is not in {saved_model_dir} "
        f"(signatures: {', '.join(sorted(signature_defs))})"
    ]
  where = f"signature {call.signature!r}"
  reasons = []
  if call.kind != "predict":
    wanted = _KIND_METHODS[call.kind]
    if method_name_check and signature_def.method_name != wanted:
      return [f"a {call.kind} request needs a signature of method "
              f"{wanted}, but {where} has {signature_def.method_name} "
              "(--enable_signature_method_name_check)"]
    reasons.extend(_examples_signature_problems(call.kind, signature_def,
                                                where))
    return reasons
  if method_name_check and (signature_def.method_name
                            not in _PREDICTABLE_METHODS):
    return [f"a predict request needs a signature of method "
            f"{' or '.join(_PREDICTABLE_METHODS)}, but {where} has "
            f"{signature_def.method_name!r} "
            "(--enable_signature_method_name_check)"]
  expected = signature_def.inputs
  for name in call.tensors:
    if name not in expected:
      reasons.append(f"input {name!r} is not an input of {where} (inputs: "
                     f"{', '.join(sorted(expected))})")
  for name, info in sorted(expected.items()):
    if name in call.tensors:
      tensor, what = call.tensors[name], f"input {name!r}"
    elif name in signature_def.defaults:
      # Left out, it takes the signature's default (a TF2 function's
      # default argument), which TF Serving feeds as it is.
      tensor = signature_def.defaults[name]
      what = f"the default of input {name!r}"
      reason = tensor_problem(tensor)
      if reason:
        reasons.append(f"{what}: {reason}")
        continue
    else:
      reasons.append(f"{where} needs input {name!r}, which the request lacks")
      continue
    if tensor.dtype != info.dtype:
      reasons.append(f"{what} is {_dtype_name(tensor.dtype)}, but {where} "
                     f"takes {_dtype_name(info.dtype)}")
    request_shape = tf.TensorShape(_dims(tensor))
    signature_shape = _signature_shape(info.tensor_shape)
    if not signature_shape.is_compatible_with(request_shape):
      reasons.append(f"{what} has shape {request_shape}, but {where} takes "
                     f"{signature_shape}")
  named = set()
  for name in call.output_filter:
    if name not in signature_def.outputs:
      reasons.append(f"output_filter {name!r} is not an output of {where} "
                     f"(outputs: {', '.join(sorted(signature_def.outputs))})")
    elif name in named:
      reasons.append(f"output_filter names {name!r} twice: TF Serving "
                     "refuses the request (duplicate output tensor alias)")
    named.add(name)
  return reasons


def _signature_shape(shape) -> tf.TensorShape:
  """A signature's TensorShapeProto as a TensorShape, dims below -1 (which
  no graph holds; a TF1 process's TensorShape refuses them) unknown."""
  if shape.unknown_rank:
    return tf.TensorShape(None)
  return tf.TensorShape([d.size if d.size >= 0 else None for d in shape.dim])


def _multi_inference_problems(
    calls: Sequence[_Call],
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
) -> List[Problem]:
  """Multi-inference requests whose tasks' signatures read different input
  tensors: TF Serving feeds one tensor of examples to every task and
  refuses such a request (InvalidArgument), failing the model load."""
  inputs_by_record = collections.defaultdict(dict)
  for call in calls:
    if call.log_type != "multi_inference_log":
      continue
    signature_def = signature_defs.get(call.signature)
    if signature_def is None or (_SIGNATURE_EXAMPLES_INPUT
                                 not in signature_def.inputs):
      continue  # _check_call reports it
    inputs_by_record[call.record][call.signature] = (
        signature_def.inputs[_SIGNATURE_EXAMPLES_INPUT].name)
  problems = []
  for record, inputs in sorted(inputs_by_record.items()):
    if len(set(inputs.values())) > 1:
      read = ", ".join(f"{s!r} reads {t}" for s, t in sorted(inputs.items()))
      problems.append(Problem(
          record, f"multi_inference_log tasks' signatures read different "
          f"input tensors ({read}): TF Serving refuses the request "
          "(InvalidArgument: the input tensor must be the same for all "
          "signatures), and with it the model load"))
  return problems


class _TensorParser:
  """TF's own parse of request tensors (Tensor::FromProto, as TF
  Serving), by ops added to the replay's graph and run in its session:
  eager execution may be off in the calling process (a TF1 chief)."""

  def __init__(self, sess: tf.compat.v1.Session):
    self._sess = sess
    with sess.graph.as_default():
      self._serialized = tf.compat.v1.placeholder(
          tf.string, [], name="warmup_check_request_tensor")
    self._parse_ops = {}  # dtype enum -> its parse op's output

  def parse(self, tensor: tensor_pb2.TensorProto) -> object:
    if tensor.dtype not in self._parse_ops:
      with self._sess.graph.as_default():
        self._parse_ops[tensor.dtype] = tf.io.parse_tensor(
            self._serialized, tf.as_dtype(tensor.dtype))
    return self._sess.run(self._parse_ops[tensor.dtype],
                          {self._serialized: tensor.SerializeToString()})


def _feeds(call: _Call, signature_def: meta_graph_pb2.SignatureDef,
           parser: _TensorParser) -> Dict[str, object]:
  """The call's inputs, by the graph tensors the signature names."""
  if call.kind == "predict":
    # Every input given or defaulted, each of a size tensor_problem bounded
    # (_check_call): an input left out takes the signature's default.
    return {
        info.name: parser.parse(call.tensors[name] if name in call.tensors
                                else signature_def.defaults[name])
        for name, info in signature_def.inputs.items()
    }
  (name,) = signature_def.inputs
  return {
      signature_def.inputs[name].name:
          np.array(_serialized_examples(call.examples), dtype=object)
  }


def _fetches(call: _Call,
             signature_def: meta_graph_pb2.SignatureDef) -> Dict[str, str]:
  """The tensors TF Serving computes for the call, by output name: a
  predict request's output_filter (every output without one), a classify
  request's classes and scores, a regress request's outputs."""
  outputs = signature_def.outputs
  if call.kind == "predict":
    names = list(call.output_filter) or list(outputs)
  elif call.kind == "classify":
    names = [name for name in ("classes", "scores") if name in outputs]
  else:
    names = [name for name in ("outputs",) if name in outputs]
  return {name: outputs[name].name for name in names}


def _output_problem(call: _Call, outputs: Mapping[str, np.ndarray]) -> str:
  """Why TF Serving would refuse what a classify or regress call's
  signature computed (its PostProcessClassificationResult /
  PostProcessRegressionResult: one row per example; classes and scores of
  one shape [batch, classes]; regression outputs [batch] or [batch, 1]),
  or ""."""
  if call.kind == "predict":
    return ""
  batch = len(_serialized_examples(call.examples))
  shapes = {name: tuple(np.shape(value)) for name, value in outputs.items()}
  if call.kind == "regress":
    shape = shapes.get("outputs")
    if shape is not None and shape not in ((batch,), (batch, 1)):
      return (f"its regression outputs have shape {list(shape)}, but TF "
              f"Serving takes [{batch}] or [{batch}, 1] for {batch} "
              "examples and fails the model load otherwise")
    return ""
  for name, shape in sorted(shapes.items()):
    if len(shape) != 2 or shape[0] != batch:
      return (f"its {name} have shape {list(shape)}, but TF Serving takes "
              f"[{batch}, classes] for {batch} examples and fails the model "
              "load otherwise")
  if len(set(shapes.values())) > 1:
    return (f"its classes and scores have shapes {sorted(shapes.items())}: "
            "TF Serving takes one shape for both and fails the model load "
            "otherwise")
  return ""


def replay(calls: Sequence[_Call], saved_model_dir: str,
           signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
           summaries: Mapping[str, SignatureSummary],
           iterations: int = 1) -> List[Problem]:
  """Runs every call through the loaded model, as TF Serving's warmup does.

  The model is loaded as TF Serving loads it, into a graph and session of
  its own (its main op run), and the session is closed after: its tables
  and other resources go with it (an eager `tf.saved_model.load` kept them
  for the life of the process, a whole model's tables per check). Records
  each signature's first and later latencies in `summaries`.
  """
  if iterations < 1:
    raise ValueError(f"replay iterations must be at least 1, got {iterations}")
  graph = tf.Graph()
  sess = tf.compat.v1.Session(graph=graph)
  try:
    try:
      with graph.as_default():
        tf.compat.v1.saved_model.loader.load(sess, sorted(SERVING_TAGS),
                                             saved_model_dir)
    # TypeError: a saver_def naming tensors the graph lacks;
    # message.DecodeError: a collection's def that does not parse.
    except (tf.errors.OpError, ValueError, KeyError, OSError, RuntimeError,
            TypeError, message.DecodeError) as e:
      raise warmup_io.WarmupDataError(
          f"{saved_model_dir}: cannot load the SavedModel to replay the "
          f"warmup requests ({type(e).__name__}: {e}); --noreplay checks "
          "without it") from e
    parser = _TensorParser(sess)
    problems = []
    for call in calls:
      signature_def = signature_defs[call.signature]
      summary = summaries[call.signature]
      fetches = _fetches(call, signature_def)
      try:
        feeds = _feeds(call, signature_def, parser)
        for iteration in range(iterations):
          start = time.perf_counter()
          outputs = sess.run(fetches, feeds)
          elapsed_ms = (time.perf_counter() - start) * 1e3
          if summary.first_ms is None:
            summary.first_ms = elapsed_ms
          else:
            summary.later_ms.append(elapsed_ms)
          reason = _output_problem(call, outputs) if iteration == 0 else ""
          if reason:
            problems.append(_replay_problem(call, reason))
            break
      except tf.errors.OpError as e:
        problems.append(_replay_problem(call, _op_error_summary(e.message)))
      except (ValueError, TypeError) as e:
        problems.append(_replay_problem(call, str(e)))
      except KeyError as e:  # TF's own, of a dtype numpy has no type for
        problems.append(_replay_problem(
            call, f"a tensor's dtype (enum {e}) has no numpy type: it "
            "cannot be fed or fetched (a resource handle?)"))
  finally:
    sess.close()
  return problems


def _replay_problem(call: _Call, reason: str) -> Problem:
  return Problem(call.record, f"replaying it through signature "
                 f"{call.signature!r} failed: {reason}")


def _op_error_summary(text: str) -> str:
  """The op and the cause of a TF op error, without its location noise."""
  node = None
  causes = []
  for line in (l.strip() for l in text.splitlines()):
    # A session names the node "[[{{node NAME}}]]" after the cause.
    named = re.search(r"\{\{node ([^}]+)\}\}", line)
    if named and node is None:
      node = named.group(1)
    if line.startswith("Detected at node"):
      node = line.split()[3]
    elif line and not line.startswith(_OP_ERROR_NOISE):
      causes.append(line)
  cause = " ".join(causes[:2]) or text.strip()
  return f"{node}: {cause}" if node else cause


def _request_tensor_problems(
    calls: Sequence[_Call],
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> List[Problem]:
  """The input tensors of `calls` that TF Serving would not parse."""
  problems = []
  for call in calls:
    for name, tensor in sorted(call.tensors.items()):
      reason = tensor_problem(tensor, max_tensor_bytes)
      if reason:
        problems.append(Problem(call.record, f"input {name!r}: {reason}"))
  return problems


def check_warmup_file(
    warmup_file: str,
    saved_model_dir: Optional[str] = None,
    replay_requests: bool = True,
    replay_iterations: int = 1,
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
    method_name_check: bool = False) -> CheckReport:
  """Checks `warmup_file`, and with `saved_model_dir` its requests and replay.

  Model checks run only on a readable file whose request tensors all parse,
  replay only when the model checks pass. `method_name_check` checks
  signatures' method names as TF Serving's
  --enable_signature_method_name_check (off there by default).

  Raises:
    WarmupDataError: the file or the SavedModel does not exist.
  """
  logs, problems = read_warmup_file(warmup_file)
  calls = [
      call for i, log in enumerate(logs) if log is not None
      for call in _calls(i, log)
  ]
  problems.extend(_request_tensor_problems(calls, max_tensor_bytes))
  # In record order; stable, so a record's problems keep theirs.
  problems.sort(key=lambda p: -1 if p.record is None else p.record)
  report = CheckReport(warmup_file, len(logs), summarize(calls), problems)
  if problems or not saved_model_dir:
    return report
  signature_defs = load_signature_defs(saved_model_dir)
  for call in calls:
    for reason in _check_call(call, signature_defs, saved_model_dir,
                              method_name_check):
      problems.append(Problem(call.record, reason))
  problems.extend(_multi_inference_problems(calls, signature_defs))
  problems.sort(key=lambda p: -1 if p.record is None else p.record)
  if not problems and replay_requests:
    problems.extend(
        replay(calls, saved_model_dir, signature_defs, report.signatures,
               replay_iterations))
    report.replayed = True
  return report


def install_warmup_file(warmup_file: str, saved_model_dir: str) -> str:
  """Copies the warmup file into the SavedModel atomically; returns its path.

  Raises:
    WarmupDataError: `saved_model_dir` holds no SavedModel (a model's base
      folder: TF Serving never reads its assets.extra).
  """
  if not warmup_io.holds_saved_model(saved_model_dir):
    raise warmup_io.WarmupDataError(
        f"{saved_model_dir} holds no SavedModel (saved_model.pb): give the "
        "version folder to install the warmup file into")
  destination = os.path.join(saved_model_dir, warmup_io.WARMUP_FILE_PATH)
  with warmup_io.atomic_output(destination) as tmp_path:
    tf.io.gfile.copy(warmup_file, tmp_path, overwrite=True)
  return destination


class _NotInstalled(Exception):
  """Aborts an install whose copy failed the check."""


def check_and_install(
    warmup_file: str,
    saved_model_dir: str,
    replay_requests: bool = True,
    replay_iterations: int = 1,
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
    method_name_check: bool = False
) -> Tuple[CheckReport, Optional[str]]:
  """Copies `warmup_file` into the SavedModel under a temporary name, checks
  that copy (as `check_warmup_file`) and installs it only if it passes, so
  the file installed is the file checked.

  Returns:
    The report (naming `warmup_file`), and the installed path or None.
  """
  # Nothing is written into a folder that is not a SavedModel (a mistyped
  # version folder would become one TF Serving cannot load).
  load_signature_defs(saved_model_dir)
  if not tf.io.gfile.exists(warmup_file):
    raise warmup_io.WarmupDataError(f"{warmup_file}: no such file")
  destination = os.path.join(saved_model_dir, warmup_io.WARMUP_FILE_PATH)
  try:
    with warmup_io.atomic_output(destination) as tmp_path:
      tf.io.gfile.copy(warmup_file, tmp_path, overwrite=True)
      report = dataclasses.replace(
          check_warmup_file(tmp_path, saved_model_dir, replay_requests,
                            replay_iterations, max_tensor_bytes,
                            method_name_check),
          warmup_file=warmup_file)
      if not report.ok:
        raise _NotInstalled()
  except _NotInstalled:
    return report, None
  return report, destination


def _latency(summary: SignatureSummary) -> Tuple[str, str]:
  first = "-" if summary.first_ms is None else f"{summary.first_ms:.2f}"
  if not summary.later_ms:
    return first, "-"
  later = summary.later_ms
  return first, (f"{statistics.median(later):.2f} p50, {max(later):.2f} max "
                 f"({len(later)} runs)")


def format_report(report: CheckReport) -> str:
  """A readable per-signature summary of the report."""
  status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
  lines = [f"{report.warmup_file}: {report.records} warmup records, {status}"]
  header = ["signature", "records", "log types", "inputs", "batch sizes"]
  if report.replayed:
    header += ["first ms", "later ms"]
  rows = [header]
  for name, summary in report.signatures.items():
    row = [
        name,
        str(summary.records),
        ", ".join(f"{k}={v}" for k, v in sorted(summary.log_types.items())),
        ", ".join(f"{k}:{v}" for k, v in sorted(summary.inputs.items())),
        ", ".join(str(b) for b in sorted(summary.batch_sizes)),
    ]
    if report.replayed:
      row += list(_latency(summary))
    rows.append(row)
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  for row in rows:
    lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
  return "\n".join(lines)


def _problem_lines(report: CheckReport) -> Iterator[str]:
  for problem in report.problems[:_MAX_PROBLEMS_SHOWN]:
    yield f"{report.warmup_file}: {problem}"
  hidden = len(report.problems) - _MAX_PROBLEMS_SHOWN
  if hidden > 0:
    yield f"{report.warmup_file}: ... and {hidden} more problem(s)"


def main(argv: Optional[Sequence[str]]) -> None:
  warmup_io.check_no_arguments(argv)
  if not FLAGS.warmup_file:
    raise app.UsageError("--warmup_file is required")
  if not FLAGS.saved_model_dir:
    for name in ("install", "replay", "replay_iterations",
                 "enable_signature_method_name_check"):
      if FLAGS[name].present:
        raise app.UsageError(f"--{name} needs --saved_model_dir (it acts on "
                             "the model; without one only the file is "
                             "checked)")
  warmup_file = warmup_io.resolve_user_path(FLAGS.warmup_file)
  saved_model_dir = warmup_io.resolve_user_path(FLAGS.saved_model_dir)
  installed = None
  try:
    if FLAGS.install:
      report, installed = check_and_install(
          warmup_file, saved_model_dir, FLAGS.replay, FLAGS.replay_iterations,
          FLAGS.max_tensor_bytes, FLAGS.enable_signature_method_name_check)
    else:
      report = check_warmup_file(warmup_file, saved_model_dir, FLAGS.replay,
                                 FLAGS.replay_iterations,
                                 FLAGS.max_tensor_bytes,
                                 FLAGS.enable_signature_method_name_check)
  except (warmup_io.WarmupDataError, ValueError, OSError,
          tf.errors.OpError) as e:
    # 2, not the 1 of a file with problems: the check did not run.
    raise warmup_io.ToolError(f"warmup_data_check: error: {e}",
                              status=2) from e
  print(format_report(report))
  if not report.ok:
    raise warmup_io.ToolError("\n".join(_problem_lines(report)))
  if installed:
    print(f"installed {installed}")


if __name__ == "__main__":
  define_flags()
  logging.set_verbosity(logging.WARNING)
  warmup_io.run_tool("warmup_data_check", main)
