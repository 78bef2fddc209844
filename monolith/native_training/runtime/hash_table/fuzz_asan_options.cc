// AddressSanitizer's options for the fuzz tests that link this file
// (:fuzz_asan_options, alwayslink), unless ASAN_OPTIONS overrides them. A
// single allocation over 1 GiB or a resident set over 2 GiB is a failure
// (with a report), not a slow test. Container-overflow checks are off:
// protobuf's RepeatedField templates are instantiated (with ASan's
// container annotations) in the instrumented binary and also used by the
// uninstrumented protobuf runtime in libtensorflow_framework.so.2, which
// grows the same fields without the annotations, a known false positive of
// partially instrumented builds (it fires during the runtime's own static
// initialization).
extern "C" __attribute__((visibility("default"), used, no_sanitize_address))
const char*
__asan_default_options() {
  return "detect_leaks=1:"
         "detect_container_overflow=0:"
         "handle_abort=1:"
         "allocator_may_return_null=0:"
         "max_allocation_size_mb=1024:"
         "hard_rss_limit_mb=2048:"
         "print_summary=1";
}
