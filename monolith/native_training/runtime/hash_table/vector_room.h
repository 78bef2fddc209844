// Room made ahead in a std::vector, for code that must not fail (throw
// std::bad_alloc) after it has taken something it would then leak: reserve
// first, then take, then push_back, which no longer allocates.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_VECTOR_ROOM_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_VECTOR_ROOM_H_

#include <algorithm>
#include <cstddef>
#include <vector>

namespace monolith {
namespace hash_table {

// Makes |*v| hold |more| more elements without allocating, growing it
// geometrically as push_back does (reserve alone grows to the exact size:
// one call per element would copy the vector each time).
template <typename T>
void ReserveRoomFor(std::vector<T>* v, size_t more) {
  const size_t needed = v->size() + more;
  if (needed > v->capacity()) v->reserve(std::max(needed, 2 * v->capacity()));
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_VECTOR_ROOM_H_
