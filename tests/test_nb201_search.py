"""Every searcher on the NB201 cell space through the `search` CLI: a table fitted by `profile import` from real files
(a slice of the shared NB201 data), the accuracy surrogate fitted on K sampled rows as the objective, and bad input."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from profiler.lut import Lut
from profiler.nb201 import CellArch
from search.cli import main as search_main
from tests.nb201_data import nb201_csv

BIN = Path(sys.executable).parent
ALGOS = ("exact", "bcsfw", "connas", "dca", "hypernet", "soft")
# what a HardCoRe result row has (test_search_cli.py), and the surrogate's prediction
FIELDS = {"arch", "target_ms", "predicted_ms", "params", "flops", "algo", "feasible", "search_s", "objective",
          "constraints", "searcher", "predicted_accuracy"}


def run(*args, timeout=600):
    return subprocess.run([str(BIN / "search"), *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def nb(tmp_path_factory):
    """(CSV of 1,500 rows of the shared data, a Pi 4 table fitted on 500 of them by `profile import`, state dir)."""
    tmp = tmp_path_factory.mktemp("nb201search")
    lines = gzip.open(nb201_csv(), "rt").read().splitlines()
    csv_path = tmp / "nb201.csv"
    csv_path.write_text("\n".join(lines[:1501]) + "\n")
    r = subprocess.run([str(BIN / "profile"), "import", str(csv_path), "--column", "raspi4_ms", "--train", "500",
                        "--out", str(tmp / "luts")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return csv_path, Path(r.stdout.strip().splitlines()[-1]), tmp / "state"


def search(nb, tmp_path, *extra):
    csv_path, lut, state = nb
    out = tmp_path / "r.json"
    r = run("--lut", lut, "--accuracy", csv_path, "--k", "120", "--surrogate", "small", "--state-dir", state,
            "--steps", "60", "--json", out, *extra)
    return r, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.parametrize("algo", ALGOS)
def test_every_searcher_meets_the_target_on_nb201(nb, tmp_path, algo):
    r, data = search(nb, tmp_path, "--target-ms", "12,25", "--algo", algo)
    assert r.returncode == 0, r.stderr
    model = Lut.load(nb[1]).latency_model()
    assert [x["target_ms"] for x in data["results"]] == [12.0, 25.0]
    for x in data["results"]:
        assert FIELDS <= set(x), FIELDS - set(x)
        arch = CellArch.parse(x["arch"])  # NB201's own format, printed back exactly
        assert str(arch) == x["arch"] and x["algo"] == algo and x["feasible"]
        assert x["predicted_ms"] == pytest.approx(model.predict_arch(arch)) and x["predicted_ms"] <= x["target_ms"]
        assert 0 < x["params"] < 2e6 and "accuracy surrogate of cifar10_acc" in x["objective"]
    # the looser target is searched from the tighter one's answer: never worse by the surrogate
    assert data["results"][1]["predicted_accuracy"] >= data["results"][0]["predicted_accuracy"] - 1e-9


def test_exact_is_the_best_surrogate_cell_under_the_bound(nb, tmp_path):
    from search.accuracy import fit_table

    r, data = search(nb, tmp_path, "--target-ms", "20", "--algo", "exact")
    assert r.returncode == 0, r.stderr
    table, info = fit_table(nb[0], "cifar10_acc", 120, 0, "small", nb[2])
    assert info["cache"] == "file" and info["k"] == 120 and info["rows"] == 1500  # fitted once, by the first search
    lat = Lut.load(nb[1]).latency_model().table
    best = np.max(np.where(lat <= 20.0, table, -np.inf))
    assert data["results"][0]["predicted_accuracy"] == pytest.approx(best)


def test_without_accuracy_the_flops_proxy_and_export(nb, tmp_path):
    """No --accuracy: the NB201 search maximises the FLOPs that reach the output under the bound, as the HardCoRe
    default maximises FLOPs; --export writes the found network as ONNX. Counting every module instead made it pick a
    disconnected cell (its convs dead, predicted at the table's floor): never such a cell."""
    from profiler.model import flops_model
    from profiler.nb201 import connected
    from profiler.nb201_cost import live_flops_model

    out = tmp_path / "r.json"
    r = run("--lut", nb[1], "--target-ms", "15", "--json", out, "--export", tmp_path / "onnx")
    assert r.returncode == 0, r.stderr
    x = json.loads(out.read_text())["results"][0]
    lat, live = Lut.load(nb[1]).latency_model(), live_flops_model()
    arch = CellArch.parse(x["arch"])
    assert live.table[arch.index] == np.max(np.where(lat.table <= 15.0, live.table, -1))
    assert connected(np.array([arch.ops]))[0] and "FLOPs capacity proxy" in x["objective"]
    assert x["flops"] == flops_model(arch.space).predict_arch(arch) >= live.table[arch.index]  # reported: every module
    assert Path(x["onnx"]).stat().st_size > 10_000


def test_live_flops_count_only_edges_the_output_depends_on():
    from profiler.model import flops_model
    from profiler.nb201 import CONV3, NONE
    from profiler.nb201_cost import live_flops_model

    live, every = live_flops_model(), flops_model(CellArch((0,) * 6).space)
    full = CellArch((CONV3,) * 6)
    assert live.predict_arch(full) == every.predict_arch(full)  # every edge live
    dead = CellArch((CONV3, CONV3, CONV3, NONE, NONE, NONE))  # node 3 has no input: nothing reaches the output
    assert live.predict_arch(dead) == live.predict_arch(CellArch((NONE,) * 6)) < every.predict_arch(dead)
    one = CellArch((NONE, NONE, NONE, CONV3, NONE, NONE))  # only 3 <- 0, a 3x3 conv
    assert live.predict_arch(one) == every.predict_arch(one) > live.predict_arch(dead)


def test_confidence_and_a_params_bound_on_nb201(nb, tmp_path):
    r, data = search(nb, tmp_path, "--target-ms", "20", "--algo", "bcsfw", "--confidence", "0.9",
                     "--constraint", "params<=0.4M")
    assert r.returncode == 0, r.stderr
    x = data["results"][0]
    c = x["confidence"]
    assert c["confidence"] == 0.9 and c["target"] == 20.0 and x["params"] <= 4e5 and c["searched_target"] < 20.0
    # the 500 networks the table was fitted on are admitted by their measurement x 1.05, the others by prediction
    assert c["measured_networks"] == 500 and c["measured_margin"] == 1.05 and 0 < c["measured_admitted"] < 500
    if "found_measured_ms" in c:
        assert c["found_measured_ms"] * 1.05 <= 20.0
    else:
        assert x["predicted_ms"] <= c["searched_target"] + 1e-9
    assert "confidence 0.9 for 20 ms" in r.stdout and "networks it was fitted on admitted by measurement" in r.stdout


def test_measured_networks_are_admitted_by_their_measurement(nb, tmp_path):
    """With --confidence, the exact search's answer is the best cell by the surrogate among the networks the table
    measured (measurement x R <= target) and the others (prediction x margin <= target); --measured-margin 0
    admits every network by prediction, as before."""
    from search.accuracy import fit_table

    table, _ = fit_table(nb[0], "cifar10_acc", 120, 0, "small", nb[2])
    lut = Lut.load(nb[1])
    pred = lut.latency_model().table
    cal = lut.data["validation"]["calibration"]
    cells, ms = np.array(cal["cells"]), np.array(cal["measured_ms"])
    for factor in ("1.05", "1.5", "0"):
        r, data = search(nb, tmp_path, "--target-ms", "15", "--algo", "exact", "--confidence", "0.9",
                         "--measured-margin", factor)
        assert r.returncode == 0, r.stderr
        c = data["results"][0]["confidence"]
        ok = pred * c["margin"] <= 15.0
        if float(factor):
            ok[cells] = ms * float(factor) <= 15.0
            assert c["measured_admitted"] == int(ok[cells].sum()) and c["measured_margin"] == float(factor)
        else:
            assert "measured_networks" not in c and "found_measured_ms" not in c
        assert data["results"][0]["predicted_accuracy"] == pytest.approx(np.max(np.where(ok, table, -np.inf)))


def test_measured_bound_replaces_the_measured_cells_entries():
    """A measured cell the table under-predicts is kept out, one it over-predicts is let in; the rest unchanged."""
    from profiler.nb201_model import CellLatency
    from search.confidence import measured_bound, measured_cells

    lat = CellLatency("lat", "ms", np.where(np.arange(15625) == 7, 12.0, 4.0))
    conf = {"target": 10.0, "margin": 2.0, "searched_target": 5.0}
    cal = (np.array([4.0, 4.0, 12.0, 4.0]), np.array([11.0, 6.0, 9.0, 7.0]), "test", np.array([3, 5, 7, 5]))
    assert measured_cells(cal) == {3: 11.0, 5: 7.0, 7: 9.0}  # cell 5 measured twice: the slower counts
    bound = measured_bound(lat, measured_cells(cal), conf, 1.05)
    admitted = bound.table <= conf["searched_target"]
    assert not admitted[3] and admitted[5] and admitted[7] and admitted.sum() == 15625 - 1
    assert conf["measured_networks"] == 3 and conf["measured_admitted"] == 2
    assert measured_bound(lat, measured_cells(cal), dict(conf), 0) is lat
    assert measured_cells(cal[:3] + (None,)) == {} and measured_bound(lat, {}, conf) is lat


@pytest.mark.parametrize("extra, msg", [
    (["--accuracy-column", "cifar11_acc"], "has no column 'cifar11_acc' (accuracies); its columns: index, cifar10_acc"),
    (["--k", "1501"], "--k 1501: need between 10 and the 1500 rows of"),
    (["--accuracy", "{noarch}"], "has no column 'arch' (NB201 arch strings); its columns: index, cifar10_acc"),
    (["--accuracy", "{tmp}/missing.csv"], "missing.csv does not exist"),
    (["--supernet", "{tmp}/x.pt"], "supernets are of the HardCoRe space"),
    (["--measured-margin", "1.1"], "--measured-margin is used with --confidence C"),
    (["--confidence", "0.9", "--measured-margin", "0.5"], "--measured-margin 0.5: give a factor of at least 1"),
    (["--accuracy", "{noarch}", "--lut", "{hardcore}"], "is a hardcore-mbv3 LUT; an accuracy table is for NB201"),
])
def test_bad_accuracy_input_is_one_line(nb, tmp_path, monkeypatch, capsys, extra, msg):
    csv_path, lut, _ = nb
    noarch = tmp_path / "noarch.csv"
    noarch.write_text("index,cifar10_acc\n0,91.0\n")
    hardcore = Path(__file__).resolve().parent.parent / "luts" / "local" / "hardcore-mbv3" / \
        "20261122T232635Z-onnxruntime-t1-b1-cal-20261122T233124Z.json"
    extra = [a.format(tmp=tmp_path, noarch=noarch, hardcore=hardcore) for a in extra]
    argv = ["--lut", lut, "--target-ms", "20", "--accuracy", csv_path, "--surrogate", "small",
            "--state-dir", tmp_path / "state", "--json", tmp_path / "r.json"]
    for i in range(0, len(extra), 2):  # a later option replaces the default one
        if extra[i] in argv:
            argv[argv.index(extra[i]) + 1] = extra[i + 1]
        else:
            argv += extra[i:i + 2]
    code = search_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 14, err
    assert len(err.strip().splitlines()) == 1 and msg in err and "Traceback" not in err
    assert out == "" and not (tmp_path / "r.json").exists() and not (tmp_path / "state").exists()


def test_soft_returns_the_best_drawn_cell_by_its_own_penalised_loss():
    """On the cell space soft draws cells from its final α and keeps the one of least f + λ·hinge (FBNet's sampling
    of final architectures): never worse by that loss than the plain argmax, which samples=0 returns."""
    from profiler.nb201 import NB201, all_op_codes
    from profiler.nb201_model import CellLatency
    from search.cell import TableObjective
    from search.problem import Problem
    from search.soft import _penalty, soft

    rng = np.random.default_rng(0)
    codes = all_op_codes()
    lat = CellLatency("lat", "ms", 1.0 + (codes == 3).sum(1) * 2.0 + (codes == 2).sum(1) + rng.random(len(codes)))
    obj = TableObjective(rng.random(len(codes)), "synthetic")  # a rugged table: the argmax of α is a poor cell
    problem = Problem(NB201, [(lat, 8.0)], obj)

    def loss(arch):
        a, b = arch.one_hot()
        return obj.value_arch(arch) + _penalty(problem, a, b, 1.0, "hinge", grads=False)[0]

    plain = soft(problem, steps=80, seed=1, samples=0)
    drawn = soft(problem, steps=80, seed=1)
    assert "drawn_cells" not in plain.info and drawn.info["drawn_cells"] > 1
    assert drawn.info["from"] == "drawn" and loss(drawn.arch) < loss(plain.arch)
