"""The committed sample dump is what make_sample_dump writes, and it reads."""

import os

import pytest

from idl.matrix.proto import example_pb2
from monolith.native_training.model_export import warmup_data_gen
from monolith.native_training.model_export.testdata import make_sample_dump

# Beside this file in the runfiles, whichever workspace runs the test.
_DUMP = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     "examples.dump")


def test_committed_dump_is_reproducible(tmp_path):
  path = str(tmp_path / "examples.dump")
  make_sample_dump.write_sample_dump(path)
  with open(path, "rb") as fresh, open(_DUMP, "rb") as committed:
    assert fresh.read() == committed.read()


def test_committed_dump_holds_examples():
  logs = list(warmup_data_gen.gen_prediction_log_from_file(
      _DUMP, batch_size=16, variant_type="example"))
  assert len(logs) == make_sample_dump.NUM_RECORDS // 16
  for log in logs:
    for payload in log.predict_log.request.inputs["examples"].string_val:
      example = example_pb2.Example.FromString(payload)
      assert len(example.named_feature) == 5
      assert example.line_id.req_time >= 1_700_000_000

