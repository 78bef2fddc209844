// Converts a sample-format message between text format and binary, in C++:
//   proto_codec encode|decode Example|ExampleBatch|Instance IN OUT
// encode reads text format and writes deterministic binary; decode the
// reverse. Used by proto_parity_test.py to check C++ <-> Python parity.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "google/protobuf/text_format.h"
#include "protos/testing/proto_messages.h"

namespace {

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buf;
  buf << in.rdbuf();
  *out = buf.str();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: " << argv[0]
              << " encode|decode Example|ExampleBatch|Instance IN OUT\n";
    return 2;
  }
  const std::string mode = argv[1], type = argv[2], in_path = argv[3],
                    out_path = argv[4];
  auto msg = monolith::protos::NewSampleMessage(type);
  if (!msg) {
    std::cerr << "unknown message type: " << type << "\n";
    return 2;
  }
  std::string input;
  if (!ReadFile(in_path, &input)) {
    std::cerr << "cannot read " << in_path << "\n";
    return 1;
  }
  std::string output;
  if (mode == "encode") {
    if (!google::protobuf::TextFormat::ParseFromString(input, msg.get())) {
      std::cerr << in_path << ": not a text-format " << type << "\n";
      return 1;
    }
    output = monolith::protos::SerializeDeterministic(*msg);
  } else if (mode == "decode") {
    if (!msg->ParseFromString(input)) {
      std::cerr << in_path << ": not a binary " << type << "\n";
      return 1;
    }
    google::protobuf::TextFormat::PrintToString(*msg, &output);
  } else {
    std::cerr << "mode must be encode or decode, got " << mode << "\n";
    return 2;
  }
  std::ofstream out(out_path, std::ios::binary);
  out << output;
  // Closed first: a write that fails only when the buffer is flushed (a
  // full disk) must fail the action, not leave a short output.
  out.close();
  if (out.fail()) {
    std::cerr << out_path << ": cannot write\n";
    return 1;
  }
  return 0;
}
