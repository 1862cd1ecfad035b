"""An independent plain warm loop, the way a runtime's own benchmark tool times a deployed model.

    python benchmarks/plain_loop.py MODEL.onnx [MODEL.onnx ...]

Each model alone, one after another: its own ONNX Runtime session (1 intra-op thread, sequential, all graph
optimisations), the process pinned to one core, 20 warm-up calls, then timed calls until at least 40 calls *and*
at least 1 s of them; the median of the timed calls. One JSON line per model on stdout.

It shares no code with the agent on purpose: it is the yardstick the agent's methods are judged against
(benchmarks/bench_methods.py), so a mistake in the agent cannot hide in it too.
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

WARMUP, MIN_CALLS, MIN_S = 20, 40, 1.0


def time_model(path: str) -> dict:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed = {inp.name: np.random.RandomState(0).standard_normal(inp.shape).astype(np.float32)}
    for _ in range(WARMUP):
        sess.run(None, feed)
    times, t_start = [], time.perf_counter()
    while len(times) < MIN_CALLS or time.perf_counter() - t_start < MIN_S:
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    return {"model": path, "median_ms": float(np.median(times)) * 1e3, "n": len(times)}


def main(paths) -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core, the last (away from IRQs)
    for p in paths:
        print(json.dumps(time_model(p)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
