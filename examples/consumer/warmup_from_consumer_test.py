"""A consumer's Python target imports monolith's modules and protos."""

import os

from idl.matrix.proto import example_pb2
from monolith.native_training.model_export import dump_format
from monolith.native_training.model_export import sample_records
from monolith.native_training.model_export import warmup_data_gen


def test_dump_to_prediction_logs(tmp_path):
  payloads = list(sample_records.serialized_records("example", 3))
  layout = dump_format.DumpLayout(has_sort_id=True)
  path = os.path.join(tmp_path, "dump")
  with open(path, "wb") as f:
    dump_format.write_dump(f, payloads, layout, sort_id=b"s")
  (log,) = warmup_data_gen.gen_prediction_log_from_file(
      path, batch_size=8, variant_type="example")
  values = log.predict_log.request.inputs["examples"].string_val
  assert list(values) == payloads
  assert example_pb2.Example.FromString(values[0]).named_feature
