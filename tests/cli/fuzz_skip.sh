#!/usr/bin/env bash
# scripts/fuzz.sh without libFuzzer's runtime (libclang-rt-dev, which an image without
# recommends lacks): a clang++ shim whose link fails as clang's does then. fuzz.sh says
# "skipped" and exits 0 before configuring (it failed at the link under set -e, and test.sh with
# it); a clang++ that cannot compile at all is an error (exit 1), not a skip; where the real
# clang++ links a fuzz target, it goes on to configure (a cmake shim, exit 42).
set -euo pipefail
: "${KILN_SRC:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin" "$tmp/cc"
cat > "$tmp/bin/cmake" <<'EOF'
#!/bin/sh
exit 42
EOF
# Compiles (writes its -o file), fails to link as clang does without the runtime.
cat > "$tmp/cc/clang++" <<'EOF'
#!/bin/sh
case " $* " in *" -c "*)
  while [ $# -gt 0 ]; do [ "$1" = -o ] && : > "$2"; shift; done; exit 0 ;;
esac
echo "/usr/bin/ld: cannot find /usr/lib/llvm/lib/clang/lib/linux/libclang_rt.fuzzer-x86_64.a: No such file or directory" >&2
echo "clang: error: linker command failed with exit code 1 (use -v to see invocation)" >&2
exit 1
EOF
# Cannot compile at all (no C++ headers): an error, not a skip that would pass CI unfuzzed.
mkdir "$tmp/cc2"
cat > "$tmp/cc2/clang++" <<'EOF'
#!/bin/sh
echo "t.cpp:1:10: fatal error: 'cstddef' file not found" >&2
exit 1
EOF
chmod +x "$tmp/bin/cmake" "$tmp/cc/clang++" "$tmp/cc2/clang++"
export KILN_FUZZ_BUILD="$tmp/build"
rc=0
PATH="$tmp/cc:$tmp/bin:$PATH" "$KILN_SRC/scripts/fuzz.sh" 1 > "$tmp/out" 2>&1 || rc=$?
[ "$rc" = 0 ] && grep -q "fuzz.sh: skipped: clang++ cannot link a libFuzzer target .*libclang_rt.fuzzer" "$tmp/out" ||
  { echo "FAIL: fuzz.sh without libFuzzer (rc $rc)"; cat "$tmp/out"; exit 1; }
rc=0
PATH="$tmp/cc2:$tmp/bin:$PATH" "$KILN_SRC/scripts/fuzz.sh" 1 > "$tmp/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "fuzz.sh: clang++ cannot compile a fuzz target: .*'cstddef' file not found" "$tmp/out" ||
  { echo "FAIL: fuzz.sh with a clang++ that cannot compile (rc $rc)"; cat "$tmp/out"; exit 1; }
# Where this machine's clang++ links a fuzz target, fuzz.sh must not skip.
if command -v clang++ > /dev/null && printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
    'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' |
    clang++ -x c++ - -fsanitize=fuzzer,address,undefined -o "$tmp/t" 2> /dev/null; then
  rc=0
  PATH="$tmp/bin:$PATH" "$KILN_SRC/scripts/fuzz.sh" 1 > "$tmp/out" 2>&1 || rc=$?
  [ "$rc" = 42 ] && ! grep -q skipped "$tmp/out" ||
    { echo "FAIL: fuzz.sh with the real clang++ did not reach its configure (rc $rc)"; cat "$tmp/out"; exit 1; }
fi
echo "PASS"
