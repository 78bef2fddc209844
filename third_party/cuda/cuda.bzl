"""CUDA sources in a Bazel 4 workspace, which has no CUDA rules.

cuda_object compiles one .cu.cc file with nvcc (@local_config_cuda//:nvcc.sh)
into a position-independent object that a cc_library lists in its srcs.
CUDA_ONLY marks targets that exist only under --config=cuda: elsewhere they
are incompatible, so `bazel build //...` and `bazel test //...` skip them.
"""

CUDA_ONLY = select({
    # A Label: the setting is monolith's also where another workspace
    # loads this file from @monolith.
    str(Label("//third_party/cuda:cuda_enabled")): [],
    "//conditions:default": ["@platforms//:incompatible"],
})

def cuda_object(name, src, hdrs = [], headers = []):
    """`name`.pic.o from nvcc -c `src`; `hdrs`: our headers it includes,
    `headers`: third-party ones (e.g. @local_config_cuda//:hkv_headers)."""

    # Includes are "monolith/...": from the execution root in this
    # workspace, from external/<name> where another one depends on @<name>.
    repository = native.repository_name().lstrip("@")
    root = "external/" + repository if repository else "."
    native.genrule(
        name = name,
        srcs = [src] + hdrs + headers,
        outs = [name + ".pic.o"],
        tools = ["@local_config_cuda//:nvcc.sh"],
        cmd = "$(location @local_config_cuda//:nvcc.sh) -I%s -c $(location %s) -o $@" % (root, src),
        target_compatible_with = CUDA_ONLY,
        message = "nvcc %s" % src,
    )
