"""Python <-> C++ parity for the sample-format protos.

Runs the C++ codec (//protos/testing:proto_codec) on the shared text-format
samples: bytes C++ writes must parse in Python to the same message, equal
Python's own bytes, and Python's bytes must decode in C++ to the same message.
"""

import os
import subprocess
import tempfile

from google.protobuf import text_format
import pytest

from protos.testing import sample_messages

_SAMPLES = [("Example", "example"), ("ExampleBatch", "example_batch"),
            ("Instance", "instance")]
# Beside this file in the runfiles, whichever workspace runs the test.
_HERE = os.path.dirname(os.path.abspath(__file__))
_CODEC = os.path.join(_HERE, "proto_codec")


def _load_text(type_name: str, stem: str):
  with open(os.path.join(_HERE, stem + ".pbtxt")) as f:
    return text_format.Parse(f.read(), sample_messages.new_message(type_name))


def _codec(mode: str, type_name: str, data: bytes) -> bytes:
  with tempfile.TemporaryDirectory() as tmp:
    src, dst = os.path.join(tmp, "in"), os.path.join(tmp, "out")
    with open(src, "wb") as f:
      f.write(data)
    subprocess.run([_CODEC, mode, type_name, src, dst], check=True)
    with open(dst, "rb") as f:
      return f.read()


@pytest.mark.parametrize("type_name,stem", _SAMPLES)
def test_cpp_bytes_parse_in_python(type_name, stem):
  with open(os.path.join(_HERE, stem + ".pbtxt"), "rb") as f:
    cpp_bytes = _codec("encode", type_name, f.read())
  expected = _load_text(type_name, stem)
  parsed = sample_messages.new_message(type_name)
  parsed.ParseFromString(cpp_bytes)
  assert parsed == expected
  assert cpp_bytes == expected.SerializeToString(deterministic=True)


@pytest.mark.parametrize("type_name,stem", _SAMPLES)
def test_python_bytes_decode_in_cpp(type_name, stem):
  expected = _load_text(type_name, stem)
  cpp_text = _codec("decode", type_name,
                    expected.SerializeToString(deterministic=True))
  decoded = text_format.Parse(cpp_text.decode(),
                              sample_messages.new_message(type_name))
  assert decoded == expected


def test_codec_rejects_garbage():
  with pytest.raises(subprocess.CalledProcessError):
    _codec("decode", "Example", b"\xff\xff\xff")


def test_unknown_type_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown message type 'Nope'"):
    sample_messages.new_message("Nope")

