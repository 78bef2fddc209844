// The sample-format messages the parity tools know, by their short names.
#ifndef MONOLITH_PROTOS_TESTING_PROTO_MESSAGES_H_
#define MONOLITH_PROTOS_TESTING_PROTO_MESSAGES_H_

#include <memory>
#include <string>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/message.h"
#include "idl/matrix/proto/example.pb.h"
#include "idl/matrix/proto/proto_parser.pb.h"

namespace monolith {
namespace protos {

// Returns a new empty message for "Example", "ExampleBatch" or "Instance",
// or nullptr for any other name.
inline std::unique_ptr<google::protobuf::Message> NewSampleMessage(
    const std::string& name) {
  if (name == "Example") return std::make_unique<monolith::io::proto::Example>();
  if (name == "ExampleBatch") {
    return std::make_unique<monolith::io::proto::ExampleBatch>();
  }
  if (name == "Instance") return std::make_unique<parser::proto::Instance>();
  return nullptr;
}

// Serializes with map entries in key order, so equal messages give equal
// bytes in every language.
inline std::string SerializeDeterministic(
    const google::protobuf::Message& msg) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream raw(&bytes);
    google::protobuf::io::CodedOutputStream coded(&raw);
    coded.SetSerializationDeterministic(true);
    msg.SerializeToCodedStream(&coded);
  }
  return bytes;
}

}  // namespace protos
}  // namespace monolith

#endif  // MONOLITH_PROTOS_TESTING_PROTO_MESSAGES_H_
