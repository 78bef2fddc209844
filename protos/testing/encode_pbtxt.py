"""Encodes a text-format sample message to deterministic binary, in Python.

    encode_pbtxt.py Example|ExampleBatch|Instance IN.pbtxt OUT.bin

Build-time helper: its output is the "written by Python" side of the
cross-language parity tests.
"""

import sys

from google.protobuf import text_format

from protos.testing import sample_messages


def main(argv: list) -> int:
  if len(argv) != 4:
    print(__doc__, file=sys.stderr)
    return 2
  _, type_name, in_path, out_path = argv
  with open(in_path) as f:
    msg = text_format.Parse(f.read(), sample_messages.new_message(type_name))
  with open(out_path, "wb") as f:
    f.write(msg.SerializeToString(deterministic=True))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
