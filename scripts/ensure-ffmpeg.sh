#!/usr/bin/env bash
# Make sure ffmpeg and ffprobe exist; install them where we know how. Fast when they are there.
set -euo pipefail
have() { [ -n "${2:-}" ] && [ -x "$2" ] && return 0; command -v "$1" >/dev/null 2>&1; }
if have ffmpeg "${MEDIAPREP_FFMPEG:-}" && have ffprobe "${MEDIAPREP_FFPROBE:-}"; then
  exit 0
fi
echo "ffmpeg/ffprobe not found: installing them" >&2
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "apt-get needs root: run 'sudo apt-get install ffmpeg'" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
elif command -v brew >/dev/null 2>&1; then
  brew install ffmpeg
else
  echo "Please install ffmpeg (it includes ffprobe) from https://ffmpeg.org/download.html," >&2
  echo "or point MEDIAPREP_FFMPEG and MEDIAPREP_FFPROBE at the binaries." >&2
  exit 1
fi
command -v ffprobe >/dev/null 2>&1 || { echo "ffmpeg was installed but ffprobe is still missing" >&2; exit 1; }
