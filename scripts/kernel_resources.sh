#!/usr/bin/env bash
# Per-kernel resources as ptxas assigns them for one architecture (no GPU needed): registers
# per thread, static shared memory per block, stack frame and spill bytes, and how many warps
# per SM the register count alone allows (65,536 registers per SM, allocated per warp in units
# of 256, at most 64 warps: sm_70 to sm_90). Occupancy also depends on the block size and the
# shared memory, which this table does not know; it is the compile-time half of the picture.
# Usage: scripts/kernel_resources.sh [ARCH]     (default 90)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$nvcc" ] || { echo "kernel_resources: no nvcc (set NVCC)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for cu in kernels/*/*.cu; do
  "$nvcc" -I. -O3 -DNDEBUG -DKILN_WITH_CUDA=1 -std=c++17 --expt-relaxed-constexpr \
    --generate-code=arch=compute_$arch,code=sm_$arch -Xptxas -v -c "$cu" -o "$tmp/k.o" \
    >"$tmp/$(basename "$cu").txt" 2>&1 || { cat "$tmp/$(basename "$cu").txt" >&2; exit 1; }
done
cat "$tmp"/*.txt | python3 /dev/fd/3 "$arch" 3<<'PY'
import re, subprocess, sys
rows, cur, frame = [], None, None
for line in sys.stdin:
    m = re.search(r"Compiling entry function '([^']+)'", line)
    if m:
        cur = m.group(1); continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m and cur:
        frame = tuple(int(x) for x in m.groups()); continue
    m = re.search(r"Used (\d+) registers", line)
    if m and cur:
        smem = re.search(r"(\d+) bytes smem", line)
        rows.append((cur, int(m.group(1)), int(smem.group(1)) if smem else 0, frame or (0, 0, 0)))
        cur, frame = None, None
names = subprocess.run(["c++filt"], input="\n".join(r[0] for r in rows), capture_output=True,
                       text=True).stdout.splitlines() or [r[0] for r in rows]
def short(n):  # drop namespaces and the parameter list, keep template arguments
    n = re.sub(r"kiln::|\(anonymous namespace\)::", "", n)
    depth, out = 0, ""
    for ch in n:
        if ch == "(" and depth == 0: break
        depth += ch == "<"; depth -= ch == ">"; out += ch
    return out.replace("void ", "")
def warps(regs):
    per_warp = -(-regs * 32 // 256) * 256
    return min(64, 65536 // per_warp)
print(f"{'kernel':<60} {'regs':>4} {'smem B':>7} {'stack B':>7} {'spill B':>7} {'warps/SM by regs':>16}")
spilled = 0
for (mangled, regs, smem, fr), name in sorted(zip(rows, names), key=lambda x: (-x[0][1], x[1])):
    spilled += fr[1] + fr[2] > 0
    print(f"{short(name)[:60]:<60} {regs:>4} {smem:>7} {fr[0]:>7} {fr[1] + fr[2]:>7} {warps(regs):>16}")
print(f"{len(rows)} kernels, {spilled} with spills (sm_{sys.argv[1]})")
PY
