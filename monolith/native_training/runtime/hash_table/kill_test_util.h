// For kill tests (a child process SIGKILLed while it saves): a child that
// stops for good where a kill must land tells its parent, which waits for
// that before it kills, whatever the machine's speed.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_KILL_TEST_UTIL_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_KILL_TEST_UTIL_H_

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

namespace monolith {
namespace hash_table {

// In the child: tells the parent through |notify_fd| (the write end of a
// pipe), then stops for good.
[[noreturn]] inline void PauseForKill(int notify_fd) {
  const char byte = 1;
  if (write(notify_fd, &byte, 1) != 1) _exit(1);
  for (;;) pause();
}

// In the parent, after fork(): closes its copy of the write end |notify[1]|
// (a child that ends before it pauses then makes the read return 0, not
// wait for good), waits for the child's byte and closes the read end.
// Whether the child paused; one that did not is killed.
inline bool WaitForPause(pid_t child, int notify[2]) {
  close(notify[1]);
  char byte = 0;
  const ssize_t got = read(notify[0], &byte, 1);
  close(notify[0]);
  if (got != 1) kill(child, SIGKILL);
  return got == 1;
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_KILL_TEST_UTIL_H_
