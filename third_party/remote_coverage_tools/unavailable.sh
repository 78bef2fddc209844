#!/bin/sh
echo "bazel coverage is not available: this workspace builds offline" >&2
exit 1
