#!/usr/bin/env bash
# make lint: clang-format check on every tracked C++ file, then clang-tidy
# (config in .clang-tidy) on our sources using the build's compile_commands.json.
set -euo pipefail
build_dir=${1:-build}
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files '*.cc' '*.h')
echo "clang-format: ${#files[@]} files"
clang-format --dry-run --Werror "${files[@]}"

# Generated protobuf sources must exist before clang-tidy reads our includes.
cmake --build "$build_dir" --target rectifier_proto rectifier_test_proto >/dev/null

mapfile -t sources < <(git ls-files 'server/*.cc' 'tools/*.cc' 'tests/*.cc' 'bench/*.cc')
echo "clang-tidy: ${#sources[@]} files"
printf '%s\n' "${sources[@]}" |
  xargs -P "${JOBS:-2}" -n 4 clang-tidy -p "$build_dir" --quiet 2> >(grep -v "warnings generated" >&2)
echo "lint: clean"
