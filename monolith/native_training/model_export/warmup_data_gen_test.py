"""Tests for warmup_data_gen: every dump layout, random mode, the CLI, and bad
input."""

import dataclasses
import fcntl
import itertools
import os
import pty
import re
import signal
import subprocess
import sys
import time
from unittest import mock

from absl import app
from absl import flags
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from idl.matrix.proto import example_pb2
from monolith.native_training import test_utils
from monolith.native_training import utils
from monolith.native_training.model_export import dump_format
from monolith.native_training.model_export import sample_records
from monolith.native_training.model_export import warmup_data_gen
from monolith.native_training.model_export import warmup_io

# As the binary does: these tests parse its command line in this process.
warmup_data_gen.define_flags()

VARIANTS = ("instance", "example", "example_batch")
# Random mode's feature list.
CONF = os.path.join(os.path.dirname(__file__), "..", "data", "testdata",
                    "feature_list.conf")
# Every header combination the reader knows; lagrangex excludes the others.
LAYOUTS = [dump_format.DumpLayout(lagrangex_header=True)] + [
    dump_format.DumpLayout(kafka_dump_prefix=p, has_sort_id=s, kafka_dump=k)
    for p, s, k in itertools.product((False, True), repeat=3)
]


def _layout_id(layout):
  return "+".join(k for k, v in vars(layout).items() if v) or "bare"


def _write_dump(path, payloads, layout, sort_id_in_prefix=False):
  with open(path, "wb") as f:
    for i, payload in enumerate(payloads):
      f.write(
          dump_format.encode_record(payload,
                                    layout,
                                    sort_id=b"sid-%d" % i,
                                    sort_id_in_prefix=sort_id_in_prefix,
                                    source_name="topic_a"))
  return path


def _gen(path, layout, variant, batch_size, **kwargs):
  return list(
      warmup_data_gen.gen_prediction_log_from_file(
          path,
          batch_size,
          variant_type=variant,
          **dataclasses.asdict(layout),
          **kwargs))


def _batches(logs, input_name):
  return [list(log.predict_log.request.inputs[input_name].string_val)
          for log in logs]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=_layout_id)
def test_every_layout_and_variant_round_trips(tmp_path, layout, variant):
  payloads = list(sample_records.serialized_records(variant, 11, seed=1))
  path = _write_dump(str(tmp_path / "dump"), payloads, layout)
  logs = _gen(path, layout, variant, batch_size=4)
  per_log = 1 if variant == "example_batch" else 4
  expected = [payloads[i:i + per_log] for i in range(0, 11, per_log)]
  # The final partial batch (3 records) is kept, not dropped.
  assert _batches(logs, warmup_data_gen.INPUT_NAMES[variant]) == expected
  for log in logs:
    request = log.predict_log.request
    assert request.model_spec.name == "default"
    assert request.model_spec.signature_name == "serving_default"
    assert list(request.inputs) == [warmup_data_gen.INPUT_NAMES[variant]]
    tensor = request.inputs[warmup_data_gen.INPUT_NAMES[variant]]
    assert tensor == tf.make_tensor_proto(list(tensor.string_val))


@pytest.mark.parametrize("kafka_dump", (False, True))
def test_kafka_prefix_carrying_the_sort_id_size(tmp_path, kafka_dump):
  layout = dump_format.DumpLayout(kafka_dump_prefix=True, has_sort_id=True,
                                  kafka_dump=kafka_dump)
  payloads = list(sample_records.serialized_records("example", 5))
  path = _write_dump(str(tmp_path / "dump"), payloads, layout,
                     sort_id_in_prefix=True)
  logs = _gen(path, layout, "example", batch_size=2)
  assert _batches(logs, "examples") == [payloads[0:2], payloads[2:4],
                                        payloads[4:]]


def test_records_larger_than_and_spanning_read_chunks(tmp_path):
  layout = dump_format.DumpLayout(kafka_dump_prefix=True, has_sort_id=True)
  sizes = [(1 << 20) - 20, 3 << 20, 17, (1 << 20) + 1, 0, 5]
  payloads = [bytes([i]) * n for i, n in enumerate(sizes)]
  path = _write_dump(str(tmp_path / "dump"), payloads, layout)
  logs = _gen(path, layout, "example", batch_size=4, validate=False)
  assert _batches(logs, "examples") == [payloads[:4], payloads[4:]]


def test_lagrangex_header_is_java_hash_of_source():
  # "hello".hashCode() == 99162322 == 0x05E918D2 in Java.
  assert dump_format.java_string_hash("hello") == 99162322
  assert dump_format.lagrangex_header("hello") == bytes(
      [0, 0xD2, 0x18, 0xE9, 0, 0, 0, 0])
  assert dump_format.lagrangex_header("") == bytes(8)


def test_signatures_cycle_and_always_include_serving_default(tmp_path):
  layout = dump_format.DumpLayout(has_sort_id=True)
  payloads = list(sample_records.serialized_records("instance", 7))
  path = _write_dump(str(tmp_path / "dump"), payloads, layout)
  logs = _gen(path, layout, "instance", batch_size=1, model_name="ranker",
              signature_names=" a, b ,a,")
  assert [l.predict_log.request.model_spec.signature_name for l in logs] == [
      "a", "b", "serving_default", "a", "b", "serving_default", "a"]
  assert {l.predict_log.request.model_spec.name for l in logs} == {"ranker"}


@pytest.mark.parametrize("variant,batch_size,max_records,remedy", [
    ("instance", 4, 1000, "lower --batch_size"),
    ("example_batch", 1, 1000, "give a dump of more records"),
])
def test_a_signature_the_requests_would_not_reach_is_refused(
    tmp_path, variant, batch_size, max_records, remedy):
  # 7 records make 2 requests of 4 (or 7 of example batches, or 2 at
  # --max_records=2): b or serving_default would be served cold.
  layout = dump_format.DumpLayout(has_sort_id=True)
  payloads = list(sample_records.serialized_records(variant, 7))
  path = _write_dump(str(tmp_path / "dump"), payloads, layout)
  names = "a,b" if variant == "instance" else "a,b,c,d,e,f,g"
  made = 7 if variant == "example_batch" else 2
  with pytest.raises(warmup_io.WarmupDataError,
                     match=re.escape(
                         f"{path}: made {made} request(s) for the ") +
                     f".* would get none; {remedy}, or give fewer "
                     "--signature_names"):
    _gen(path, layout, variant, batch_size=batch_size,
         max_records=max_records, signature_names=names)
  assert len(_gen(path, layout, variant, batch_size=batch_size,
                  max_records=max_records, signature_names="a")) == made


def test_max_records_below_the_signatures_is_refused_before_reading(
    tmp_path):
  with pytest.raises(warmup_io.WarmupDataError, match=re.escape(
      "--max_records=2 is fewer than the 3 signatures ['a', 'b', "
      "'serving_default']: each needs a request; raise --max_records, or "
      "give fewer --signature_names")):
    _gen(str(tmp_path / "not_read"), dump_format.DumpLayout(), "instance",
         batch_size=1, max_records=2, signature_names="a,b")
  # On the command line, a usage error.
  with pytest.raises(app.UsageError, match=re.escape(
      "--max_records=2 is fewer than the 3 signatures")):
    _main_in_process([f"--file_name={tmp_path / 'not_read'}",
                      f"--output_path={tmp_path / 'out'}", "--max_records=2",
                      "--signature_names=a,b"])


def test_an_output_that_would_replace_the_dump_or_the_model_is_refused(
    tmp_path):
  layout = dump_format.DumpLayout()
  payloads = list(sample_records.serialized_records("instance", 3))
  dump = _write_dump(str(tmp_path / "dump"), payloads, layout)
  before = (tmp_path / "dump").read_bytes()
  # Another spelling, a file:// URI, a link (the guard compared spellings
  # only, and a URI's path kept "file:"), the file piped to stdin.
  os.link(dump, tmp_path / "linked")
  for file_name, output_path in ((dump, f"{tmp_path}/./dump"),
                                 (f"file://{dump}", dump),
                                 (dump, tmp_path / "linked")):
    with pytest.raises(app.UsageError, match=re.escape(
        "is the dump read (--file_name): the warmup file would replace it")):
      _main_in_process(
          [f"--file_name={file_name}", f"--output_path={output_path}"])
  with open(dump, "rb") as piped, mock.patch.object(sys, "stdin", piped):
    with pytest.raises(app.UsageError, match=re.escape(
        f"--output_path {dump} is the dump read (stdin)")):
      _main_in_process([f"--output_path={dump}"])
  version = tmp_path / "models" / "7"
  (version / "variables").mkdir(parents=True)
  (version / "saved_model.pb").write_bytes(b"graph")
  # assets/ (the model's vocabularies) is easily taken for assets.extra/.
  for out in (version / "saved_model.pb", version / "fingerprint.pb",
              version / "variables" / "variables.index",
              version / "assets" / "tf_serving_warmup_requests"):
    with pytest.raises(warmup_io.ToolError, match="is a SavedModel's own "
                       "file: the warmup file would replace it"):
      _main_in_process([f"--file_name={dump}", f"--output_path={out}"])
  assert (tmp_path / "dump").read_bytes() == before
  assert (version / "saved_model.pb").read_bytes() == b"graph"
  assert sorted(os.listdir(version)) == ["saved_model.pb", "variables"]
  assert not os.listdir(version / "variables")


def test_imports_into_a_program_with_flags_of_the_same_names():
  # A training or export program's own --batch_size, --model_name or
  # --seed: the import defines none of the tool's flags.
  program = "\n".join([
      "from absl import flags",
      "flags.DEFINE_integer('batch_size', 32, '')",
      "flags.DEFINE_string('model_name', 'mine', '')",
      "flags.DEFINE_integer('seed', 1, '')",
      "from monolith.native_training.model_export import warmup_data_gen",
      "flags.FLAGS(['program', '--model_name=ranker_v2'])",
      # The program's --model_name is its own, not the requests' name.
      "print('imported', warmup_data_gen._flag_value('model_name'))",
  ])
  child = subprocess.run([sys.executable, "-c", program],
                         env=utils.python_child_env(),
                         capture_output=True, text=True, timeout=120)
  assert child.returncode == 0, child.stderr
  assert "imported default" in child.stdout, child.stdout


def test_the_library_call_follows_the_flags_as_the_originals(tmp_path):
  # The original's function read only --model_name and --signature_names.
  layout = dump_format.DumpLayout(has_sort_id=True)
  payloads = list(sample_records.serialized_records("instance", 3))
  path = _write_dump(str(tmp_path / "dump"), payloads, layout)

  def spec(logs):
    return [(l.predict_log.request.model_spec.name,
             l.predict_log.request.model_spec.signature_name) for l in logs]

  # Flags not parsed: their defaults.
  flags.FLAGS.unparse_flags()
  assert spec(_gen(path, layout, "instance", batch_size=1)) == [
      ("default", "serving_default")] * 3
  flags.FLAGS(["warmup_data_gen", "--model_name=ranker",
               "--signature_names=ctr"])
  try:
    assert spec(_gen(path, layout, "instance", batch_size=1)) == [
        ("ranker", "ctr"), ("ranker", "serving_default"), ("ranker", "ctr")]
    # Arguments win over the flags.
    assert spec(_gen(path, layout, "instance", batch_size=1, model_name="m",
                     signature_names="s")) == [
        ("m", "s"), ("m", "serving_default"), ("m", "s")]
  finally:
    flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("variant", VARIANTS)
def test_max_records_counts_warmup_records_in_every_variant(tmp_path, variant):
  layout = dump_format.DumpLayout()
  payloads = list(sample_records.serialized_records(variant, 40))
  path = _write_dump(str(tmp_path / "dump"), payloads, layout)
  logs = _gen(path, layout, variant, batch_size=3, max_records=5)
  assert len(logs) == 5


def test_max_records_above_tf_serving_limit_is_refused(tmp_path):
  path = _write_dump(str(tmp_path / "dump"),
                     sample_records.serialized_records("example", 2),
                     dump_format.DumpLayout())
  with pytest.raises(warmup_io.WarmupDataError, match="more than 1000"):
    _gen(path, dump_format.DumpLayout(), "example", 1, max_records=1001)


def test_empty_input_is_an_error(tmp_path):
  path = tmp_path / "empty"
  path.write_bytes(b"")
  with pytest.raises(warmup_data_gen.DumpFormatError, match="no records"):
    _gen(str(path), dump_format.DumpLayout(), "example", 4)


@pytest.mark.parametrize(
    "cut,what,offset",
    [
        (-1, "record payload", None),  # payload one byte short
        (5, "header or size", None),  # first header only 5 bytes
        (12, "sort id", 8),  # sort id cut after 4 of its 8 bytes
    ])
def test_truncation_names_the_byte_offset(tmp_path, cut, what, offset):
  layout = dump_format.DumpLayout(has_sort_id=True)
  record = dump_format.encode_record(b"x" * 20, layout, sort_id=b"sort-id!")
  data = record + record
  path = tmp_path / "dump"
  path.write_bytes(data[:cut])
  with pytest.raises(warmup_data_gen.DumpFormatError) as e:
    _gen(str(path), layout, "example", 4, validate=False)
  message = str(e.value)
  assert str(path) in message and f"truncated {what}" in message
  if cut == -1:
    # The second record's payload starts after its sort id and size.
    offset = len(record) + 8 + 8 + 8
  elif cut == 5:
    offset = 0
  assert f"at byte offset {offset}" in message


def test_wrong_layout_flags_give_a_hint(tmp_path):
  # A dump with sort ids read as if it had none: the sort id text is taken as
  # a size, far beyond any proto.
  layout = dump_format.DumpLayout(has_sort_id=True)
  payloads = list(sample_records.serialized_records("example", 3))
  path = _write_dump(str(tmp_path / "dump"), payloads, layout)
  with open(path, "r+b") as f:
    f.seek(8)
    f.write(b"\xff" * 8)  # first sort id bytes -> absurd size
  with pytest.raises(warmup_data_gen.DumpFormatError,
                     match=r"exceeds 268435456 bytes \(--max_record_bytes\); "
                     "check that --lagrangex_header"):
    _gen(path, dump_format.DumpLayout(has_sort_id=True, kafka_dump=True),
         "example", 4)


def test_records_that_are_not_the_variant_proto_are_caught(tmp_path):
  # A sort-id dump read without --has_sort_id: sizes stay plausible, so only
  # parsing the payloads reveals the wrong flags.
  payloads = list(sample_records.serialized_records("example", 4))
  path = _write_dump(str(tmp_path / "dump"), payloads,
                     dump_format.DumpLayout(has_sort_id=True))
  bare = dump_format.DumpLayout()
  with pytest.raises(warmup_data_gen.DumpFormatError,
                     match=r"record 0 \(starting at byte offset 0\) is not a "
                     r"valid monolith.io.proto.Example: .*--variant_type=example"):
    _gen(path, bare, "example", 2)
  # Instances are not Examples either.
  inst = _write_dump(str(tmp_path / "inst"),
                     sample_records.serialized_records("instance", 2), bare)
  with pytest.raises(warmup_data_gen.DumpFormatError, match="record 0"):
    _gen(inst, bare, "example", 2)
  # Without validation the garbage goes through unchecked.
  assert _gen(path, bare, "example", 2, validate=False)


def test_example_batches_read_as_examples_are_refused(tmp_path):
  # An ExampleBatch parses as an Example: without this check each batch
  # would go out as one row of a request of --batch_size rows.
  bare = dump_format.DumpLayout()
  path = _write_dump(str(tmp_path / "batches"),
                     sample_records.serialized_records("example_batch", 4),
                     bare)
  with pytest.raises(warmup_data_gen.DumpFormatError,
                     match=r"record 0 \(starting at byte offset 0\) is an "
                     r"monolith.io.proto.ExampleBatch of \d+ rows, not an "
                     "Example: pass --variant_type=example_batch"):
    _gen(path, bare, "example", 2)
  assert len(_gen(path, bare, "example_batch", 2)) == 4
  # And Examples read as ExampleBatches parse to batches of no rows.
  path = _write_dump(str(tmp_path / "examples"),
                     sample_records.serialized_records("example", 4), bare)
  with pytest.raises(warmup_data_gen.DumpFormatError,
                     match=r"record 0 .* is an monolith.io.proto.ExampleBatch "
                     r"of batch_size 0: no rows to request .* pass "
                     "--variant_type=example"):
    _gen(path, bare, "example_batch", 2)
  # So is a batch of no rows past the first record: it would be a request
  # of none.
  batches = list(sample_records.serialized_records("example_batch", 3))
  empty = example_pb2.ExampleBatch.FromString(batches[2])
  empty.batch_size = 0
  path = _write_dump(str(tmp_path / "empty_batch"),
                     batches[:2] + [empty.SerializeToString()], bare)
  with pytest.raises(warmup_data_gen.DumpFormatError,
                     match=r"record 2 \(starting at byte offset \d+\) is an "
                     r"monolith.io.proto.ExampleBatch of batch_size 0"):
    _gen(path, bare, "example_batch", 2)
  # Examples of a newer schema (unknown fields) are still Examples.
  path = _write_dump(str(tmp_path / "newer"),
                     _newer_schema_records("example", 4), bare)
  assert len(_gen(path, bare, "example", 2)) == 2


def test_unparsable_example_batches_count_one_sample_each():
  summary = warmup_data_gen.WarmupSummary("example_batch")
  log = prediction_log_pb2.PredictionLog()
  inputs = log.predict_log.request.inputs["example_batch"]
  inputs.string_val.extend([
      next(sample_records.serialized_records("example_batch", 1)),
      b"\xff\xff"
  ])
  summary.add(log)
  batch = example_pb2.ExampleBatch.FromString(inputs.string_val[0])
  assert summary.samples == batch.batch_size + 1


def test_newer_schema_dumps_without_sort_ids_read_with_them_are_refused(
    tmp_path):
  path = _write_dump(str(tmp_path / "dump"),
                     _newer_schema_records("example", 4),
                     dump_format.DumpLayout())
  with pytest.raises(warmup_data_gen.DumpFormatError,
                     match=r"the sort id of record 0 .* parse as a record: the "
                     r"dump has no sort ids \(pass --nohas_sort_id\)"):
    _gen(path, dump_format.DumpLayout(has_sort_id=True), "example", 2)


def test_a_reader_refusing_its_arguments_closes_the_input(tmp_path):
  path = _write_dump(str(tmp_path / "dump"),
                     sample_records.serialized_records("example", 2),
                     dump_format.DumpLayout())
  opened = []
  real_open = warmup_data_gen._open_input

  def tracked(name):
    opened.append(real_open(name))
    return opened[-1]

  warmup_data_gen._open_input, saved = tracked, warmup_data_gen._open_input
  try:
    with pytest.raises(ValueError, match="max_record_bytes must be in"):
      warmup_data_gen.PBReader(path, 1, max_record_bytes=2**31)
  finally:
    warmup_data_gen._open_input = saved
  assert len(opened) == 1 and opened[0].closed


def test_reader_validates_arguments():
  with pytest.raises(ValueError, match="batch_size must be positive"):
    warmup_data_gen.PBReader("unused", 0)
  with pytest.raises(ValueError, match="variant_type must be one of"):
    warmup_data_gen.PBReader("unused", 1, variant_type="row")


def test_pb_reader_keeps_its_layout_as_the_originals(tmp_path):
  path = tmp_path / "dump"
  _write_dump(path, sample_records.serialized_records("instance", 1),
              dump_format.DumpLayout(kafka_dump_prefix=True,
                                     has_sort_id=True))
  with warmup_data_gen.PBReader(str(path), 1, has_sort_id=True,
                                kafka_dump_prefix=True) as reader:
    assert (reader.lagrangex_header, reader.has_sort_id,
            reader.kafka_dump_prefix, reader.kafka_dump) == (False, True,
                                                             True, False)


def test_reject_unknown_fields_needs_validation():
  with pytest.raises(ValueError, match="reject_unknown_fields needs validate"):
    warmup_data_gen.PBReader("unused", 1, validate=False,
                             reject_unknown_fields=True)


# --- Dumps written by newer schemas: fields the protos do not define. -----

UNKNOWN = sample_records.UNKNOWN_FIELD_NUMBER


def _newer_schema_records(variant, count):
  """Records with an unknown field on top and, where the variant has a
  line_id, another one inside it."""
  inside = sample_records.line_id_field_number(variant)
  for payload in sample_records.serialized_records(variant, count, seed=5):
    payload = sample_records.with_unknown_field(payload)
    if inside:
      payload = sample_records.with_unknown_field(
          payload, field_number=UNKNOWN + 1, inside=inside)
    yield payload


@pytest.mark.parametrize("variant", VARIANTS)
def test_unknown_fields_pass_validation_unless_rejected(tmp_path, variant):
  layout = dump_format.DumpLayout(kafka_dump_prefix=True, has_sort_id=True)
  payloads = list(_newer_schema_records(variant, 5))
  path = _write_dump(str(tmp_path / "dump"), payloads, layout)
  per_log = 1 if variant == "example_batch" else 2
  expected = [payloads[i:i + per_log] for i in range(0, 5, per_log)]
  # Validated by default, and passed on byte for byte.
  logs = _gen(path, layout, variant, batch_size=2)
  assert _batches(logs, warmup_data_gen.INPUT_NAMES[variant]) == expected
  name = warmup_data_gen.RECORD_CLASSES[variant].DESCRIPTOR.full_name
  with pytest.raises(
      warmup_data_gen.DumpFormatError,
      match=rf"dump: record 0 \(starting at byte offset 0\) is not a valid "
      rf"{name}: it has field number {UNKNOWN}, which the message does not "
      rf"define; check that --lagrangex_header.* and --variant_type={variant} "
      r"its records, or leave out --reject_unknown_fields"):
    _gen(path, layout, variant, 2, reject_unknown_fields=True)


def test_strict_validation_sees_nested_unknown_fields(tmp_path):
  layout = dump_format.DumpLayout(has_sort_id=True)
  payloads = list(sample_records.serialized_records("instance", 6))
  payloads[4] = sample_records.with_unknown_field(
      payloads[4], inside=sample_records.line_id_field_number("instance"))
  path = _write_dump(str(tmp_path / "dump"), payloads, layout)
  offset = len(b"".join(
      dump_format.encode_record(p, layout, sort_id=b"sid-%d" % i)
      for i, p in enumerate(payloads[:4])))
  with pytest.raises(
      warmup_data_gen.DumpFormatError,
      match=rf"record 4 \(starting at byte offset {offset}\) is not a valid "
      rf"parser.proto.Instance: it has field number {UNKNOWN} in line_id,"):
    _gen(path, layout, "instance", 2, reject_unknown_fields=True)
  assert len(_gen(path, layout, "instance", 2)) == 3


@pytest.mark.parametrize("alias,dtype", [
    ("int", tf.int32), ("uint32", tf.int32), ("22", tf.int32),
    ("int64", tf.int64), ("long", tf.int64), ("uint64", tf.int64),
    ("9", tf.int64), ("23", tf.int64), ("float", tf.float32), ("1", tf.float32),
    ("double", tf.float64), ("2", tf.float64), ("bool", tf.bool),
    ("10", tf.bool), ("string", tf.string), ("char", tf.string),
    ("7", tf.string), ("short", tf.int32), ("boolean", tf.bool),
])
def test_tf_dtype_aliases(alias, dtype):
  assert warmup_data_gen.tf_dtype(alias) == dtype


def test_tf_dtype_rejects_unknown():
  with pytest.raises(ValueError, match="unknown dtype 'int46'"):
    warmup_data_gen.tf_dtype("int46")


# --- The command line, run as users run it. -------------------------------


def _run_cli(args, stdin=None, cwd=None):
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run(
      [sys.executable, "-m",
       "monolith.native_training.model_export.warmup_data_gen"] + args,
      input=stdin, capture_output=True, env=env, cwd=cwd, check=False)


@pytest.mark.parametrize("args", [
    ["--gen_type=random", "--variant_type=example"],  # no features
    ["--gen_type=random", "--variant_type=bogus"],  # a bad flag value
    ["--no_such_flag=1"],
    ["--max_record_bytes=0"],
    ["--max_record_bytes=2147483648"],
    ["--gen_type=random", "--variant_type=example", "--sparse_features=user_id",
     f"--feature_list={CONF}", "--drop_rate=2"],
    ["--max_records=1001"],  # file mode: more than TF Serving reads
    ["--gen_type=random", "--variant_type=example", "--sparse_features=user_id",
     f"--feature_list={CONF}", "--batch_size=1", "--max_records=1001"],
])
def test_a_usage_error_is_one_line_and_status_2(tmp_path, args):
  # Not the module's help text (or absl's two flag-error lines) and status 1.
  result = _run_cli(args + [f"--output_path={tmp_path / 'out'}"])
  assert result.returncode == 2, result.stderr.decode()
  stderr = result.stderr.decode()
  if "--max_records=1001" in args:
    assert "would make 1001 warmup records" in stderr, stderr
  # TF's own lines on import, then one line: no help text.
  assert "--gen_type" not in stderr.split("usage error")[0], stderr
  last = stderr.strip().splitlines()[-1]
  assert last.startswith("warmup_data_gen: usage error: "), stderr
  assert last.endswith(" (see --help)"), stderr


def test_a_closed_stdout_ends_the_tool_by_sigpipe_after_its_output(tmp_path):
  # `| head` gone before the closing line: no traceback, the output in
  # place, nothing temporary left.
  out = tmp_path / "warmup"
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3")
  child = subprocess.Popen(
      [sys.executable, "-m",
       "monolith.native_training.model_export.warmup_data_gen",
       "--gen_type=random", "--variant_type=example",
       "--sparse_features=user_id", f"--feature_list={CONF}",
       "--batch_size=4", "--max_records=4", f"--output_path={out}"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
  child.stdout.close()
  _, stderr = child.communicate(timeout=240)
  assert child.returncode == -signal.SIGPIPE, stderr.decode()
  assert b"Traceback" not in stderr, stderr.decode()
  assert len(_read_tfrecord(str(out))) == 1
  assert os.listdir(tmp_path) == ["warmup"]


def _read_tfrecord(path):
  return [
      prediction_log_pb2.PredictionLog.FromString(r.numpy())
      for r in tf.data.TFRecordDataset(path)
  ]


def test_cli_file_mode_output_reads_back_with_tfrecord_dataset(tmp_path):
  payloads = list(sample_records.serialized_records("example", 10))
  dump = _write_dump(str(tmp_path / "dump"), payloads,
                     dump_format.DumpLayout(has_sort_id=True))
  out = tmp_path / "new" / "folder" / "warmup"
  result = _run_cli([f"--file_name={dump}", "--variant_type=example",
                     "--batch_size=4", f"--output_path={out}",
                     "--signature_names=a,b"])
  assert result.returncode == 0, result.stderr.decode()
  assert b"3 warmup records, 10 samples" in result.stdout
  logs = _read_tfrecord(str(out))
  assert _batches(logs, "examples") == [payloads[:4], payloads[4:8],
                                        payloads[8:]]
  assert [l.predict_log.request.model_spec.signature_name for l in logs] == [
      "a", "b", "serving_default"]
  assert sorted(os.listdir(out.parent)) == ["warmup"]  # no temp files left


def test_cli_reads_stdin_in_binary(tmp_path):
  payloads = list(sample_records.serialized_records("instance", 5))
  layout = dump_format.DumpLayout(kafka_dump_prefix=True, has_sort_id=True,
                                  kafka_dump=True)
  data = b"".join(dump_format.encode_record(p, layout, sort_id=b"\xff\x00")
                  for p in payloads)
  out = tmp_path / "warmup"
  result = _run_cli(["--kafka_dump_prefix", "--kafka_dump", "--batch_size=2",
                     f"--output_path={out}"], stdin=data)
  assert result.returncode == 0, result.stderr.decode()
  assert _batches(_read_tfrecord(str(out)), "instances") == [
      payloads[0:2], payloads[2:4], payloads[4:]]


def test_cli_without_file_name_on_a_terminal_fails_at_once(tmp_path):
  leader, follower = pty.openpty()
  try:
    env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m",
         "monolith.native_training.model_export.warmup_data_gen",
         f"--output_path={tmp_path / 'warmup'}"],
        stdin=follower, capture_output=True, env=env, check=False,
        timeout=120)
  finally:
    os.close(leader)
    os.close(follower)
  assert result.returncode != 0
  assert b"no --file_name, and stdin is a terminal" in result.stderr
  assert not (tmp_path / "warmup").exists()


def test_cli_failure_leaves_existing_output_untouched(tmp_path):
  out = tmp_path / "warmup"
  out.write_bytes(b"previous warmup file")
  layout = dump_format.DumpLayout(has_sort_id=True)
  record = dump_format.encode_record(b"payload", layout, sort_id=b"s")
  dump = tmp_path / "dump"
  dump.write_bytes(record * 3 + record[:-2])
  result = _run_cli([f"--file_name={dump}", f"--output_path={out}",
                     "--batch_size=1", "--novalidate_records"])
  assert result.returncode != 0
  stderr = result.stderr.decode()
  assert "truncated record payload at byte offset" in stderr
  assert out.read_bytes() == b"previous warmup file"
  assert sorted(os.listdir(tmp_path)) == ["dump", "warmup"]


def test_output_paths_naming_folders_are_refused_before_any_work(tmp_path):
  for path in ("", str(tmp_path / "new") + "/", str(tmp_path)):
    with pytest.raises(warmup_io.WarmupDataError,
                       match=r"output path .* is (a folder|empty); give a "
                       "file path"):
      with warmup_io.atomic_output(path):
        pytest.fail("the block ran")
  assert not os.listdir(tmp_path)


def test_folders_created_before_a_failure_to_create_more_are_removed(
    tmp_path):
  too_long = "x" * 300  # a name no Linux file system takes
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="File name too long"):
    with warmup_io.atomic_output(str(tmp_path / "a" / "b" / too_long / "w")):
      pytest.fail("the block ran")
  assert not os.listdir(tmp_path)


def test_a_failed_remote_write_leaves_the_folders_it_created(monkeypatch):
  # It listed a remote folder, found it empty, and removed it recursively:
  # a file another writer put there in between went with it.
  store = {"gs://bucket/new/other": b"another writer's"}

  def listdir(folder):
    del folder
    return []  # listed before the other writer's upload closed

  def rmtree(folder):
    for path in [p for p in store if p.startswith(f"{folder}/")]:
      del store[path]

  monkeypatch.setattr(tf.io.gfile, "listdir", listdir)
  monkeypatch.setattr(tf.io.gfile, "rmtree", rmtree)
  # Only the outer folder was made before the write failed.
  monkeypatch.setattr(tf.io.gfile, "exists",
                      lambda path: path == "gs://bucket/new")
  with mock.patch.object(warmup_io.logging, "warning") as warning:
    warmup_io._remove_created_folders(
        ["gs://bucket/new/1", "gs://bucket/new"])
  assert store == {"gs://bucket/new/other": b"another writer's"}
  assert warning.call_count == 1
  assert warning.call_args[0][1] == "gs://bucket/new"


def test_a_failed_write_removes_its_temporary_while_it_holds_it(
    tmp_path, monkeypatch):
  # Removed before its lock goes (another writer could delete it first);
  # and a removal that fails (gone meanwhile) does not hide the error that
  # ended the write, nor keep the folders it created.
  out = tmp_path / "new" / "tf_serving_warmup_requests"
  removed_while_locked = []
  real_remove = tf.io.gfile.remove

  def remove(path):
    removed_while_locked.append(warmup_io._writer_holds(path))
    real_remove(path)
    raise tf.errors.NotFoundError(None, None, f"{path} is gone")

  monkeypatch.setattr(tf.io.gfile, "remove", remove)
  with pytest.raises(KeyError, match="the write's own error"):
    with warmup_io.atomic_output(str(out)) as tmp:
      with open(tmp, "wb") as f:
        f.write(b"partial")
      raise KeyError("the write's own error")
  assert removed_while_locked == [True]
  assert not os.listdir(tmp_path)


def test_outputs_take_paths_of_every_kind(tmp_path):
  # A pathlib.Path failed with AttributeError (no endswith).
  for i, out in enumerate((tmp_path / "a", str(tmp_path / "b").encode())):
    with warmup_io.atomic_output(out) as tmp:
      with open(tmp, "wb") as f:
        f.write(b"%d" % i)
  assert (tmp_path / "a").read_bytes() == b"0"
  assert (tmp_path / "b").read_bytes() == b"1"


def test_a_failed_replace_keeps_the_only_copy(tmp_path, monkeypatch):
  """TF's HDFS rename deletes the target first: where it then fails, the
  temporary is the only copy of either version and stays; a rename that
  left the old output, or a first write's, loses nothing: it goes."""
  out = tmp_path / "tf_serving_warmup_requests"
  out.write_bytes(b"old")
  for deletes_target in (False, True):
    monkeypatch.setattr(utils, "replace_file",
                        test_utils.failing_replace_file(deletes_target))
    with pytest.raises(tf.errors.UnavailableError):
      with warmup_io.atomic_output(str(out)) as tmp:
        with open(tmp, "wb") as f:
          f.write(b"new")
  [kept] = os.listdir(tmp_path)
  assert kept.startswith("tf_serving_warmup_requests.tmp-")
  assert (tmp_path / kept).read_bytes() == b"new"
  # It outlives later writes that fail, however old it is ...
  old = time.time() - warmup_io.STALE_TEMP_SECONDS - 60
  os.utime(tmp_path / kept, (old, old))
  with pytest.raises(tf.errors.UnavailableError):
    with warmup_io.atomic_output(str(out)) as tmp:
      with open(tmp, "wb") as f:
        f.write(b"first")
  assert os.listdir(tmp_path) == [kept]
  # ... and goes once a write puts a whole output in place.
  monkeypatch.undo()
  with warmup_io.atomic_output(str(out)) as tmp:
    with open(tmp, "wb") as f:
      f.write(b"newer")
  assert os.listdir(tmp_path) == [out.name]
  assert out.read_bytes() == b"newer"


def test_a_write_over_an_output_frees_killed_writes_room_first(tmp_path):
  """With a whole output there, no temporary is the only copy: killed
  writes' go before this write (whose room they may take), even if it
  then fails."""
  out = tmp_path / "tf_serving_warmup_requests"
  out.write_bytes(b"old")
  killed = tmp_path / "tf_serving_warmup_requests.tmp-0123456789ab"
  killed.write_bytes(b"partial")
  old = time.time() - warmup_io.STALE_TEMP_SECONDS - 60
  os.utime(killed, (old, old))
  with pytest.raises(KeyError):
    with warmup_io.atomic_output(str(out)):
      assert not killed.exists()
      raise KeyError("the write failed")
  assert os.listdir(tmp_path) == [out.name]
  assert out.read_bytes() == b"old"


def test_a_write_to_a_relative_path_deletes_a_killed_writes_temporary(
    tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  killed = tmp_path / "warmup.tmp-0123456789ab"
  killed.write_bytes(b"partial")
  old = time.time() - warmup_io.STALE_TEMP_SECONDS - 60
  os.utime(killed, (old, old))
  log = warmup_io.predict_log("m", "serving_default", {})
  assert warmup_io.write_prediction_logs("warmup", [log]) == 1
  assert os.listdir(tmp_path) == ["warmup"]


def test_a_write_deletes_temporaries_a_killed_write_left(tmp_path,
                                                         monkeypatch):
  # "new" must stay younger than the unlocked-temporary age until the write
  # below, however slowly a loaded machine runs this test.
  monkeypatch.setattr(warmup_io, "UNLOCKED_TEMP_SECONDS", 60)
  out = tmp_path / "tf_serving_warmup_requests"
  old = time.time() - warmup_io.STALE_TEMP_SECONDS - 60
  names = {
      # Deleted: unlocked ones, old or a few seconds old (a killed writer's
      # lock went with it).
      "old": "tf_serving_warmup_requests.tmp-0123456789ab",
      "killed": "tf_serving_warmup_requests.tmp-00000000dead",
      # Kept: one a running writer holds locked, however old (a long
      # replay); one just created (its writer may not have locked it yet);
      # another output's; files named like temporaries but not as a write
      # names them (a user's backup).
      "running": "tf_serving_warmup_requests.tmp-0000000000aa",
      "new": "tf_serving_warmup_requests.tmp-0000000000bb",
      "other": "other.tmp-0123456789ab",
      "backup": "tf_serving_warmup_requests.tmp-backup",
      "longer": "tf_serving_warmup_requests.tmp-0123456789abc",
  }
  for key, name in names.items():
    (tmp_path / name).write_bytes(b"partial")
    if key != "new":
      os.utime(tmp_path / name, (old, old))
  killed = tmp_path / names["killed"]
  few_seconds = time.time() - warmup_io.UNLOCKED_TEMP_SECONDS - 1
  os.utime(killed, (few_seconds, few_seconds))
  with open(tmp_path / names["running"], "rb") as running:
    fcntl.flock(running, fcntl.LOCK_EX)
    log = warmup_io.predict_log("m", "serving_default", {})
    assert warmup_io.write_prediction_logs(str(out), [log]) == 1
  assert sorted(os.listdir(tmp_path)) == sorted(
      [out.name] +
      [names[k] for k in ("running", "new", "other", "backup", "longer")])


def test_assets_extra_is_created_only_beside_a_saved_model(tmp_path):
  # TF Serving would take models/7, created for the warmup file alone, for
  # a version it cannot load.
  log = warmup_io.predict_log("m", "serving_default", {})
  out = tmp_path / "models" / "7" / "assets.extra" / "tf_serving_warmup_requests"
  with pytest.raises(warmup_io.WarmupDataError,
                     match=r"not creating .*models/7/assets.extra: .*models/7 "
                     r"holds no SavedModel \(saved_model.pb\)"):
    warmup_io.write_prediction_logs(str(out), [log])
  assert not (tmp_path / "models").exists()
  (tmp_path / "models" / "7").mkdir(parents=True)
  (tmp_path / "models" / "7" / "saved_model.pb").write_bytes(b"")
  assert warmup_io.write_prediction_logs(str(out), [log]) == 1
  # A path that left out <version>/assets.extra made models/8 beside
  # version 7: a version TF Serving cannot load.
  with pytest.raises(warmup_io.WarmupDataError,
                     match=r"not creating .*models/8: .*models holds model "
                     r"versions, and TF Serving would take it for one"):
    warmup_io.write_prediction_logs(
        str(tmp_path / "models" / "8" / "tf_serving_warmup_requests"), [log])
  assert sorted(os.listdir(tmp_path / "models")) == ["7"]
  # Elsewhere (not a numeric version folder) any folders are created.
  staged = tmp_path / "staging" / "assets.extra" / "tf_serving_warmup_requests"
  assert warmup_io.write_prediction_logs(str(staged), [log]) == 1
  runs = tmp_path / "runs" / "8" / "tf_serving_warmup_requests"
  assert warmup_io.write_prediction_logs(str(runs), [log]) == 1


def test_an_output_in_a_model_version_that_tf_serving_never_reads_is_warned(
    tmp_path, monkeypatch):
  warned = []
  monkeypatch.setattr(warmup_io.logging, "warning",
                      lambda fmt, *args: warned.append(fmt % args))
  log = warmup_io.predict_log("m", "serving_default", {})
  version = tmp_path / "models" / "7"
  (version / "assets.extra").mkdir(parents=True)
  (version / "saved_model.pb").write_bytes(b"")
  expected = version / "assets.extra" / "tf_serving_warmup_requests"
  for out in (version / "tf_serving_warmup_requests",
              version / "assets.extra" / "tf_serving_warmup_request"):
    warned.clear()
    assert warmup_io.write_prediction_logs(str(out), [log]) == 1
    assert warned == [f"{out} is not where TF Serving reads a model's warmup "
                      f"file: it reads {expected} only"]
  warned.clear()
  assert warmup_io.write_prediction_logs(str(expected), [log]) == 1
  doubled = f"{version}/assets.extra//tf_serving_warmup_requests"
  assert warmup_io.write_prediction_logs(doubled, [log]) == 1
  staged = tmp_path / "staging" / "warmup"
  assert warmup_io.write_prediction_logs(str(staged), [log]) == 1
  assert warned == []


def test_a_record_too_large_to_parse_is_refused(tmp_path, monkeypatch):
  out = tmp_path / "tf_serving_warmup_requests"
  out.write_bytes(b"previous warmup file")
  small = warmup_io.predict_log("m", "serving_default", {})
  large = warmup_io.predict_log("m", "serving_default" + "x" * 100, {})
  monkeypatch.setattr(warmup_io, "MAX_RECORD_BYTES", small.ByteSize())
  with pytest.raises(warmup_io.WarmupDataError,
                     match=r"warmup record 2 takes more than protobuf parses "
                     r".*lower --batch_size \(\d+ bytes\)"):
    warmup_io.write_prediction_logs(str(out), [small, large],
                                    too_large_remedy="lower --batch_size")
  assert out.read_bytes() == b"previous warmup file"


def test_cli_validates_newer_schema_dumps_and_rejects_them_when_strict(
    tmp_path):
  payloads = list(_newer_schema_records("example", 6))
  dump = _write_dump(str(tmp_path / "dump"), payloads,
                     dump_format.DumpLayout(has_sort_id=True))
  out = tmp_path / "warmup"
  args = [f"--file_name={dump}", "--variant_type=example", "--batch_size=4",
          f"--output_path={out}"]
  result = _run_cli(args)  # --validate_records is the default
  assert result.returncode == 0, result.stderr.decode()
  assert b"2 warmup records, 6 samples" in result.stdout
  assert _batches(_read_tfrecord(str(out)), "examples") == [payloads[:4],
                                                            payloads[4:]]
  before = out.read_bytes()
  result = _run_cli(args + ["--reject_unknown_fields"])
  assert result.returncode != 0
  assert (f"warmup_data_gen: error: {dump}: record 0 (starting at byte "
          "offset 0) is not a valid monolith.io.proto.Example: it has field "
          f"number {UNKNOWN}, which the message does not define"
         ) in result.stderr.decode()
  assert out.read_bytes() == before
  result = _run_cli(args + ["--reject_unknown_fields", "--novalidate_records"])
  assert result.returncode != 0
  assert (b"--reject_unknown_fields needs --validate_records"
          in result.stderr)
  assert out.read_bytes() == before


def test_cli_size_beyond_the_file_names_the_file_and_offsets(tmp_path):
  layout = dump_format.DumpLayout(has_sort_id=True)
  record = dump_format.encode_record(b"x" * 10, layout, sort_id=b"ab")
  bad = bytearray(record)
  size_offset = 8 + 2
  bad[size_offset:size_offset + 8] = dump_format.U64.pack(1 << 27)
  dump = tmp_path / "dump"
  dump.write_bytes(record + bytes(bad))
  result = _run_cli([f"--file_name={dump}", f"--output_path={tmp_path / 'w'}",
                     "--novalidate_records"])
  assert result.returncode != 0
  assert (f"{dump}: truncated record payload at byte offset "
          f"{len(record) + size_offset + 8}: its size, read at byte offset "
          f"{len(record) + size_offset}, is {1 << 27} bytes, but the input "
          "ends after 10;") in result.stderr.decode()


def test_cli_refuses_more_than_1000_records(tmp_path):
  dump = _write_dump(str(tmp_path / "dump"),
                     sample_records.serialized_records("instance", 3),
                     dump_format.DumpLayout(has_sort_id=True))
  out = tmp_path / "warmup"
  result = _run_cli([f"--file_name={dump}", f"--output_path={out}",
                     "--max_records=1001"])
  assert result.returncode != 0
  assert b"more than 1000" in result.stderr
  assert not out.exists()


def test_cli_resolves_relative_paths_against_bazel_working_dir(
    tmp_path, monkeypatch):
  _write_dump(str(tmp_path / "dump"),
              sample_records.serialized_records("instance", 3),
              dump_format.DumpLayout(has_sort_id=True))
  monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
  result = _run_cli(["--file_name=dump", "--output_path=out/warmup"], cwd="/")
  assert result.returncode == 0, result.stderr.decode()
  assert len(_read_tfrecord(str(tmp_path / "out" / "warmup"))) == 1


@pytest.mark.parametrize("flag", ["--batch_size=0", "--max_records=0"])
def test_cli_refuses_non_positive_counts_naming_the_flag(flag):
  result = _run_cli([flag])
  assert result.returncode != 0
  assert f"flag {flag}: " in result.stderr.decode()


def test_cli_expands_the_home_directory(tmp_path, monkeypatch):
  # `--output_path=~/x`: the shell leaves the ~ to the tool.
  _write_dump(str(tmp_path / "dump"),
              sample_records.serialized_records("instance", 3),
              dump_format.DumpLayout(has_sort_id=True))
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path / "work"))
  result = _run_cli(["--file_name=~/dump", "--output_path=~/out/warmup"],
                    cwd="/")
  assert result.returncode == 0, result.stderr.decode()
  assert len(_read_tfrecord(str(tmp_path / "out" / "warmup"))) == 1
  assert not (tmp_path / "work").exists()


# --- Random mode. -----------------------------------------------------------


def _main_in_process(args, argv=("warmup_data_gen",)):
  """Runs main(argv) with `args` as the command line's flags, in this
  process."""
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["warmup_data_gen"] + args)
  try:
    warmup_data_gen.main(None if argv is None else list(argv))
  finally:
    flags.FLAGS.unparse_flags()


def test_main_takes_none_and_refuses_arguments(tmp_path):
  # The original's main(_) took anything: wrappers called main(None).
  _main_in_process(["--gen_type=random", "--sparse_features=slot_1",
                    f"--output_path={tmp_path / 'out'}"], argv=None)
  assert _read_tfrecord(str(tmp_path / "out"))
  with pytest.raises(app.UsageError, match="unexpected arguments: extra"):
    _main_in_process(["--gen_type=random", "--sparse_features=slot_1",
                      f"--output_path={tmp_path / 'again'}"],
                     argv=("warmup_data_gen", "extra"))
  assert not (tmp_path / "again").exists()


def _records(logs, variant):
  record_class = warmup_data_gen.RECORD_CLASSES[variant]
  return [[record_class.FromString(r) for r in batch]
          for batch in _batches(logs, warmup_data_gen.INPUT_NAMES[variant])]


def test_random_mode_example_from_flags(tmp_path, capsys):
  out = tmp_path / "warmup"
  _main_in_process([
      "--gen_type=random", "--variant_type=example",
      "--sparse_features=user_id, doc_id,slot_77", f"--feature_list={CONF}",
      "--dense_features=ctr,emb,count", "--dense_feature_shapes=4,2,3",
      "--dense_feature_types=float,double,int64",
      "--extra_features=uid,actions", "--extra_feature_shapes=1,2",
      "--batch_size=4", "--max_records=12", "--signature_names=ctr",
      "--model_name=ranker", "--seed=3", f"--output_path={out}"])
  assert f"wrote {out}: 3 warmup records, 12 samples" in capsys.readouterr().out
  logs = _read_tfrecord(str(out))
  assert [l.predict_log.request.model_spec.signature_name for l in logs] == [
      "ctr", "serving_default", "ctr"]
  assert {l.predict_log.request.model_spec.name for l in logs} == {"ranker"}
  for batch in _records(logs, "example"):
    assert len(batch) == 4
    for example in batch:
      features = {nf.name: nf for nf in example.named_feature}
      # Slots from the feature list (f_user_id, f_doc_id) and the name.
      assert [(n, f.id) for n, f in features.items()][:3] == [
          ("user_id", 1), ("doc_id", 200), ("slot_77", 77)]
      assert features["slot_77"].feature.fid_v2_list.value[0] >> 48 == 77
      assert len(features["ctr"].feature.float_list.value) == 4
      assert len(features["emb"].feature.double_list.value) == 2
      assert len(features["count"].feature.int64_list.value) == 3
      assert example.line_id.uid >> 48 == 1 and len(example.line_id.actions) == 2
      assert not example.line_id.item_id  # only the listed extra features


def test_random_mode_instance_with_v1_and_v2_fids(tmp_path):
  out = tmp_path / "warmup"
  _main_in_process([
      "--gen_type=random", "--variant_type=instance", "--fidv1_features=1,5",
      "--sparse_features=slot_9", "--batch_size=2", "--max_records=4",
      f"--output_path={out}"])
  batches = _records(_read_tfrecord(str(out)), "instance")
  assert [len(b) for b in batches] == [2, 2]
  for instance in itertools.chain(*batches):
    assert {fid >> 54 for fid in instance.fid} <= {1, 5}
    assert [fid >> 54 for fid in instance.fid].count(1) == 1
    assert instance.feature[0].name == "slot_9"
    assert [fid >> 48 for fid in instance.feature[0].fid] == [9]


def test_a_long_run_logs_how_far_it_got(tmp_path, monkeypatch):
  # Every PROGRESS_EVERY_SECS (here: after every record).
  monkeypatch.setattr(warmup_data_gen, "PROGRESS_EVERY_SECS", 0.0)
  lines = []
  monkeypatch.setattr(warmup_data_gen.logging, "info",
                      lambda fmt, *args: lines.append(fmt % args))
  out = tmp_path / "warmup"
  _main_in_process([
      "--gen_type=random", "--variant_type=example",
      "--sparse_features=user_id", f"--feature_list={CONF}",
      "--batch_size=4", "--max_records=12", "--seed=3",
      f"--output_path={out}"])
  progress = [l for l in lines if " so far " in l]
  assert len(progress) == 3, lines
  assert progress[0].startswith(
      f"warmup_data_gen: 1 records, 4 samples to {out} so far (")
  assert progress[-1].startswith("warmup_data_gen: 3 records, 12 samples")


def test_random_mode_example_batch_drop_rate(tmp_path, capsys):
  out = tmp_path / "warmup"
  _main_in_process([
      "--gen_type=random", "--variant_type=example_batch",
      "--sparse_features=slot_1,slot_5", "--drop_rate=1", "--batch_size=8",
      "--max_records=16", f"--output_path={out}"])
  # Samples are rows: two ExampleBatches of 8.
  assert f"wrote {out}: 2 warmup records, 16 samples" in (
      capsys.readouterr().out)
  batches = _records(_read_tfrecord(str(out)), "example_batch")
  assert [len(b) for b in batches] == [1, 1]  # one ExampleBatch per request
  for (batch,) in batches:
    columns = {c.name: c for c in batch.named_feature_list}
    assert batch.batch_size == 8 and len(columns["slot_1"].feature) == 8
    # Slot 1 (the user id) is never dropped; slot 5 always is at rate 1.
    assert all(len(f.fid_v2_list.value) == 1 for f in columns["slot_1"].feature)
    assert all(len(f.fid_v2_list.value) == 0 for f in columns["slot_5"].feature)


def test_random_mode_seed_is_byte_identical(tmp_path):
  def run(name, *extra):
    out = tmp_path / name
    _main_in_process(["--gen_type=random", "--variant_type=example",
                      "--sparse_features=slot_1,slot_2,user_recent_clicks",
                      "--dense_features=ctr", "--drop_rate=0.3",
                      "--batch_size=16", "--max_records=64",
                      f"--output_path={out}", *extra])
    return out.read_bytes()

  assert run("a", "--seed=5") == run("b", "--seed=5")
  assert run("c", "--seed=5") != run("d", "--seed=6")
  assert run("e") != run("f")


@pytest.mark.parametrize("args,error", [
    (["--variant_type=example"], "needs --sparse_features"),
    (["--variant_type=instance"], "needs --sparse_features or --fidv1_features"),
    (["--sparse_features=slot_1", "--fidv1_features=2"],
     "--fidv1_features is for --variant_type=instance"),
    (["--variant_type=instance", "--fidv1_features=2000,3"],
     "--fidv1_features: fid v1 slots are 1..1023, got 2000"),
    (["--sparse_features=slot_1", "--dense_features=a",
      "--dense_feature_types=int46"],
     "--dense_feature_types=int46: unknown dtype 'int46'"),
    (["--sparse_features=slot_1", "--dense_features=a",
      "--dense_feature_shapes=x"], "--dense_feature_shapes=x: invalid literal"),
    (["--sparse_features=slot_1,"], "--sparse_features=slot_1,: empty item"),
    (["--sparse_features=slot_1", "--extra_features=uid,uid"],
     "--extra_features=uid,uid: uid given more than once"),
])
def test_random_mode_flag_errors(tmp_path, args, error):
  with pytest.raises(app.UsageError, match=error):
    _main_in_process(["--gen_type=random", "--variant_type=example",
                      f"--output_path={tmp_path / 'out'}", *args])
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("args,error", [
    (["--gen_type=file", "--seed=3"], "--seed does not apply to --gen_type=file"),
    (["--gen_type=file", "--sparse_features=slot_1", "--drop_rate=0.5"],
     "--sparse_features, --drop_rate do not apply to --gen_type=file"),
    (["--gen_type=random", "--sparse_features=slot_1", "--kafka_dump"],
     "--kafka_dump does not apply to --gen_type=random"),
])
def test_flags_of_the_other_gen_type_are_refused(tmp_path, args, error):
  with pytest.raises(app.UsageError, match=error):
    _main_in_process([f"--output_path={tmp_path / 'out'}", *args])
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("args,error", [
    (["--dense_features=a,b", "--dense_feature_shapes=1"],
     "dense_feature_shapes has 1 entries but dense_features has 2"),
    (["--extra_features=page"], "extra feature 'page' is not a LineId field"),
    (["--feature_list=/nonexistent/features.conf"],
     "--feature_list=/nonexistent/features.conf: "),
    (["--extra_features=uid", "--extra_feature_shapes=5"],
     "extra feature 'uid' is a single LineId value"),
    (["--max_records=4", "--batch_size=8"], "makes 0 requests"),
    (["--extra_feature_shapes=5"],
     "extra_feature_shapes is given but extra_features is not"),
    (["--dense_feature_types=float"],
     "dense_feature_types is given but dense_features is not"),
])
def test_random_mode_bad_values_raise_with_the_reason(tmp_path, args, error):
  # An exception a calling program can catch (the original's main raised),
  # not a SystemExit; run_tool turns it into the message and status 1.
  with pytest.raises(Exception) as e:
    _main_in_process(["--gen_type=random", "--variant_type=example",
                      "--sparse_features=slot_1",
                      f"--output_path={tmp_path / 'out'}", *args])
  assert isinstance(e.value, warmup_io.ToolError)
  assert e.value.status == 1
  assert "warmup_data_gen: error:" in str(e.value)
  assert error in str(e.value)
  assert not os.listdir(tmp_path)


def test_cli_random_mode(tmp_path, monkeypatch):
  monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
  result = _run_cli(["--gen_type=random", "--variant_type=example",
                     "--sparse_features=slot_1,slot_2", "--batch_size=32",
                     "--seed=1", "--output_path=out/warmup"], cwd="/")
  assert result.returncode == 0, result.stderr.decode()
  # 1000 // 32 requests of 32 samples.
  assert b"31 warmup records, 992 samples" in result.stdout
  assert len(_read_tfrecord(str(tmp_path / "out" / "warmup"))) == 31
