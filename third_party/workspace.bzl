"""All external repositories of the monolith workspace, every one local.

Our WORKSPACE calls monolith_dependencies(); so does a workspace that depends
on monolith through local_repository:

    local_repository(name = "monolith", path = "/path/to/monolith")
    load("@monolith//third_party:workspace.bzl", "monolith_dependencies")
    monolith_dependencies()
    register_toolchains("@local_config_tf//:py_toolchain")

Repositories the caller already defined are left alone.
"""

load("//third_party:debian_rules.bzl", "offline_coverage_tools", "patched_rules_cc")
load("//third_party/cuda:cuda_configure.bzl", "cuda_configure")
load("//third_party/tf:tf_configure.bzl", "tf_configure")

# Debian's bazel-* packages install these rule sets (see ci/bootstrap.sh).
_DEBIAN_RULE_SETS = {
    "platforms": "/usr/share/bazel/tools/platforms",
    "bazel_skylib": "/usr/share/bazel/tools/skylib",
    "rules_java": "/usr/share/bazel/rules/java",
    "rules_proto": "/usr/share/bazel/rules/proto",
}

def _missing(name):
    return native.existing_rule(name) == None

def monolith_dependencies():
    for name, path in _DEBIAN_RULE_SETS.items():
        if _missing(name):
            native.local_repository(name = name, path = path)
    if _missing("rules_cc"):
        patched_rules_cc(name = "rules_cc", path = "/usr/share/bazel/rules/cc")
    if _missing("remote_coverage_tools"):
        offline_coverage_tools(name = "remote_coverage_tools")
    if _missing("com_google_googletest"):
        native.new_local_repository(
            name = "com_google_googletest",
            build_file = str(Label("//third_party:gtest.BUILD")),
            path = "/usr",
        )
    if _missing("local_config_tf"):
        tf_configure(name = "local_config_tf")
    if _missing("local_config_cuda"):
        cuda_configure(name = "local_config_cuda")
