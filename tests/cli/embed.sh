#!/usr/bin/env bash
# Embedding: `cmake --install` of this build into a temporary prefix, then examples/embed/ is
# configured against it with find_package(kiln), built, and run (it trains a few steps on
# synthetic data on the CPU, saves a checkpoint and reloads it). Also checks that the installed
# headers carry no `using namespace` and that libkiln.a pulls in no app libraries.
set -euo pipefail
: "${KILN_BIN:?}" "${KILN_SRC:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$KILN_BIN" --prefix "$tmp/prefix" > "$tmp/install.log"
lib=$(find "$tmp/prefix" -name libkiln.a | head -1)
[ -n "$lib" ] || { echo "FAIL: libkiln.a not installed"; exit 1; }
[ -f "$tmp/prefix/include/kiln/engine/trainer.h" ] || { echo "FAIL: headers not installed"; exit 1; }
find "$tmp/prefix" -name kilnConfig.cmake | grep . >/dev/null || { echo "FAIL: no kilnConfig.cmake"; exit 1; }
if grep -rln '^\s*using namespace' "$tmp/prefix/include/kiln"; then
  echo "FAIL: installed headers above contain 'using namespace'"; exit 1
fi
# Every installed header compiles on its own for a consumer of this build (a CPU-only build
# installs no header that needs the CUDA toolkit's), also for one whose include path puts its
# own engine/ and layers/ headers first (as CMake does: -I before kiln's -isystem): kiln's
# headers include each other as "kiln/engine/x.h" once installed.
mkdir -p "$tmp/hijack/engine" "$tmp/hijack/layers"
for h in engine/buffer.h engine/tensor.h engine/error.h layers/layer.h; do
  echo '#error "a consumer header stood in for kiln'"'"'s"' > "$tmp/hijack/$h"
done
grep -rq '#include "engine/' "$tmp/prefix/include/kiln" && { echo "FAIL: an installed header includes \"engine/...\""; exit 1; }
defs=()
grep -q 'KILN_WITH_CUDA' "$(find "$tmp/prefix" -name 'kilnTargets.cmake' | head -1)" &&
  defs=(-DKILN_WITH_CUDA=1 -I/usr/local/cuda/include)
n=0
while IFS= read -r h; do
  rel=${h#"$tmp/prefix/include/kiln/"}
  printf '#include <kiln/%s>\n' "$rel" | c++ -std=c++17 -fsyntax-only -Wall -Wextra -Werror \
    -I"$tmp/hijack" -isystem "$tmp/prefix/include/kiln" -isystem "$tmp/prefix/include" "${defs[@]}" -x c++ - 2> "$tmp/hdr.err" ||
    { echo "FAIL: installed header $rel does not compile alone"; head -5 "$tmp/hdr.err"; exit 1; }
  n=$((n + 1))
done < <(find "$tmp/prefix/include/kiln" -name '*.h' | sort)
echo "$n installed headers compile alone"
# The core library must not depend on YAML/CLI libraries, nor call exit() or print.
if nm -C --undefined-only "$lib" | grep -E 'YAML::|CLI::' | head -3 | grep .; then
  echo "FAIL: libkiln.a references app libraries"; exit 1
fi
# (Writing to files it was asked to write, e.g. JSONL logs, is fine, through streams; stdout/stderr
# are not. Its process calls are kill, a kill(pid, 0) probe, and std::terminate.) The names are
# matched whole in nm's name column: `grep -w` took `_` for a word character and missed
# __printf_chk, what printf compiles to under _FORTIFY_SOURCE, as it missed std::clog and perror.
exit_print='_?_?exit|_Exit|quick_exit|abort|__assert_(perror_)?fail|v?errx?|v?warnx?|error|perror'
exit_print+='|(__)?v?[fd]?w?printf(_chk)?|puts|fputs|fputws|putchar|putwchar|stdout|stderr'
exit_print+='|_ZSt4(cout|cerr|clog)|_ZSt5(wcout|wcerr|wclog)'
exits_or_prints() { nm --undefined-only "$1" | awk 'NF == 2 {print $2}' | grep -xE "$exit_print" | LC_ALL=C sort -u; }
# The check catches a toy archive's printf (under -O2 -D_FORTIFY_SOURCE=2), std::clog and perror.
printf '%s\n' '#include <cstdio>' '#include <iostream>' \
  'void toy(int x) { std::printf("%d\n", x); std::clog << x; std::perror("toy"); }' > "$tmp/toy.cpp"
c++ -std=c++17 -O2 -D_FORTIFY_SOURCE=2 -c "$tmp/toy.cpp" -o "$tmp/toy.o"
ar rcs "$tmp/libtoy.a" "$tmp/toy.o"
[ "$(exits_or_prints "$tmp/libtoy.a" | wc -l)" -eq 3 ] ||
  { echo "FAIL: the exit/print check misses some of the toy's calls"; nm --undefined-only "$tmp/libtoy.a"; exit 1; }
if exits_or_prints "$lib" | grep .; then
  echo "FAIL: libkiln.a calls exit/abort or prints (symbols above)"; exit 1
fi
gen=()
command -v ninja > /dev/null && gen=(-G Ninja)
cmake -S "$KILN_SRC/examples/embed" -B "$tmp/build" "${gen[@]}" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_BUILD_TYPE=Release > "$tmp/configure.log" || { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/build" > "$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
cd "$tmp"
"$tmp/build/embed_example" "$tmp/embed.safetensors"
[ -s "$tmp/embed.safetensors" ] || { echo "FAIL: no checkpoint written"; exit 1; }
# It records no run options: kiln_eval, which rebuilds the model from them, says so (it read the
# file as the default cnn's and named a missing tensor).
rc=0
"$KILN_BIN/kiln_eval" "$tmp/embed.safetensors" --data-dir "$KILN_TEST_DATA" > "$tmp/eval" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "records no run options (written through the library without CheckpointInfo::config)" "$tmp/eval" ||
  { echo "FAIL: kiln_eval on a library checkpoint (rc $rc)"; cat "$tmp/eval"; exit 1; }
echo "embed: OK"
