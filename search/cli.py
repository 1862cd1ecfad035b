"""Console script ``search``: hard-constrained search on measured tables, and ``search train-supernet``.

    search train-supernet --out CKPT [--data digits|PATH] [--epochs N] [--resolution R]
    search --lut PATH --target-ms 7,8,9 [--algo bcsfw] [--supernet CKPT] [--json OUT] [--export DIR]
           [--verify-on DEVICE] [--constraint params<=4M] [--constraint pi4:latency<=40ms]
    search --lut NB201_LUT --target-ms 20 --accuracy CSV [--accuracy-column cifar10_acc] [--k 200] [--seed S]
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional


from profiler.checks import (OneLineParser, check_output_dir, check_output_file, distinct_names, int_range,
                             parse_quantity, parse_targets)
from profiler.cli import raw_main
from profiler.errors import BadInput, ExitStatus, LutnasError
from profiler.files import atomic_write_json
from profiler.lut import Lut
from search.decode import is_cell
from search.stopping import ORACLE_PATIENCE


class Infeasible(LutnasError):
    status = ExitStatus.INFEASIBLE


# what the JSON keeps of a searcher's info: the work it did and whether reusable state was reused
SEARCHER_INFO = ("runs", "sweep_runs", "graph_source", "kprime", "trained", "cache", "evaluations", "objective_evals",
                 "violating_steps", "steps", "steps_used", "stopped", "polish_evals", "warm_start_won", "shared_answer")


def parse_constraint(text: str, luts_root: Path, space=None, notes: Optional[list] = None):
    """``params<=4M``, ``flops<=300M``, ``DEVICE:latency<=40ms`` or ``PATH.json:latency<=40ms`` -> (resource, bound),
    over ``space`` (the searched LUT's; default the HardCoRe space). A LUT's trust warnings go to ``notes``."""
    from profiler.model import flops_model, params_model

    m = re.fullmatch(r"\s*(?:([^:]+):)?(latency|params|flops)\s*<=(.*)", text)
    if not m:
        raise BadInput(f"cannot read constraint {text!r}; write e.g. 'params<=4M' or 'pi4:latency<=40ms'")
    where, what, amount = m.groups()
    bound = parse_quantity(amount, what, f"constraint {text!r}")
    if where and what != "latency":
        raise BadInput(f"constraint {text!r}: {what} does not depend on a device; write '{what}<=...'")
    from profiler.space import HARDCORE

    space = space or HARDCORE
    if what == "params":
        return params_model(space), bound
    if what == "flops":
        return flops_model(space), bound
    if not where:
        raise BadInput(f"latency constraint {text!r} must name a device or LUT: 'pi4:latency<=40ms'")
    if where.endswith(".json"):
        lut = Lut.load(where, space=space)
    else:
        from profiler.lut import latest

        path = latest(luts_root, where, space, calibrated=True)
        if path is None:
            raise BadInput(f"constraint {text!r}: no LUT for device {where!r} under {luts_root}; profile it first")
        lut = Lut.load(path, space=space)
    for line in lut.caveats():
        print(f"search: warning: {line}", file=sys.stderr)
    if notes is not None:  # issue 18: a rough table says so (the caller prints the lines)
        from profiler.trust import warn_lines

        notes.extend(line for line in warn_lines(lut) if line not in notes)
    return lut.latency_model(), bound


def capacity_objective(space):
    """Without a supernet: prefer the most FLOPs within the budget (a capacity proxy), linear in (α, β); it declares
    its per-block costs, so ``--algo exact`` solves it exactly (the default without ``--supernet``)."""
    from profiler.model import flops_model
    from search.exact import LinearObjective

    if is_cell(space):  # a table over the NB201 cells: the MACs that reach the output (dead edges count nothing)
        from profiler.nb201_cost import live_flops_model
        from search.cell import TableObjective

        live = live_flops_model(space)
        return TableObjective(-live.table / live.max_value(), "FLOPs capacity proxy (live edges)")
    model = flops_model(space)
    return LinearObjective(model, sign=-1.0, scale=model.max_value())


def search_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="search", description="Find architectures that meet a latency budget on the "
                                "measured LUT, with a hard constraint. 'search train-supernet --help' for training.")
    p.add_argument("--lut", required=True, metavar="PATH", help="measured LUT (profile's output)")
    p.add_argument("--target-ms", required=True, metavar="T[,T...]", help="latency budget(s) in ms")
    p.add_argument("--algo", help="searcher: exact (default without --supernet: the FLOPs proxy is a sum of per-block "
                   "costs), bcsfw (default with --supernet), connas, dca, hypernet, soft")
    p.add_argument("--supernet", metavar="CKPT", help="trained supernet checkpoint: its validation loss is the "
                   "objective (default: a FLOPs capacity proxy)")
    p.add_argument("--accuracy", metavar="CSV", help="NB201 LUTs: maximise an accuracy surrogate fitted on --k rows "
                   "drawn (--seed) from this CSV of arch strings and accuracies; the other rows are never read")
    p.add_argument("--accuracy-column", default="cifar10_acc", metavar="COL", help="accuracy column of --accuracy "
                   "(default cifar10_acc)")
    p.add_argument("--k", type=int, default=200, help="rows --accuracy draws (default 200)")
    p.add_argument("--surrogate", choices=("ensemble", "small"), default="ensemble", help="the fitted surrogate: "
                   "trees + MLPs with CV (default), or a smaller, faster one")
    p.add_argument("--constraint", action="append", default=[], metavar="SPEC",
                   help="extra constraint, repeatable: params<=4M, flops<=300M, DEVICE:latency<=40ms")
    p.add_argument("--oracle", choices=("paired", "score", "mixture", "fixed"), default="paired",
                   help="with --supernet: how the searchers' gradient is estimated (search/oracle.py): paired probes "
                   "of sampled paths on rotating validation mini-batches (default), the score function over "
                   "sampled paths, the expected-output mixture on the mini-batches, or the mixture on one fixed "
                   "256-image batch (the old oracle: minutes per target). Costs: docs/BENCHMARKS.md")
    p.add_argument("--steps", type=int_range(1), default=300, help="step cap of the relaxed searchers (default 300)")
    p.add_argument("--patience", type=int_range(0), metavar="N", help="bcsfw, connas, dca, hypernet: stop once the "
                   "argmax architecture is unchanged for N steps; 0 runs every step (default: the oracle's, "
                   "%d with a --supernet oracle other than fixed, else 0)" % ORACLE_PATIENCE)
    p.add_argument("--draws", type=int_range(1), metavar="N",
                   help="hypernet: complexity vectors S drawn per training step "
                   "(default 16); training costs steps x draws objective calls")
    p.add_argument("--state-dir", metavar="DIR", help="where DCA lookup graphs and trained hypernetworks are kept, "
                   "keyed by objective and tables, so a later search reuses them (default $LUTNAS_CACHE/search, "
                   "i.e. ~/.cache/lutnas/search; '' keeps nothing)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--export", metavar="DIR", help="export each found network to ONNX in DIR")
    p.add_argument("--verify-on", metavar="DEVICE", help="measure each found network on DEVICE and report it")
    p.add_argument("--devices", metavar="FILE", help="device inventory for --verify-on")
    p.add_argument("--luts", default="luts", metavar="DIR", help="LUT root for device constraints (default luts)")
    p.add_argument("--confidence", type=float, metavar="C", help="meet each target on the device with probability "
                   ">= C (e.g. 0.95): search under a target tightened by the conformal margin of the LUT's validation "
                   "residuals (profiler/conformal.py); the report shows the margin and its cost in objective")
    p.add_argument("--calibration", metavar="REPORT", help="with --confidence: a 'validate --json' report of this "
                   "LUT whose networks give the residuals (default: the LUT's own validation report, as fitted "
                   "tables carry)")
    p.add_argument("--measured-margin", type=float, metavar="R", help="with --confidence on a fitted NB201 "
                   "table: a network the table was fitted on is admitted by its measurement x R <= target instead of "
                   "by prediction (R covers re-measurement drift; default 1.05; 0 predicts every network)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--traceback", action="store_true")
    return p


def run_search(args) -> int:
    from profiler.model import flops_model, params_model
    from search.problem import ALGOS, InfeasibleTarget, objective_value, share_answers, solve

    targets = parse_targets(args.target_ms)
    if args.algo is None:
        args.algo = "bcsfw" if args.supernet else "exact"
    if args.json:  # before searching: results are never lost to an output that cannot be written
        check_output_file(args.json, "--json")
    if args.export:
        check_output_dir(args.export, "--export")
    if args.algo not in ALGOS:
        raise BadInput(f"unknown --algo {args.algo!r}; known: {', '.join(sorted(ALGOS))}")
    lut = Lut.load(args.lut)
    space = lut.space
    lut.check_space(space)
    if args.verify_on and lut.data.get("kind") == "fitted":
        raise BadInput(f"--verify-on: {args.lut} is {lut.data.get('provenance')}; measure on that device instead")
    for line in lut.caveats():
        print(f"search: warning: {line}", file=sys.stderr)
    from profiler.trust import warn_lines

    # issue 18: a rough table, or (--verify-on) one of another machine, says so in one line each, printed once the
    # search has run so that bad input still gets its one error line
    trust = warn_lines(lut)
    latency = lut.latency_model()
    from search.confidence import calibration, measured_bound, measured_cells, measured_factor, tighten

    cal = calibration(args, lut)  # before any objective is built: bad --confidence input costs no surrogate fit
    factor = measured_factor(args)
    measured = measured_cells(cal) if factor else {}
    constraints = distinct_names([parse_constraint(c, Path(args.luts), space, trust) for c in args.constraint],
                                 args.constraint)
    params, flops = params_model(space), flops_model(space)
    evaluate, accuracy = None, None
    if args.supernet and is_cell(space):
        raise BadInput(f"--supernet: supernets are of the HardCoRe space; {args.lut} is an NB201 LUT: give its "
                       "objective as --accuracy CSV")
    if args.accuracy:
        if args.supernet or not is_cell(space):
            raise BadInput("--accuracy and --supernet are two objectives: give one" if args.supernet else
                           f"--accuracy: {args.lut} is a {space.name} LUT; an accuracy table is for NB201 LUTs")
        from search.accuracy import accuracy_objective

        objective, info, accuracy = accuracy_objective(args.accuracy, args.accuracy_column, args.k, args.seed,
                                                       args.surrogate, state_dir(args))
        what = objective.what
        objective_key = f"surrogate-{file_digest(args.accuracy)}-{args.accuracy_column}-{args.k}-{args.seed}-" \
            f"{args.surrogate}"
    elif args.supernet:
        from search.checkpoint import load_checkpoint
        from search.oracle import fixed_objective
        from search.data import load_data
        from search.train import evaluate as eval_arch

        net, meta = load_checkpoint(args.supernet, space)
        train = meta.get("train") or {}
        data = load_data(train.get("data", "digits"), net.settings.resolution)
        if args.oracle == "fixed":  # the expected-output mixture on the first 256 validation images (as before)
            xb, yb = next(iter(data.batches("val", batch_size=256, shuffle=False)))
            objective = fixed_objective(net, (xb, yb))
        else:  # rotating mini-batches, sampled paths or the mixture, cached stem; one oracle for every target
            from search.oracle import SupernetOracle

            objective = SupernetOracle(net, data, estimator=args.oracle, seed=args.seed)
        evaluate = lambda arch: eval_arch(net, arch, data)  # noqa: E731
        what = f"supernet {args.supernet} validation loss ({args.oracle} oracle)"
        objective_key = f"supernet-{file_digest(args.supernet)}-{args.oracle}"
    else:
        objective = capacity_objective(space)
        what = "FLOPs capacity proxy (no --supernet)"
        objective_key = f"flops-capacity-{space.hash}"
    options = algo_options(args, objective_key)
    solved, found, infeasible = [], [], []
    # tightest target first, each warm-started from the tighter ones' answers: a looser budget is never worse
    for t in sorted(targets):
        t0 = time.monotonic()
        conf = tighten(args, cal, t, objective)
        if hasattr(objective, "restart"):  # one oracle for the sweep, its sampled state afresh for each target
            objective.restart()
        try:
            bound = measured_bound(latency, measured, conf, factor) if conf else latency
            r = solve(bound, conf["searched_target"] if conf else t, objective, algo=args.algo,
                      constraints=constraints, steps=args.steps, seed=args.seed, warm_start=tuple(found[-1:]),
                      **options)
            if conf:  # what the margin cost: the same search at the untightened target
                plain = solve(latency, t, objective, algo=args.algo, constraints=constraints, steps=args.steps,
                              seed=args.seed, **options)
                conf["objective"] = objective_value(objective, *r.arch.one_hot())
                conf["objective_without_margin"] = objective_value(objective, *plain.arch.one_hot())
        except InfeasibleTarget as exc:
            infeasible.append({"target_ms": t, "reason": str(exc)})  # reported at the end; the others still run
            continue
        solved.append((t, conf, r, time.monotonic() - t0))
        found += [r.arch] if r.feasible else []
    # and back: a looser target's search may have found an architecture that meets a tighter bound better
    results = []
    for (t, conf, _, search_s), r in zip(solved, share_answers([x[2] for x in solved])):
        row = {"arch": str(r.arch), "target_ms": t, "predicted_ms": float(latency.predict_arch(r.arch)),
               "params": int(round(params.predict_arch(r.arch))), "flops": int(round(flops.predict_arch(r.arch))),
               "algo": args.algo, "feasible": bool(r.feasible), "search_s": round(search_s, 2),
               "objective": what, "constraints": {res.name: {"value": float(res.predict_arch(r.arch)), "bound": b}
                                                  for res, b in constraints}}
        row["searcher"] = {k: r.info[k] for k in SEARCHER_INFO if k in r.info}
        if accuracy is not None:  # the surrogate's prediction for the found cell
            row["predicted_accuracy"] = float(accuracy[r.arch.index])
        if conf:
            known = measured.get(r.arch.index) if measured else None  # only NB201 tables name measured cells
            row["confidence"] = dict(conf, **({"found_measured_ms": known} if known else {}))
        if not r.feasible:
            infeasible.append({"target_ms": t, "reason": f"{args.algo} found no architecture within {t:g} ms (best "
                               f"predicted {row['predicted_ms']:.3f} ms); try --algo bcsfw or a larger target"})
            continue
        if evaluate is not None:
            row["accuracy"] = float(evaluate(r.arch))
        if hasattr(objective, "true_loss"):  # the found network's loss on the whole validation pool, and the work
            row["val_loss"] = objective.true_loss(r.arch)
            row["oracle"] = dict(objective.stats)
        results.append((r.arch, row))
    if not results:
        raise Infeasible("; ".join(x["reason"] for x in infeasible))
    results.sort(key=lambda ar: targets.index(ar[1]["target_ms"]))
    infeasible.sort(key=lambda x: targets.index(x["target_ms"]))
    if args.export:
        from profiler.runner import export_entry

        out = Path(args.export)
        out.mkdir(parents=True, exist_ok=True)
        for arch, row in results:
            src, _ = export_entry(arch, None, 1, "onnx")  # a HardCoRe network or an NB201 one
            dst = out / f"arch-{row['target_ms']:g}ms.onnx"
            shutil.copyfile(src, dst)
            row["onnx"] = str(dst)
    if args.verify_on:
        from search.verify import verify

        trust += verify(args, [a for a, _ in results], [r for _, r in results], lut)
    for line in trust:
        print(line, file=sys.stderr, flush=True)
    print(f"{'target':>8} {'predicted':>10} {'measured':>14} {'params':>9} {'MFLOPs':>8} {'acc':>6}  architecture")
    for _, row in results:
        known = row.get("confidence", {}).get("found_measured_ms")  # a network the table was fitted on
        meas = (f"{row['measured_ms']:.3f}±{row['measured_ci95_ms']:.3f}" if "measured_ms" in row else
                f"{known:.3f} (fit)" if known else "-")
        acc = next((f"{row[k]:.3f}" for k in ("accuracy", "predicted_accuracy") if k in row), "-")
        print(f"{row['target_ms']:8.3f} {row['predicted_ms']:10.3f} {meas:>14} {row['params'] / 1e6:8.2f}M "
              f"{row['flops'] / 1e6:8.1f} {acc:>6}  {row['arch']}")
    for _, row in results:
        if "confidence" in row:
            c = row["confidence"]
            print(f"confidence {c['confidence']:g} for {c['target']:g} ms: searched under {c['searched_target']:.3f} ms "
                  f"(margin x{c['margin']:.4f} from {c['calibration_n']} of {c['source']}"
                  + (f", x{c['selection_factor']:.3f} of it for the search's selection" if "selection_factor" in c
                     else "") + (f"; {c['measured_admitted']} of the {c['measured_networks']} networks it was "
                                 f"fitted on admitted by measurement x{c['measured_margin']:g}"
                                 if "measured_networks" in c else "")
                  + (f", the found one measured {c['found_measured_ms']:.3f} ms" if "found_measured_ms" in c else "")
                  + "); objective "
                  f"{c['objective']:.4g} vs {c['objective_without_margin']:.4g} without the margin")
    if args.json:
        atomic_write_json(Path(args.json), {"lut": str(lut.path), "results": [r for _, r in results],
                                            "infeasible": infeasible, "trust_warnings": trust}, overwrite=True)
    for x in infeasible:  # every feasible result is out; now the targets that had none, one line each
        print(f"search: error: target {x['target_ms']:g} ms: {x['reason']}", file=sys.stderr)
    return int(ExitStatus.INFEASIBLE) if infeasible else 0


def file_digest(path, n: int = 16) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def state_dir(args) -> Optional[Path]:
    """Where reusable search state is kept (--state-dir; '' keeps nothing)."""
    from profiler.export import cache_dir

    return cache_dir() / "search" if args.state_dir is None else (Path(args.state_dir) if args.state_dir else None)


def algo_options(args, objective_key: str) -> dict:
    """Searcher-specific keyword arguments from the command line: draws, patience, and where reusable state is
    kept."""
    if args.draws is not None and args.algo != "hypernet":
        raise BadInput(f"--draws is a hypernet setting; --algo {args.algo} does not take it")
    if args.draws is not None and args.draws < 1:
        raise BadInput(f"--draws {args.draws}: need at least 1")
    if args.patience is not None and args.algo not in ("bcsfw", "connas", "dca", "hypernet"):
        raise BadInput(f"--patience is a setting of bcsfw, connas, dca and hypernet; --algo {args.algo} does not "
                       f"take it")
    stop = {} if args.patience is None else {"patience": args.patience}
    state = state_dir(args)
    if state is not None and args.algo in ("dca", "hypernet"):
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"--state-dir {str(state)!r} cannot be created ({exc.strerror}); choose another "
                           f"or pass --state-dir ''") from None
    if args.algo == "dca":
        return stop if state is None else {"objective_key": objective_key, "graph_path": state / "dca-graphs.json",
                                           **stop}
    if args.algo == "hypernet":
        opts = dict(stop) if args.draws is None else {"batch": args.draws, **stop}
        if state is not None:
            opts["cache_path"] = state / f"hypernet-{objective_key}.pt"
        return opts
    return stop


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train-supernet":
        from search.train import train_main

        return train_main(argv[1:])
    return raw_main("search", search_parser(), run_search, argv, interrupted="no results were written (a "
                    "--verify-on measurement is kept in its journal: rerun to resume it)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
