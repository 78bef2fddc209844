"""A user's plain py_test (no pytest, not monolith's macro): imports
monolith's modules, and a proto of its own workspace holding monolith's
Example, both ways round."""

from consumer import ranked_example_pb2
from idl.matrix.proto import example_pb2
from monolith.native_training.model_export import sample_records


def main() -> None:
  (payload,) = sample_records.serialized_records("example", 1)
  ranked = ranked_example_pb2.RankedExample(
      example=example_pb2.Example.FromString(payload), score=0.5)
  parsed = ranked_example_pb2.RankedExample.FromString(
      ranked.SerializeToString())
  assert parsed.example.SerializeToString() == payload, parsed
  assert parsed.score == 0.5, parsed
  print("ok")


if __name__ == "__main__":
  main()
