"""Run every benchmark (``make bench``; ``make bench-quick`` passes --quick to those that have it).

Figures measured with these scripts are recorded, with the exact command, in docs/BENCHMARKS.md.
"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (script, arguments, arguments with --quick)
BENCHES = [
    ("bench_profile.py", [], ["--nets", "8"]),
    ("bench_methods.py", [], ["--nets", "8", "--cycles", "1"]),
    ("bench_search.py", [], ["--quick"]),
    ("bench_ssh.py", [], ["--blocks", "4", "--budget", "0.5", "--reps", "1"]),
    ("bench_supernet.py", [], ["--quick"]),
    ("bench_searched_vs_random.py", [], ["--quick"]),
    ("bench_searchers.py", [], ["--quick"]),
    ("bench_exact_gap.py", [], ["--quick"]),
    ("bench_nb201_search.py", [], ["--quick"]),
    ("bench_remeasure.py", [], ["--n", "10", "--wait", "10"]),
]


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    only = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")]  # e.g. --only=bench_methods.py
    failed = []
    for script, args, quick_args in BENCHES:
        if only and script not in only:
            continue
        cmd = [sys.executable, str(HERE / script), *(quick_args if quick else args)]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
