#!/usr/bin/env python3
"""kiln's CUDA emulator: turn a .cu file into C++ the host compiler accepts.

Each launch `kernel<T><<<grid, block, smem, stream>>>(args)` becomes
`::kiln_emu::make_launcher("kernel<T>", grid, block, smem, stream)([](auto... a) { kernel<T>(a...); }, args)`
(a lambda, so template arguments are still deduced from the launch arguments); everything
else is left to the macros in cuda_runtime.h. A `#line` directive keeps compiler messages and
debugger locations pointing at the original file. Usage: rewrite_launches.py IN.cu OUT.cpp
"""
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;(){}]*>)?)\s*<<<(.*?)>>>\s*\((\s*\))?", re.S)


def rewrite(text):
    def repl(m):
        kernel, config, no_args = m.group(1), m.group(2), m.group(3)
        call = '::kiln_emu::make_launcher("%s", %s)([](auto... kiln_a) { %s(kiln_a...); }' % (kernel, config, kernel)
        return call + (")" if no_args else ", ")
    out = LAUNCH.sub(repl, text)
    if "<<<" in out:
        line = out[: out.index("<<<")].count("\n") + 1
        raise SystemExit("rewrite_launches.py: a launch at line %d was not understood" % line)
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        text = rewrite(f.read())
    with open(dst, "w") as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(text)


if __name__ == "__main__":
    main()
