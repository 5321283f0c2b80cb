"""The imitation benchmark runner: parallel cells, results, resume, failures recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path

from wmil_core.bench_imitation import BenchSpec, Cell, load_cell, run_benchmark
from wmil_core.cli import main


def spec(**kw) -> BenchSpec:
    base = dict(tasks=["dmc/reacher-easy"], methods=["bc", "iql-sac", "iqmpc"], seeds=1,
                demos=[2], steps=40, seed_steps=20, eval_every=20, eval_episodes=1, jobs=2,
                episode_length=20, agent={"planner": {"iterations": -1}})  # iqmpc: bad config
    base.update(kw)
    return BenchSpec(**base)


def test_runs_records_failures_and_resumes_only_unfinished_cells(tmp_path: Path):
    out = tmp_path / "bench"
    s = spec()
    res = run_benchmark(s, out, command="wmil bench imitation (test)", progress=False)
    bc, iql, iq = (Cell("dmc/reacher-easy", m, 2, 0) for m in ("bc", "iql-sac", "iqmpc"))
    assert load_cell(out, bc)["status"] == "ok" and load_cell(out, iql)["status"] == "ok"
    failed = load_cell(out, iq)
    assert failed["status"] == "failed" and "iterations" in failed["error"]
    assert load_cell(out, iql)["curve"][-1][0] == 40 and load_cell(out, iql)["updates"] > 0
    rows = {r["method"]: r for r in res["summary"]}
    assert rows["iqmpc"]["score_mean"] is None and rows["iqmpc"]["seeds_failed"] == 1
    assert rows["bc"]["seeds_ok"] == 1 and rows["bc"]["score_mean"] is not None
    md = (out / "results.md").read_text()
    assert md.startswith("`wmil bench imitation (test)`") and "failed" in md
    assert (out / "curves-dmc_reacher-easy.png").is_file()
    assert json.loads((out / "results.json").read_text())["summary"] == res["summary"]

    # resume: finished cells are kept as they are; the failed one is retried (now fixed)
    stamp = (out / "cells" / f"{bc.key}.json").stat().st_mtime_ns
    (out / "cells" / f"{iql.key}.json").unlink()  # as if killed before iql-sac ended
    run_benchmark(spec(agent={"planner": {"iterations": 1, "num_samples": 8,
                                          "num_elites": 4, "num_pi_trajs": 2}}),
                  out, command="again", progress=False)
    assert (out / "cells" / f"{bc.key}.json").stat().st_mtime_ns == stamp
    assert load_cell(out, iql)["status"] == "ok" and load_cell(out, iq)["status"] == "ok"
    # iql-sac's run had finished: it resumed from its checkpoint instead of training again
    assert load_cell(out, iql)["resumed"] is True

    # a raised budget: the finished iqmpc cell resumes (its behaviour buffer, sized for 40
    # steps, grows) and runs on to 60 steps instead of counting as done
    assert [s for s, _ in load_cell(out, iq)["curve"]] == [20, 40]
    run_benchmark(spec(methods=["iqmpc"], steps=60, agent={"planner": {
        "iterations": 1, "num_samples": 8, "num_elites": 4, "num_pi_trajs": 2}}),
        out, command="longer", progress=False)
    res = load_cell(out, iq)
    assert res["resumed"] is True and [s for s, _ in res["curve"]] == [20, 40, 60]
    assert "steps: 60" in (out / "runs" / iq.key / "config.yaml").read_text()
    assert (out / "cells" / f"{bc.key}.json").stat().st_mtime_ns == stamp


def test_only_seeds_runs_those_seeds_and_summarises_the_rest_as_recorded(tmp_path: Path):
    out = tmp_path / "bench"
    s = spec(methods=["bc"], seeds=3, only_seeds=(1,))
    res = run_benchmark(s, out, command="one seed", progress=False)
    cells = [load_cell(out, Cell("dmc/reacher-easy", "bc", 2, k)) for k in range(3)]
    assert cells[0] is None and cells[2] is None and cells[1]["status"] == "ok"
    assert res["summary"][0]["seeds_ok"] == 1  # of 3: the others are not run yet
    run_benchmark(spec(methods=["bc"], seeds=3, only_seeds=(0, 2)), out, command="the rest",
                  progress=False)
    assert all(load_cell(out, Cell("dmc/reacher-easy", "bc", 2, k)) for k in range(3))


def test_cli_refuses_unknown_methods_and_tasks(tmp_path: Path, capsys):
    assert main(["bench", "imitation", "--tasks", "dmc/reacher-easy", "--methods", "sqil",
                 "--out", str(tmp_path / "a")]) == 2
    assert "--methods: unknown 'sqil'" in capsys.readouterr().err
    assert main(["bench", "imitation", "--tasks", "dmc/nope", "--out", str(tmp_path / "b")]) == 2
    assert "--tasks: unknown task 'dmc/nope'" in capsys.readouterr().err
    assert main(["bench", "imitation", "--tasks", "dmc/reacher-easy", "--seeds", "3",
                 "--only-seeds", "1,3", "--out", str(tmp_path / "c")]) == 2
    assert "--only-seeds: each must be in 0..2 (--seeds 3), got 1,3" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")


def test_progress_reads_unfinished_cells_from_their_metrics(tmp_path: Path, capsys):
    out = tmp_path / "bench"
    run = out / "runs" / "dmc_reacher-easy__iqmpc__d10__s0"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text(
        "step,phase,update,normalized_score,reward_correlation,wall_s\n"
        "0,offline,100,,,\n0,eval,100,0.25,0.1,50.0\n5000,online,5100,,,\n"
        "10000,eval,10100,0.5,0.4,1300.0\n12000,online,12100,,,\n")
    done = out / "runs" / "dmc_reacher-easy__bc__d10__s0"
    done.mkdir()
    (done / "metrics.csv").write_text("step,phase,normalized_score,wall_s\n"
                                      "20000,eval,0.3,60.0\n")
    (out / "cells").mkdir()
    (out / "cells" / "dmc_reacher-easy__bc__d10__s0.json").write_text('{"status": "ok"}')
    # a cell that failed once and is being retried: its record predates the metrics
    retried = out / "runs" / "dmc_cartpole-swingup__iqmpc__d10__s0"
    retried.mkdir()
    (retried / "metrics.csv").write_text("step,phase,normalized_score,wall_s\n"
                                         "0,eval,0.2,30.0\n")
    old = out / "cells" / "dmc_cartpole-swingup__iqmpc__d10__s0.json"
    old.write_text('{"status": "failed"}')
    os.utime(old, (1_000_000, 1_000_000))
    assert main(["bench", "progress", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| dmc_reacher-easy__iqmpc__d10__s0 | unfinished | 12000 | 0k: 0.25 (0.10), " \
           "10k: 0.50 (0.40) | 22 min |" in printed
    assert "| dmc_reacher-easy__bc__d10__s0 | ok | 20000 | 20k: 0.30 (-) | 1 min |" in printed
    assert "| dmc_cartpole-swingup__iqmpc__d10__s0 | unfinished | 0 |" in printed
    assert (out / "progress.md").read_text() == printed
    assert (out / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["bench", "progress", str(tmp_path / "none")]) == 2
    assert "no benchmark runs here" in capsys.readouterr().err


def test_workers_end_when_the_benchmark_process_is_killed(tmp_path):
    """A killed benchmark leaves no worker training on (exit_with_parent)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "worker.pid"
    script = (
        "import concurrent.futures, multiprocessing, os, time\n"
        "from wmil_core.bench_imitation import exit_with_parent\n"
        "def work(path):\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n"
        "if __name__ == '__main__':\n"
        "    ctx = multiprocessing.get_context('spawn')\n"
        "    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx,\n"
        "            initializer=exit_with_parent, initargs=(os.getpid(), 0.2)) as pool:\n"
        f"        pool.submit(work, {str(pid_file)!r}).result()\n")
    main = tmp_path / "bench_main.py"  # spawn needs the worker function in a module file
    main.write_text(script)
    parent = subprocess.Popen([sys.executable, str(main)])
    try:
        deadline = time.monotonic() + 60
        while not pid_file.is_file() or not pid_file.read_text():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        os.kill(worker, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 15
        while True:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "the worker outlived the benchmark process"
            time.sleep(0.1)
    finally:
        parent.kill()



def test_circular_joints_reaches_every_cells_encoder(tmp_path: Path):
    out = tmp_path / "bench"
    run_benchmark(spec(methods=["bc"], steps=20, circular_joints=True), out, command="circ",
                  progress=False)
    run = out / "runs" / Cell("dmc/reacher-easy", "bc", 2, 0).key
    assert "circular_joints: true" in (run / "config.yaml").read_text()
    agent = (run / "agent.yaml").read_text()
    assert "angle_joints:\n  - 0\n" in agent  # the shoulder, the task's unlimited hinge
