"""The sample-format message classes the parity tests know, by short name."""

from google.protobuf import message

from idl.matrix.proto import example_pb2
from idl.matrix.proto import proto_parser_pb2

MESSAGE_TYPES = {
    "Example": example_pb2.Example,
    "ExampleBatch": example_pb2.ExampleBatch,
    "Instance": proto_parser_pb2.Instance,
}


def new_message(type_name: str) -> message.Message:
  """Returns an empty message of the named type; ValueError if unknown."""
  try:
    return MESSAGE_TYPES[type_name]()
  except KeyError:
    raise ValueError(f"unknown message type {type_name!r}; "
                     f"known: {sorted(MESSAGE_TYPES)}") from None
