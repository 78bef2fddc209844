#!/usr/bin/env bash
# Makes this machine ready to build the workspace, idempotently:
#   1. Debian packages: Bazel 4 and its rule sets, googletest.
#   2. The Python venv from ci/requirements.lock: ci/requirements.txt (TF, TF
#      Serving API, protoc) with every dependency pinned and hash-checked.
#   3. The HierarchicalKV headers for the CUDA build's benchmark
#      (--config=cuda), from the PyPI sdist merlin-sok (exact version,
#      sha256-checked), unpacked under ~/.cache/monolith/third_party.
#   4. .bazelrc.user, which points Bazel at the venv interpreter and at
#      those headers, and puts Bazel's sandboxes on /dev/shm where it has
#      room.
# Once done it costs a few milliseconds: every step is keyed by a stamp.
# Environment (relative folders are taken from the checkout's root):
# MONOLITH_VENV (venv folder, default ~/.cache/monolith/venv),
# MONOLITH_BASE_PYTHON (interpreter that creates the venv, default python3),
# MONOLITH_THIRD_PARTY (folder of unpacked third-party sources, default
# ~/.cache/monolith/third_party).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Absolute: .bazelrc.user hands them to Bazel's repository rules. Relative
# ones are taken from the checkout's root, so ./bazelw run from any folder
# (e.g. examples/consumer) means the same venv.
venv=$(cd "$root" && realpath -m "${MONOLITH_VENV:-$HOME/.cache/monolith/venv}")
base_python=${MONOLITH_BASE_PYTHON:-python3}
# What pip installs: every package pinned with its files' sha256
# (ci/lock_requirements.py writes it from ci/requirements.txt).
requirements="$root/ci/requirements.lock"
rc_user="$root/.bazelrc.user"
third_party=$(cd "$root" && realpath -m "${MONOLITH_THIRD_PARTY:-$HOME/.cache/monolith/third_party}")
# merlin-sok's sdist carries HierarchicalKV (upstream 28046ba), the GPU
# benchmark's peer.
sok_version=2.1.0
sok_sha256=bd744499effd3bd4e17c95a7bc7eb30cdb89b92eec10313e8f428565a6a02b61
sok_dir="$third_party/merlin-sok-$sok_version"

apt_packages=(bazel-bootstrap bazel-platforms bazel-rules-cc bazel-rules-proto
  bazel-skylib bazel-rules-java libgtest-dev g++)

log() { echo "[bootstrap] $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    log "installing Debian packages needs root: run ./bazelw as root, or install sudo"
    exit 1
  fi
}

# Sandboxes on tmpfs: each compile links ~9k TF headers (a clean build 16 s
# there, 27 s on disk), and each sandbox takes ~25-35 MB and ~10k inodes while
# its action runs. Only where /dev/shm has room for many: a container's
# default 64 MiB would fail the build ("No space left on device").
sandbox_base=""
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  shm_free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
  shm_free_inodes=$(df -Pi /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
  if [ "${shm_free_kib:-0}" -ge $((4 << 20)) ] && [ "${shm_free_inodes:-0}" -ge 500000 ]; then
    sandbox_base=/dev/shm
  fi
fi

# Hash of what the set-up depends on; the stamp in .bazelrc.user records it.
stamp=$( (cat "$requirements" "${BASH_SOURCE[0]}"; echo "$venv $sok_dir $sandbox_base") | sha256sum | cut -c1-16)
req_hash=$(sha256sum "$requirements" | cut -c1-16)
# Whether the venv's python runs as the Python it was made with (major.minor):
# bin/python links to the base interpreter, which may since have been removed
# (pyenv uninstall) or upgraded in place (3.11 to 3.13, whose python finds
# none of the venv's packages). ~10 ms.
venv_runs() {
  local made running
  made=$(sed -n 's/^version *= *\([0-9]*\.[0-9]*\).*/\1/p' "$venv/pyvenv.cfg" 2>/dev/null)
  running=$("$venv/bin/python" -S -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
  [ -n "$made" ] && [ "$made" = "$running" ]
}
# The venv may be shared by clones: its own marker says what it holds.
ready() {
  [ -f "$rc_user" ] && grep -q "^# stamp $stamp\$" "$rc_user" && venv_runs \
    && [ "$(cat "$venv/.monolith-requirements" 2>/dev/null)" = "$req_hash" ] \
    && [ -f "$sok_dir/.complete" ] && command -v bazel >/dev/null
}
ready && exit 0

# The lock's wheels and Debian's googletest paths (third_party/gtest.BUILD)
# are x86_64's: elsewhere the build would fail late, on a missing library.
if [ "$(uname -m)" != x86_64 ]; then
  log "monolith builds on Linux x86_64 only (this machine is $(uname -m)): ci/requirements.lock and third_party/gtest.BUILD are x86_64's"
  exit 1
fi

# One set-up at a time (clones share the venv and third-party folders, and
# apt-get its lock); a run that waited may find the work done.
mkdir -p "$third_party"
lock="$third_party/.bootstrap.lock"
# flock needs the file open, not writable (a shared, read-only cache).
if { exec 9>>"$lock"; } 2>/dev/null || { exec 9<"$lock"; } 2>/dev/null; then
  flock -n 9 || { log "waiting for another set-up ($lock)"; flock 9; }
fi
ready && exit 0

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ! "$base_python" -c "import ensurepip, venv" 2>/dev/null; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  # Waits for another apt (a fresh VM's apt-daily or unattended-upgrades)
  # to let go of its locks instead of failing at once: DPkg::Lock::Timeout
  # covers dpkg's lock; update's lists lock is retried.
  # Other failures (the network, a source's expired key) are retried 3
  # times; then the install goes on with the lists there are, if any.
  other_failures=0
  for attempt in $(seq 60); do
    # LC_ALL=C: the lock messages matched below are translated otherwise.
    if update_errors=$(as_root env LC_ALL=C apt-get -o DPkg::Lock::Timeout=600 update -qq 2>&1); then
      break
    fi
    echo "$update_errors" >&2
    if ! grep -qiE "could not get lock|unable to lock" <<< "$update_errors"; then
      other_failures=$((other_failures + 1))
      if [ "$other_failures" -ge 3 ]; then
        if ! compgen -G "/var/lib/apt/lists/*_Packages*" > /dev/null; then
          log "apt-get update failed 3 times (above) and there are no package lists to install from: fix the network or that source, then run ./bazelw again"
          exit 1
        fi
        log "apt-get update failed 3 times (above; fix or remove that source); installing from the package lists there are"
        break
      fi
    elif [ "$attempt" -eq 60 ]; then
      log "apt-get update: another apt held its lock for 10 minutes; run ./bazelw again once it is done"
      exit 1
    fi
    log "apt-get update failed; retrying in 10 s"
    sleep 10
  done
  apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get \
      -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
  }
  if ! apt_install; then
    # A set-up killed inside dpkg leaves it interrupted, and apt refuses
    # every install until dpkg finishes configuring what it unpacked.
    log "apt-get install failed: finishing an interrupted dpkg run (dpkg --configure -a), then retrying"
    as_root env DEBIAN_FRONTEND=noninteractive dpkg --configure -a
    apt_install
  fi
fi

if [ -f "$venv/.monolith-requirements" ] && ! venv_runs; then
  log "$venv/bin/python does not run as the Python the venv was made with (removed or upgraded since?): making the venv again"
  rm -rf "$venv"
fi
if [ "$(cat "$venv/.monolith-requirements" 2>/dev/null)" != "$req_hash" ]; then
  log "setting up the Python venv in $venv (TensorFlow: about 2 GB, under a minute)"
  # Gone until the install succeeds: a run killed inside pip leaves a venv
  # that no clone takes as ready.
  rm -f "$venv/.monolith-requirements"
  # Also over an existing folder: a run killed inside venv left python
  # without pip, which this installs.
  "$base_python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
    -r "$requirements"
  echo "$req_hash" > "$venv/.monolith-requirements"
fi

if [ ! -f "$sok_dir/.complete" ]; then
  log "fetching merlin-sok $sok_version (HierarchicalKV headers, 8.7 MB)"
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  # From the index pip uses, sha256-checked, and never run (pip download
  # would run the sdist's build code and fetch its build requirements).
  archive=$("$venv/bin/python" "$root/ci/fetch_sdist.py" merlin-sok "$sok_version" \
    "$sok_sha256" "$download")
  prefix="merlin-sok-$sok_version"
  hkv="$prefix/third_party/HierarchicalKV"
  tar -xzf "$archive" -C "$download" "$hkv/include" "$hkv/LICENSE"
  rm -rf "$sok_dir.tmp"
  mkdir -p "$sok_dir.tmp"
  mv "$download/$hkv" "$sok_dir.tmp/HierarchicalKV"
  echo "merlin-sok==$sok_version sha256 $sok_sha256" > "$sok_dir.tmp/.complete"
  rm -rf "$sok_dir"
  mv "$sok_dir.tmp" "$sok_dir"
fi

tmp="$rc_user.tmp.$$"
cat > "$tmp" <<RC
# Generated by ci/bootstrap.sh (run by ./bazelw); do not edit.
# stamp $stamp
build "--repo_env=MONOLITH_PYTHON=$venv/bin/python"
fetch "--repo_env=MONOLITH_PYTHON=$venv/bin/python"
query "--repo_env=MONOLITH_PYTHON=$venv/bin/python"
sync "--repo_env=MONOLITH_PYTHON=$venv/bin/python"
RC
for command in build fetch query sync; do
  # Quoted: Bazel splits rc lines like a shell (paths with spaces).
  echo "$command \"--repo_env=MONOLITH_SOK=$sok_dir\"" >> "$tmp"
  # A change of the venv's packages re-configures @local_config_tf ...
  echo "$command --repo_env=MONOLITH_REQUIREMENTS=$req_hash" >> "$tmp"
done
# ... and re-runs the tests, which import them from the venv.
echo "test --test_env=MONOLITH_REQUIREMENTS=$req_hash" >> "$tmp"
# Sandboxes deleted when their action ends, so that a full build does not
# exhaust /dev/shm's memory and inodes (~25-35 MB and ~10k inodes each; "No
# space left on device"): Debian's /etc/bazel/bazelrc turns on
# --sandbox_debug, which keeps every one; and at once, not by the idle-time
# deleter. Here, not in .bazelrc, so that workspaces depending on monolith
# get them with the sandbox base.
echo "build --nosandbox_debug" >> "$tmp"
echo "build --experimental_sandbox_async_tree_delete_idle_threads=0" >> "$tmp"
if [ -n "$sandbox_base" ]; then
  echo "build --sandbox_base=$sandbox_base" >> "$tmp"
else
  log "/dev/shm has under 4 GiB or 500k inodes free: Bazel's sandboxes stay on disk (slower compiles)"
fi
mv "$tmp" "$rc_user"
log "ready: bazel uses $venv/bin/python"
