"""CUDA sources in a Bazel 4 workspace, which has no CUDA rules.

cuda_object compiles one .cu.cc file with nvcc (@local_config_cuda//:nvcc.sh)
into a position-independent object that a cc_library lists in its srcs.
CUDA_ONLY marks targets that exist only under --config=cuda: elsewhere they
are incompatible, so `bazel build //...` and `bazel test //...` skip them.
"""

CUDA_ONLY = select({
    "//third_party/cuda:cuda_enabled": [],
    "//conditions:default": ["@platforms//:incompatible"],
})

def cuda_object(name, src, hdrs = [], headers = ["@local_config_cuda//:cuco_headers"]):
    """`name`.pic.o from nvcc -c `src`; `hdrs`: our headers it includes."""
    native.genrule(
        name = name,
        srcs = [src] + hdrs + headers,
        outs = [name + ".pic.o"],
        tools = ["@local_config_cuda//:nvcc.sh"],
        cmd = "$(location @local_config_cuda//:nvcc.sh) -c $(location %s) -o $@" % src,
        target_compatible_with = CUDA_ONLY,
        message = "nvcc %s" % src,
    )
