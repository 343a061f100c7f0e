"""Runs two benchmark commands alternately and prints their figures and ratios side by side.

On a shared virtual machine the speed wanders by tens of per cent from one minute to the next,
so one run of each says little. This runs A, B, A, B, ... for the given number of rounds; both
commands print one JSON object, and every numeric key the two share is compared round by round
(A / B), with the median ratio over the rounds at the end.

Usage: python3 benches/compare/alternate.py ROUNDS -- A_COMMAND ... -- B_COMMAND ...
e.g.   python3 benches/compare/alternate.py 5 \\
           -- target/release/latticeml bench flow --device cpu --seconds 3 --json \\
           -- /tmp/torchvenv/bin/python benches/compare/torch_flow.py 3
"""
import json
import statistics
import subprocess
import sys


def parse(argv):
    if len(argv) < 2 or argv[1] != "--" or argv[2:].count("--") != 1:
        sys.exit(__doc__)
    rounds = int(argv[0])
    rest = argv[2:]
    split = rest.index("--")
    return rounds, rest[:split], rest[split + 1 :]


def figures(command):
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    start = out.index("{")
    return json.loads(out[start : out.rindex("}") + 1])


def main():
    rounds, a_cmd, b_cmd = parse(sys.argv[1:])
    ratios = {}
    for r in range(rounds):
        a, b = figures(a_cmd), figures(b_cmd)
        keys = [k for k in a if k in b and isinstance(a[k], float) and b[k]]
        for k in keys:
            ratios.setdefault(k, []).append(a[k] / b[k])
            print(f"round {r + 1}: {k}: A {a[k]:.4g}, B {b[k]:.4g}, A/B {a[k] / b[k]:.2f}")
        sys.stdout.flush()
    for k, v in ratios.items():
        print(f"{k}: median A/B {statistics.median(v):.2f} (min {min(v):.2f}, max {max(v):.2f}, {len(v)} rounds)")


if __name__ == "__main__":
    main()
