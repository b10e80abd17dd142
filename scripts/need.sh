#!/usr/bin/env bash
# Installs (through scripts/apt-install.sh) the Debian packages of the commands that are missing.
#   scripts/need.sh COMMAND[=PACKAGE[,PACKAGE...]]...
# The package is the command's name unless given. A command counts as present when it is on the
# PATH or in /usr/sbin (mariadbd is there, off a non-root PATH); a COMMAND that is an absolute
# path (a library's file) counts as present when that file exists.
set -euo pipefail
pkgs=()
for spec in "$@"; do
  cmd=${spec%%=*}
  if [[ $cmd == /* ]]; then
    [ -e "$cmd" ] && continue
  elif command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ]; then
    continue
  fi
  IFS=, read -ra p <<<"${spec#*=}"
  pkgs+=("${p[@]}")
done
exec "$(dirname "$0")/apt-install.sh" "${pkgs[@]}"
