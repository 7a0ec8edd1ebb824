#!/usr/bin/env bash
# scripts/install_deps.sh without apt: shims of dpkg-query (nothing installed), apt-cache (every
# package offered), apt-get (records what it would install) and sudo come first on PATH.
# scripts/train_mnist.sh installs what building and training need, not the tests' extras
# (PyTorch, clang, strace, ...); a plain install_deps.sh (scripts/test.sh's) installs those too.
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
cat > "$tmp/bin/apt-get" <<'EOF'
#!/bin/sh
[ "$1" = install ] && echo "$@" >> "$KILN_SHIM_LOG"
exit 0
EOF
cat > "$tmp/bin/sudo" <<'EOF'
#!/bin/sh
exec "$@"
EOF
# cmake: the version install_deps.sh may ask for; anything else (train_mnist.sh's configure
# after the install) stops the script there.
cat > "$tmp/bin/cmake" <<'EOF'
#!/bin/sh
[ "$1" = --version ] && { echo "cmake version ${KILN_SHIM_CMAKE:-3.25.1}"; exit 0; }
exit 42
EOF
chmod +x "$tmp/bin"/*
export PATH="$tmp/bin:$PATH" KILN_SHIM_LOG="$tmp/apt.log"
unset KILN_SKIP_TORCH
has() { tr ' ' '\n' < "$tmp/apt.log" | grep -qx "$1"; }

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
"$KILN_SRC/scripts/install_deps.sh" > "$tmp/out" 2>&1 || { echo "FAIL: install_deps.sh"; cat "$tmp/out"; exit 1; }
for p in cmake libgtest-dev libbenchmark-dev python3-matplotlib clang strace libclang-rt-dev python3-torch; do
  has "$p" || { echo "FAIL: install_deps.sh does not install $p"; cat "$tmp/apt.log"; exit 1; }
done
echo "PASS"
