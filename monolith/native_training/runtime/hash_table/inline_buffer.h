// Scratch space for n values: inline (on the stack) up to kInline, so hot
// paths allocate nothing, else on the heap.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INLINE_BUFFER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INLINE_BUFFER_H_

#include <cstdint>
#include <vector>

namespace monolith {
namespace hash_table {

template <typename T, int kInline>
class InlineBuffer {
 public:
  explicit InlineBuffer(int64_t n) {
    if (n > kInline) {
      heap_.resize(n);
      data_ = heap_.data();
    }
  }
  InlineBuffer(const InlineBuffer&) = delete;
  InlineBuffer& operator=(const InlineBuffer&) = delete;

  T* data() { return data_; }

 private:
  alignas(16) T inline_[kInline];
  std::vector<T> heap_;
  T* data_ = inline_;
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INLINE_BUFFER_H_
