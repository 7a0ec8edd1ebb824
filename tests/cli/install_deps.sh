#!/usr/bin/env bash
# scripts/install_deps.sh without apt: shims of dpkg-query (nothing installed), apt-cache (every
# package offered), apt-get (records what it would install) and sudo come first on PATH.
# scripts/train_mnist.sh installs what building and training need, not the tests' extras
# (PyTorch, clang, strace, ...); a plain install_deps.sh (scripts/test.sh's) installs those too.
# A CMake older than 3.25 (Ubuntu 22.04's apt has 3.22) is one line naming both versions, exit 1;
# a new enough one already on PATH (pip, Kitware) is not installed again.
set -euo pipefail
: "${KILN_SRC:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin"
cat > "$tmp/bin/dpkg-query" <<'EOF'
#!/bin/sh
exit 1
EOF
cat > "$tmp/bin/apt-cache" <<'EOF'
#!/bin/sh
echo "  Candidate: 1.0"
EOF
# apt's cmake is version $KILN_SHIM_APT_CMAKE: installing it writes what the cmake shim reports.
cat > "$tmp/bin/apt-get" <<'EOF'
#!/bin/sh
[ "$1" = install ] || exit 0
echo "$@" >> "$KILN_SHIM_LOG"
case " $* " in *" cmake "*) echo "${KILN_SHIM_APT_CMAKE:-3.25.1}" > "$KILN_SHIM_CMAKE" ;; esac
EOF
cat > "$tmp/bin/sudo" <<'EOF'
#!/bin/sh
exec "$@"
EOF
# cmake: none until installed (or $KILN_SHIM_CMAKE written); anything but --version
# (train_mnist.sh's configure after the install) stops the script there.
cat > "$tmp/bin/cmake" <<'EOF'
#!/bin/sh
[ -f "$KILN_SHIM_CMAKE" ] || exit 127
[ "$1" = --version ] && { echo "cmake version $(cat "$KILN_SHIM_CMAKE")"; exit 0; }
exit 42
EOF
chmod +x "$tmp/bin"/*
export PATH="$tmp/bin:$PATH" KILN_SHIM_LOG="$tmp/apt.log" KILN_SHIM_CMAKE="$tmp/cmake_version"
unset KILN_SKIP_TORCH
has() { tr ' ' '\n' < "$tmp/apt.log" | grep -x "$1" >/dev/null; }

# train_mnist.sh: stops at the (shim) configure, after installing.
rc=0
"$KILN_SRC/scripts/train_mnist.sh" > "$tmp/out" 2>&1 || rc=$?
[ "$rc" = 42 ] && [ -s "$tmp/apt.log" ] || { echo "FAIL: train_mnist.sh rc $rc"; cat "$tmp/out"; exit 1; }
for p in cmake g++ libopenblas-dev libgtest-dev zlib1g-dev; do
  has "$p" || { echo "FAIL: train_mnist.sh does not install $p"; cat "$tmp/apt.log"; exit 1; }
done
for p in python3-torch clang libclang-rt-dev strace python3-matplotlib; do
  ! has "$p" || { echo "FAIL: train_mnist.sh installs the tests' $p"; cat "$tmp/apt.log"; exit 1; }
done

# A plain install_deps.sh (scripts/test.sh): everything the tests use.
: > "$tmp/apt.log"
rm -f "$tmp/cmake_version"
"$KILN_SRC/scripts/install_deps.sh" > "$tmp/out" 2>&1 || { echo "FAIL: install_deps.sh"; cat "$tmp/out"; exit 1; }
for p in cmake libgtest-dev libbenchmark-dev python3-matplotlib clang strace libclang-rt-dev python3-torch; do
  has "$p" || { echo "FAIL: install_deps.sh does not install $p"; cat "$tmp/apt.log"; exit 1; }
done

# apt's CMake 3.22: one line naming it and 3.25, exit 1 (not CMake's own error at the configure).
: > "$tmp/apt.log"
rm -f "$tmp/cmake_version"
rc=0
KILN_SHIM_APT_CMAKE=3.22.1 "$KILN_SRC/scripts/install_deps.sh" --train > "$tmp/out" 2> "$tmp/err" || rc=$?
[ "$rc" = 1 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "found CMake 3.22.1, kiln needs 3.25 or newer" "$tmp/err" ||
  { echo "FAIL: CMake 3.22 rc $rc"; cat "$tmp/out" "$tmp/err"; exit 1; }
# A CMake 3.28 already on PATH: not installed from apt.
: > "$tmp/apt.log"
echo 3.28.3 > "$tmp/cmake_version"
"$KILN_SRC/scripts/install_deps.sh" --train > "$tmp/out" 2>&1 || { echo "FAIL: with CMake 3.28"; cat "$tmp/out"; exit 1; }
! has cmake || { echo "FAIL: apt's cmake installed over a CMake 3.28 on PATH"; cat "$tmp/apt.log"; exit 1; }
echo "PASS"
