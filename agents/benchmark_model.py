"""Parse the output of TFLite's ``benchmark_model`` binary (tensorflow/lite/tools/benchmark), for devices where no
Python TFLite runs (phones under Termux): the agent drives the binary and reads its numbers from here.

Stdlib only and Python 3.8, because it also runs ON the device: the SSH transport pushes this file next to the agent.

What the tool prints (all times in microseconds), with or without a log prefix (``INFO: ``, ``I tflite  : ``)::

    Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    count=9 first=87112 curr=51629 min=51629 max=87112 avg=58147.4 std=11478 p5=51629 median=51962 p95=87112
    Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 median=51891 p95=68628
    Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 63743.2

The first ``count=`` line is the warm-up, the second the regular run; percentiles appear in newer releases only,
averages may be in exponent notation (``avg=2.95034e+06``), a warm-up of one run prints only ``count=1 curr=...``, and
with ``--enable_op_profiling`` per-operator tables follow (their ``Timings (microseconds): count=...`` lines are not
the model's timings).
"""
import re
import sys

_NUM = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_STATS = re.compile(r"(?:^|\s)count=(\d+)((?:\s+\w+=" + _NUM + r")*)\s*$")
_FIELD = re.compile(r"(\w+)=(" + _NUM + r")")
_SUMMARY = re.compile(r"Inference timings in us: Init: (" + _NUM + r"), First inference: (" + _NUM +
                      r"), Warmup \(avg\): (" + _NUM + r"), Inference \(avg\): (" + _NUM + r")")
_EXTRA = {
    "model_size_mb": re.compile(r"The input model file size \(MB\): (" + _NUM + ")"),
    "init_session_ms": re.compile(r"Initialized session in (" + _NUM + r")\s*ms"),
    "threads": re.compile(r"#threads used for CPU inference: \[(\d+)\]"),
    "mem_init_mb": re.compile(r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) "
                              r"\(MB\): init=(" + _NUM + ")"),
    "mem_overall_mb": re.compile(r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) "
                                 r"\(MB\): init=" + _NUM + " overall=(" + _NUM + ")"),
}
_DELEGATED = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\)")


class BenchmarkOutputError(ValueError):
    """The text holds no complete benchmark (the tool failed, or the output was cut)."""


def _stats(line):
    """The ``count=... key=value`` statistics of one line as a dict of floats (count as int), or None."""
    m = _STATS.search(line)
    if not m or not m.group(2).strip() or "Timings (microseconds)" in line:
        return None  # no timings, or the per-operator profiler's totals rather than the model's run
    out = {"count": int(m.group(1))}
    for k, v in _FIELD.findall(m.group(2)):
        out[k + "_us"] = float(v)
    return out


def parse_output(text):
    """Parse one run of ``benchmark_model``.

    Args:
        text: its stdout and stderr together (the tool logs to stderr on some builds, stdout on others).

    Returns:
        dict: ``regular`` and ``warmup`` (each ``count`` plus ``first_us``, ``curr_us``, ``min_us``, ``max_us``,
        ``avg_us``, ``std_us`` and, where printed, ``p5_us``, ``median_us``, ``p95_us``), ``init_us``,
        ``first_inference_us``, ``warmup_avg_us``, ``inference_avg_us``, and where printed ``model_size_mb``,
        ``init_session_ms``, ``threads``, ``mem_init_mb``, ``mem_overall_mb``, ``delegated`` ([nodes, of, name]).

    Raises:
        BenchmarkOutputError: no ``Inference timings`` summary, naming the last lines of the text.
    """
    lines = text.replace("\r", "").split("\n")
    summary_at = None
    for i, line in enumerate(lines):
        if _SUMMARY.search(line):
            summary_at = i  # the last one wins: a log holding several runs describes the latest
    if summary_at is None:
        tail = " | ".join(s.strip() for s in lines if s.strip())[-300:]
        raise BenchmarkOutputError("no 'Inference timings in us' line in benchmark_model output: " + (tail or
                                                                                                         "(empty)"))
    init, first, warm_avg, inf_avg = (float(v) for v in _SUMMARY.search(lines[summary_at]).groups())
    # The statistics lines of this run are the last two before its summary: warm-up, then the regular run.
    runs = [s for s in (_stats(line) for line in lines[:summary_at]) if s is not None]
    if not runs:
        raise BenchmarkOutputError("benchmark_model output has a summary but no 'count=' statistics line")
    regular = runs[-1]
    warmup = runs[-2] if len(runs) >= 2 else None
    regular.setdefault("avg_us", inf_avg)
    out = {"regular": regular, "warmup": warmup, "init_us": init, "first_inference_us": first,
           "warmup_avg_us": warm_avg, "inference_avg_us": inf_avg}
    head = "\n".join(lines[:summary_at + 4])
    for key, rx in _EXTRA.items():
        m = rx.search(head)
        if m:
            out[key] = int(m.group(1)) if key == "threads" else float(m.group(1))
    m = _DELEGATED.search(head)
    if m:
        out["delegated"] = [int(m.group(1)), int(m.group(2)), m.group(3)]
    return out


def sample_us(result):
    """The one number an invocation contributes as a sample: the regular run's median where the tool prints it,
    else its average (older releases print no percentiles)."""
    reg = result["regular"]
    return reg.get("median_us", reg.get("avg_us", result["inference_avg_us"]))


if __name__ == "__main__":  # python agents/benchmark_model.py LOG...: print the parse of saved outputs as JSON
    import json

    for path in sys.argv[1:]:
        with open(path) as f:
            print(json.dumps(dict(parse_output(f.read()), file=path), sort_keys=True))
