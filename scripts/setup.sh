#!/usr/bin/env bash
# One-time, idempotent machine setup for intervened.
#  - system packages needed at build time: libudev-dev and pkg-config (gilrs), libclang-dev
#    (bindgen, for the V4L2 bindings of the `v4l` crate that crates/camera uses); and at run
#    time ffmpeg (`export lerobot` encodes camera images as MP4 with it; LeRobot's torchcodec
#    decoder loads its libraries);
#  - libtorch 2.13.0 (what tch 0.26 expects), from PyPI's torch==2.13.0 wheel, into a per-user
#    cache outside the repository; `.libtorch` in the checkout points at it so that
#    `.cargo/config.toml` can hand it to tch with a relative path.
# Safe to run any number of times: each step checks before it acts.
set -euo pipefail

TORCH_VERSION=2.13.0
CUDA_TOOLKIT=13.0.3   # the pin torch 2.13.0 declares
mode=demo
case "${1:-}" in
  --test) mode=test ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
esac
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/intervened
venv=$cache/torch-$TORCH_VERSION
say() { printf '[setup] %s\n' "$*" >&2; }

# --- system packages ------------------------------------------------------------------------
need_pkgs=()
pkg-config --exists libudev 2>/dev/null || need_pkgs+=(libudev-dev)
command -v pkg-config >/dev/null 2>&1 || need_pkgs+=(pkg-config)
# bindgen loads libclang at build time; Debian's libclang-dev puts it under /usr/lib/llvm-N/lib.
compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null || need_pkgs+=(libclang-dev)
# LeRobot export of camera video pipes frames to the ffmpeg program (H.264, libx264).
command -v ffmpeg >/dev/null 2>&1 || need_pkgs+=(ffmpeg)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    say "installing ${need_pkgs[*]} (build-time: gilrs, bindgen for V4L2; ffmpeg: video export)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    say "missing system packages: ${need_pkgs[*]}"
    say "run:  sudo apt-get install -y ${need_pkgs[*]}"
    exit 1
  fi
fi

# --- libtorch -------------------------------------------------------------------------------
# The Rust side needs only libtorch_cpu, which links two CUDA runtime libraries (cudart, cupti)
# even in CPU use. So torch is installed without its dependency tree plus exactly those two, from
# the cuda-toolkit pin torch 2.13.0 itself declares: about 1.4 GB instead of 4.9 GB.
# `--test` adds what the tests need: the rest of torch's dependencies (so that Python's
# `import torch` works, for torch.jit.load as a referee), the independent implementations in
# scripts/requirements-test.txt, and LeRobot in its own venv.
site_torch() { "$venv/bin/python" -c 'import os,importlib.util as u; print(os.path.dirname(u.find_spec("torch").origin))' 2>/dev/null; }
installed_version() { "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m
print(m.version("torch"))
PY
}
# pip's output goes to a log, shown only if pip fails: installing torch without its dependency
# tree makes pip list every package it "misses", which is expected here and not an error.
pipq() {
  mkdir -p "$cache"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir "$@" >"$cache/pip.log" 2>&1; then
    cat "$cache/pip.log" >&2
    say "pip install $* failed (log above, also in $cache/pip.log)"
    exit 1
  fi
}
if [ ! -x "$venv/bin/python" ] || [ "$(installed_version)" != "$TORCH_VERSION" ]; then
  say "installing torch==$TORCH_VERSION (libtorch only) into $venv (once per machine; about 1.4 GB)"
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv"
  pipq --no-deps "torch==$TORCH_VERSION"
fi
got=$(installed_version)
[ "$got" = "$TORCH_VERSION" ] || { say "torch in $venv is '$got', expected $TORCH_VERSION"; exit 1; }
torch_dir=$(site_torch)
[ -f "$torch_dir/lib/libtorch_cpu.so" ] || { say "no libtorch_cpu.so under $torch_dir/lib"; exit 1; }
if ldd "$torch_dir/lib/libtorch_cpu.so" | grep -q 'not found'; then
  say "installing the CUDA runtime libraries libtorch_cpu links (cuda-toolkit[cudart,cupti]==$CUDA_TOOLKIT)"
  pipq "cuda-toolkit[cudart,cupti]==$CUDA_TOOLKIT"
fi
if missing=$(ldd "$torch_dir/lib/libtorch_cpu.so" | grep 'not found'); then
  say "libtorch_cpu.so still misses shared libraries:"; printf '%s\n' "$missing" >&2; exit 1
fi
ln -sfn "$torch_dir" "$repo/.libtorch"
# The venv beside libtorch (.venv/bin/python) runs the tests that check Python interop.
ln -sfn "$venv" "$repo/.venv"

if [ "$mode" = test ]; then
  # Python's torch (libtorch_python) links the whole CUDA stack: install torch's full dependency
  # set, then the independent implementations the tests check this project against.
  req=$repo/scripts/requirements-test.txt
  stamp=$venv/.requirements-test.sha256
  want=$( (sha256sum "$req"; echo "torch-full") | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing torch's Python dependencies and scripts/requirements-test.txt (tests only)"
    pipq "torch==$TORCH_VERSION" numpy -r "$req"
    echo "$want" > "$stamp"
  fi
  # LeRobot 0.4.4 (what Python 3.11 gets; it reads and writes LeRobotDataset v3.0) in its own
  # venv, because it pins its own torch. The export test loads our datasets with it, unchanged.
  lerobot=$cache/lerobot-0.4.4
  if ! "$lerobot/bin/python" -c 'import lerobot.datasets.lerobot_dataset' >/dev/null 2>&1; then
    say "installing lerobot==0.4.4 into $lerobot (tests only; once per machine, a few minutes)"
    rm -rf "$lerobot"
    python3 -m venv "$lerobot"
    "$lerobot/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir "lerobot==0.4.4"
  fi
  ln -sfn "$lerobot" "$repo/.lerobot-venv"
fi
say "libtorch $got ready at $torch_dir"
