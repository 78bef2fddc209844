// A small absl::Status-like error type for the engine, which includes neither
// absl nor TensorFlow. Kernels map it to tensorflow::Status.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_STATUS_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_STATUS_H_

#include <string>
#include <utility>

namespace monolith {
namespace hash_table {

// The canonical codes, numbered as absl's and TensorFlow's, so that an
// error of a file system (a storage layer's Unavailable, PermissionDenied)
// crosses the engine and back with its code.
enum class StatusCode {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status CancelledError(std::string message) {
  return Status(StatusCode::kCancelled, std::move(message));
}
inline Status InvalidArgumentError(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message));
}
inline Status NotFoundError(std::string message) {
  return Status(StatusCode::kNotFound, std::move(message));
}
inline Status ResourceExhaustedError(std::string message) {
  return Status(StatusCode::kResourceExhausted, std::move(message));
}
inline Status FailedPreconditionError(std::string message) {
  return Status(StatusCode::kFailedPrecondition, std::move(message));
}
inline Status OutOfRangeError(std::string message) {
  return Status(StatusCode::kOutOfRange, std::move(message));
}
inline Status InternalError(std::string message) {
  return Status(StatusCode::kInternal, std::move(message));
}
inline Status AbortedError(std::string message) {
  return Status(StatusCode::kAborted, std::move(message));
}
inline Status DataLossError(std::string message) {
  return Status(StatusCode::kDataLoss, std::move(message));
}

inline std::string Status::ToString() const {
  static const char* const kNames[] = {
      "OK",           "CANCELLED",          "UNKNOWN",
      "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED",     "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",          "UNAVAILABLE",
      "DATA_LOSS",    "UNAUTHENTICATED"};
  if (ok()) return "OK";
  // A code cast from another library's may be none of these.
  const int code = static_cast<int>(code_);
  const bool named =
      code >= 0 && code < static_cast<int>(sizeof(kNames) / sizeof(kNames[0]));
  return (named ? std::string(kNames[code])
                : "UNKNOWN_CODE(" + std::to_string(code) + ")") +
         ": " + message_;
}

// Returns early from the enclosing function when |expr| is not OK.
#define MONOLITH_RETURN_IF_ERROR(expr)                    \
  do {                                                    \
    ::monolith::hash_table::Status _status = (expr);      \
    if (!_status.ok()) return _status;                    \
  } while (false)

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_STATUS_H_
