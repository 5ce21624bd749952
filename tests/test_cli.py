"""The `liemem` command: samples as JSON lines, train/eval round trips, resuming after a kill, one-line errors."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from liemem import tasks
from liemem.cli import main
from liemem.training.data import train_examples

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["--task", "copy", "--steps", "4", "--train-lengths", "2-3", "--test-lengths", "4-5", "--device", "cpu"]


def run_cli(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_sample_prints_json_lines_of_token_strings(capsys):
    status, out, _ = run_cli(capsys, "sample", "--task", "priority_sort", "--split", "train", "-n", "5", "--seed", "3")
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and len(lines) == 5
    for example in lines:
        assert set(example) == {"input", "target"}
        assert all(isinstance(token, str) for token in example["input"] + example["target"])
        assert not {"<start>", "<sep>", "<end>"} & set(example["input"] + example["target"])
        values = [token for token in example["input"] if token != "@"]
        assert sorted(values) == sorted(example["target"]) and 2 <= len(values) <= 10


def test_sample_train_split_is_what_a_run_with_that_seed_trains_on(capsys):
    _, out, _ = run_cli(capsys, "sample", "--task", "copy", "-n", "40", "--seed", "5")
    lines = [json.loads(line) for line in out.splitlines()]
    task = tasks.get("copy")
    batches = [train_examples(task, (2, 64), index, 32, seed=5)[0] for index in (0, 1)]
    expected = [ids for batch in batches for ids in batch.inputs][:40]
    assert [line["input"] for line in lines] == [[str(i) for i in ids] for ids in expected]


def test_sample_test_split_uses_the_2x_lengths_and_is_deterministic(capsys):
    _, first, _ = run_cli(capsys, "sample", "--task", "double", "--split", "test", "-n", "30", "--seed", "1")
    _, again, _ = run_cli(capsys, "sample", "--task", "double", "--split", "test", "-n", "30", "--seed", "1")
    _, other, _ = run_cli(capsys, "sample", "--task", "double", "--split", "test", "-n", "30", "--seed", "2")
    assert first == again and first != other
    examples = [json.loads(line) for line in first.splitlines()]
    for example in examples:
        assert 41 <= len(example["input"]) <= 80 and len(example["target"]) == len(example["input"]) + 1
        x = int("".join(example["input"]))
        assert int("".join(example["target"])) == 2 * x  # most significant digit first, as the authors write it
    # 30 examples are less than one batch of 32, which the test set draws at one length.
    assert len({len(example["input"]) for example in examples}) == 1


def test_sample_test_split_draws_one_length_per_batch_of_32(capsys):
    _, out, _ = run_cli(capsys, "sample", "--task", "bigram_flip", "--split", "test", "-n", "100", "--seed", "4")
    lengths = [len(json.loads(line)["input"]) for line in out.splitlines()]
    assert len(lengths) == 100 and lengths == sorted(lengths)
    # Batches of 32, 32, 32 and 4 examples, each of one length (two batches may share one): so each length has
    # a sum of those batches, and one length holds the 4. 33-64 symbols, odd counts rounded down to even.
    counts = Counter(lengths).values()
    assert all(count % 32 in (0, 4) for count in counts) and sum(count % 32 == 4 for count in counts) == 1
    assert all(length % 2 == 0 and 32 <= length <= 64 for length in lengths)


def test_train_then_eval_round_trip(tmp_path, capsys):
    out_dir = tmp_path / "run"
    status, out, _ = run_cli(capsys, "train", *TINY_TRAIN, "--out", str(out_dir))
    summary = json.loads(out.splitlines()[-1])
    assert status == 0 and summary["step"] == 4 and 0 <= summary["coarse"] <= 1 and 0 <= summary["fine"] <= 1
    assert (out_dir / "checkpoint.pt").exists() and (out_dir / "metrics.jsonl").exists()
    status, out, _ = run_cli(capsys, "eval", str(out_dir), "--lengths", "6-7", "-n", "20", "--device", "cpu")
    result = json.loads(out.splitlines()[-1])
    assert status == 0 and result["lengths"] == [6, 7] and result["samples"] == 20 and result["step"] == 4
    assert {"fine", "coarse"} <= set(result)
    # Without options, eval repeats the run's own last evaluation exactly.
    _, out, _ = run_cli(capsys, "eval", str(out_dir), "--device", "cpu")
    again = json.loads(out.splitlines()[-1])
    assert (again["fine"], again["coarse"]) == (summary["fine"], summary["coarse"])


@pytest.mark.parametrize("toml", ["batch_size = 8", "one_length_per_batch = false", "batch_size = 6\neval_seed = 3"])
def test_eval_without_options_scores_the_very_test_set_of_the_run(toml, tmp_path, capsys, monkeypatch):
    """The test set depends on the batch size (one length per batch) and on `one_length_per_batch`: `eval` must
    take both from the run's configuration, or it scores other examples than the run did."""
    from liemem.training import loop as training_loop

    evaluate_module = importlib.import_module("liemem.training.evaluate")  # the package's `evaluate` is a function
    scored = {"train": [], "eval": []}

    def recording(original, key):
        def score(model, buckets):
            scored[key].append([(x.tolist(), y.tolist()) for bucket in buckets for x, y in zip(*bucket, strict=True)])
            return original(model, buckets)

        return score

    monkeypatch.setattr(training_loop, "score", recording(training_loop.score, "train"))
    monkeypatch.setattr(evaluate_module, "score", recording(evaluate_module.score, "eval"))
    config = tmp_path / "run.toml"
    config.write_text(toml + "\neval_samples = 40\n")
    out_dir = tmp_path / "run"
    assert main(["train", *TINY_TRAIN, "--test-lengths", "4-9", "--config", str(config), "--out", str(out_dir)]) == 0
    capsys.readouterr()
    _, out, _ = run_cli(capsys, "eval", str(out_dir), "--device", "cpu")
    assert json.loads(out.splitlines()[-1])["samples"] == 40
    assert len(scored["train"]) == 1 and len(scored["eval"]) == 1  # the run's final evaluation, and eval's
    assert len(scored["eval"][0]) == 40 and scored["eval"][0] == scored["train"][0]


def test_a_config_file_sets_options_and_flags_override_it(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        'model = "slantm"\nsteps = 3\nlr = 0.01\ntrain_lengths = [2, 3]\ntest_lengths = "4-5"\n'
        "eval_samples = 8\n[model_options]\ncontroller_size = 12\n"
    )
    out_dir = tmp_path / "run"
    status, _, _ = run_cli(capsys, "train", "--config", str(config), "--steps", "2", "--device", "cpu", "--out",
                           str(out_dir))  # fmt: skip
    saved = json.loads((out_dir / "config.json").read_text())
    assert status == 0 and saved["steps"] == 2 and saved["lr"] == 0.01 and saved["model"] == "slantm"
    assert saved["model_options"] == {"controller_size": 12} and saved["test_lengths"] == [4, 5]
    state = torch.load(out_dir / "checkpoint.pt", weights_only=True)
    assert state["model"]["controller.initial_hidden"].shape[-1] == 12
    assert saved["warmup_steps"] == 300  # the default
    status, _, _ = run_cli(capsys, "train", *TINY_TRAIN, "--warmup-steps", "0", "--out", str(tmp_path / "cold"))
    assert status == 0 and json.loads((tmp_path / "cold" / "config.json").read_text())["warmup_steps"] == 0
    assert saved["clip_norm"] == 0.25  # SLANTM's inverse-square read
    status, _, _ = run_cli(capsys, "train", *TINY_TRAIN, "--clip-norm", "4", "--out", str(tmp_path / "clip"))
    assert status == 0 and json.loads((tmp_path / "clip" / "config.json").read_text())["clip_norm"] == 4.0


def error_line(capsys, *argv) -> str:
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sample", "--task", "sorting"], "unknown task 'sorting'; valid tasks: copy, reverse"),
        (["sample", "--task", "copy", "--lengths", "9-3"], "the first bound is larger"),
        (["sample", "--task", "copy", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["train", "--model", "lantn", "--out", "{tmp}"], "unknown model 'lantn'; valid models: lantm"),
        (["train", "--task", "reverse_copy", "--out", "{tmp}"], "unknown task 'reverse_copy'"),
        (["train", "--train-lengths", "two-eight", "--out", "{tmp}"], "bad --train-lengths 'two-eight'"),
        (["train", "--train-lengths", "8-2", "--out", "{tmp}"], "bad --train-lengths '8-2'"),
        (["train", "--train-lengths", "0-4", "--out", "{tmp}"], "must start at 1 or more"),
        (["train", "--regime", "huge", "--out", "{tmp}"], "invalid choice: 'huge'"),
        (["train", "--steps", "ten", "--out", "{tmp}"], "invalid int value: 'ten'"),
        (["train", "--device", "quantum", "--out", "{tmp}"], "unknown device 'quantum'"),
        (["train", "--task", "copy"], "the following arguments are required: --out"),
        (["train", "--config", "{tmp}/missing.toml", "--out", "{tmp}"], "does not exist"),
        (["eval", "{tmp}"], "no checkpoint at"),
        (["eval", "{tmp}", "--lenghts", "2-3"], "unrecognized arguments: --lenghts"),
        (["bake"], "invalid choice: 'bake'"),
    ],
)
def test_user_errors_are_one_line_without_traceback(argv, message, tmp_path, capsys):
    line = error_line(capsys, *(arg.replace("{tmp}", str(tmp_path)) for arg in argv))
    assert line.startswith("liemem") and message in line, line


def test_config_file_errors_name_the_option(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("lr = 0.01\nlearning_rate = 0.02\n")
    assert "unknown option 'learning_rate'" in error_line(capsys, "train", "--config", str(config), "--out", "x")
    config.write_text('model = "lantm"\n[model_options]\ngroup = "so5"\n')
    assert "group must be one of" in error_line(capsys, "train", "--config", str(config), "--out", str(tmp_path))
    config.write_text("lr = \n")
    assert "is not valid TOML" in error_line(capsys, "train", "--config", str(config), "--out", str(tmp_path))


def test_mismatched_or_broken_checkpoints_are_one_line_errors(tmp_path, capsys):
    out_dir = str(tmp_path / "run")
    assert main(["train", *TINY_TRAIN, "--out", out_dir]) == 0
    capsys.readouterr()
    line = error_line(capsys, "train", *TINY_TRAIN, "--model", "slantm", "--out", out_dir)
    assert "another configuration" in line and "model is 'lantm' there, 'slantm' here" in line
    line = error_line(capsys, "train", *TINY_TRAIN, "--seed", "9", "--out", out_dir)
    assert "seed is 1 there, 9 here" in line
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"\x00garbage")
    assert "not a readable checkpoint" in error_line(capsys, "eval", out_dir)


def test_a_diverging_run_exits_with_its_own_status(tmp_path, capsys):
    status, _, err = run_cli(capsys, "train", *TINY_TRAIN, "--lr", "1e30", "--out", str(tmp_path))
    assert status == 3 and "training stopped at step" in err and "Traceback" not in err


def cli_process(*argv, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "liemem", *argv], cwd=ROOT, env=env, **kwargs)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL a training process once it has saved a checkpoint, resume it, and compare with a straight run."""
    argv = ["train", "--task", "reverse", "--steps", "150", "--train-lengths", "2-4", "--test-lengths", "5-6",
            "--device", "cpu"]  # fmt: skip
    config = tmp_path / "run.toml"
    config.write_text("checkpoint_every = 3\neval_every = 50\neval_samples = 16\n")
    argv += ["--config", str(config)]
    straight = cli_process(*argv, "--out", str(tmp_path / "straight"), stdout=subprocess.DEVNULL)
    killed = cli_process(*argv, "--out", str(tmp_path / "killed"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "killed" / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    stopped_at = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["step"]
    assert stopped_at < 150
    resumed = cli_process(*argv, "--out", str(tmp_path / "killed"), stdout=subprocess.DEVNULL)
    assert resumed.wait(timeout=120) == 0 and straight.wait(timeout=120) == 0
    a, b = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True) for name in ("straight", "killed"))
    assert a["step"] == b["step"] == 150
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("straight", "killed")]
    for summary in summaries:
        summary.pop("wall_seconds")
    assert summaries[0] == summaries[1]


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "liemem"
    done = subprocess.run([str(script), "sample", "--task", "odd_first", "-n", "2"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2
    example = json.loads(done.stdout.splitlines()[0])
    tokens = np.array(example["input"])
    assert example["target"] == list(tokens[0::2]) + list(tokens[1::2])


def test_file_system_and_count_errors_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert "File exists" in error_line(capsys, "train", *TINY_TRAIN, "--out", str(blocker))
    assert "cannot be read" in error_line(capsys, "train", "--config", str(tmp_path), "--out", str(tmp_path / "r"))
    assert "sample: -n must be in [1, 10000000], got 0" in error_line(capsys, "sample", "--task", "copy", "-n", "0")
    assert "batch_size must be in [1, 1000000]" in error_line(
        capsys, "train", *TINY_TRAIN, "--batch-size", "0", "--out", "x"
    )
    config = tmp_path / "bad.toml"
    config.write_text('task = ["copy"]\n')
    assert "unknown task ['copy']" in error_line(capsys, "train", "--config", str(config), "--out", str(tmp_path))
    config.write_bytes(b"lr = 0.1 # \xff\xfe\n")
    assert "not valid TOML" in error_line(capsys, "train", "--config", str(config), "--out", str(tmp_path))


def test_eval_refuses_weights_that_do_not_fit_the_saved_model(tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert main(["train", *TINY_TRAIN, "--out", str(out_dir)]) == 0
    capsys.readouterr()
    state = torch.load(out_dir / "checkpoint.pt", weights_only=True)
    state["config"]["model_options"] = {"controller_size": 7}
    torch.save(state, out_dir / "checkpoint.pt")
    assert "does not fit its model" in error_line(capsys, "eval", str(out_dir), "--device", "cpu")


def test_import_makes_a_users_group_a_model_for_train_and_eval(tmp_path):
    """In a fresh process (the test session has the example's group registered already)."""
    plugin = str(ROOT / "examples" / "custom_group.py")
    out_dir = str(tmp_path / "so2")
    argv = ["train", *TINY_TRAIN, "--steps", "2", "--model", "so2", "--out", out_dir]
    unknown = cli_process(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = unknown.communicate(timeout=120)
    assert unknown.returncode == 2 and "unknown model 'so2'" in err
    trained = cli_process(*argv, "--import", plugin, stdout=subprocess.PIPE, text=True)
    out, _ = trained.communicate(timeout=120)
    assert trained.returncode == 0 and json.loads(out.splitlines()[-1])["step"] == 2
    scored = cli_process("eval", out_dir, "-n", "8", "--import", plugin, stdout=subprocess.PIPE, text=True)
    out, _ = scored.communicate(timeout=120)
    assert scored.returncode == 0 and json.loads(out.splitlines()[-1])["model"] == "so2"


def test_import_errors_are_one_line(tmp_path, capsys):
    assert "no such file" in error_line(capsys, "sample", "--task", "copy", "--import", "nowhere/plugin.py")
    assert "No module named" in error_line(capsys, "sample", "--task", "copy", "--import", "no_such_module_here")


def test_sample_test_split_is_the_test_set_a_run_scores(tmp_path, capsys, monkeypatch):
    from liemem.training import loop as training_loop

    scored = []
    original = training_loop.score

    def recording(model, buckets):
        for bucket in buckets:
            scored.extend((x[1:-1].tolist(), y[:-1].tolist()) for x, y in zip(*bucket, strict=True))
        return original(model, buckets)

    monkeypatch.setattr(training_loop, "score", recording)
    argv = ["train", "--steps", "1", "--train-lengths", "2-3", "--test-lengths", "4-6", "--device", "cpu"]
    config = tmp_path / "run.toml"
    config.write_text("eval_samples = 50\n")
    assert main([*argv, "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    _, out, _ = run_cli(capsys, "sample", "--task", "copy", "--split", "test", "-n", "50", "--lengths", "4-6")
    task = tasks.get("copy")
    expected = [(task.decode(x), task.decode(y)) for x, y in scored]  # markers stripped above
    assert [(line["input"], line["target"]) for line in map(json.loads, out.splitlines())] == expected


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("batch_size = 100000000000", "batch_size must be in [1, 1000000]"),
        ("eval_samples = 1000000000000", "eval_samples must be in [1, 10000000]"),
        ("seed = 99999999999999999999999", "seed must be in [0, 9223372036854775807]"),
        ("test_lengths = [4, 100000000000]", "test_lengths may go up to 1000000"),
        ("[task_options]\nsymbol_count = 100000000000", "symbol_count must be in [2, 1000000]"),
        ("task = 'associative_recall'\n[task_options]\nsymbol_count = 2\nitem_length = 3", "only 8 distinct items"),
    ],
)
def test_absurd_sizes_are_refused_by_name_before_any_work(toml, message, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(toml + "\n")
    line = error_line(capsys, "train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert message in line, line
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_associative_recall_draws_many_items_among_few_quickly(capsys):
    # 5,000 distinct items of 262,144: redrawing whole rows until none repeats would practically never end.
    _, out, _ = run_cli(capsys, "sample", "--task", "associative_recall", "--lengths", "5000-5000", "-n", "2")
    for line in out.splitlines():
        tokens = json.loads(line)["input"]
        items = [tuple(tokens[i + 1 : i + 4]) for i in range(0, 5000 * 4, 4)]
        assert len(set(items)) == 5000 and all(tokens[i] == "#" for i in range(0, 5000 * 4, 4))


def test_failing_or_clashing_imports_are_one_line(tmp_path, capsys):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("def oops(:\n")
    assert "SyntaxError" in error_line(capsys, "sample", "--task", "copy", "--import", str(broken))
    raising = tmp_path / "raising_plugin.py"
    raising.write_text("raise RuntimeError('not today')\n")
    assert "RuntimeError: not today" in error_line(capsys, "sample", "--task", "copy", "--import", str(raising))
    clash = tmp_path / "json.py"
    clash.write_text("")
    assert "a module named 'json' is already imported" in error_line(
        capsys, "sample", "--task", "copy", "--import", str(clash)
    )
    assert "needs a module name" in error_line(capsys, "sample", "--task", "copy", "--import", "")


def test_training_goes_on_when_its_output_pipe_closes(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("eval_every = 1\neval_samples = 4\n")
    argv = ["train", *TINY_TRAIN, "--steps", "30", "--config", str(config), "--out", str(tmp_path / "run")]
    process = cli_process(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.readline()  # the first evaluation's line, then the reader goes away
    process.stdout.close()
    assert process.wait(timeout=120) == 0, process.stderr.read()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 30


@pytest.mark.parametrize("before", [None, "auto", "loop"])
def test_no_compile_turns_compiling_off_for_the_command_only(monkeypatch, tmp_path, before):
    from liemem import cli, engine
    from liemem.engine import native

    monkeypatch.delenv("LIEMEM_COMPILE", raising=False)
    if before is None:
        monkeypatch.delenv(engine.SWITCH, raising=False)
    else:
        monkeypatch.setenv(engine.SWITCH, before)
    seen = []
    monkeypatch.setitem(cli.COMMANDS, "train", lambda args: seen.append(native.enabled()))
    assert main(["train", *TINY_TRAIN, "--no-compile", "--out", str(tmp_path)]) == 0
    assert main(["train", *TINY_TRAIN, "--out", str(tmp_path)]) == 0
    assert seen == [False, True]  # off during the first command only
    assert os.environ.get(engine.SWITCH) == before  # the caller's setting, as it was


def test_a_third_weighting_trains_from_the_command_line(tmp_path, capsys):
    config = ROOT / "examples" / "configs" / "cauchy.toml"
    status, out, _ = run_cli(capsys, "train", "--config", str(config), *TINY_TRAIN, "--out", str(tmp_path))
    assert status == 0, out
    assert out.splitlines()[0] == (
        "engine: autograd (the fast backends have no gradient for weighting 'cauchy' (they have inverse_square, "
        "softmax))"
    )
    assert json.loads((tmp_path / "config.json").read_text())["model_options"] == {"weighting": "cauchy"}
    assert json.loads((tmp_path / "summary.json").read_text())["step"] == 4


def test_a_forced_plan_that_cannot_run_is_one_line_and_status_2(tmp_path, capsys):
    config = ROOT / "examples" / "configs" / "cauchy.toml"
    status, out, err = run_cli(
        capsys, "train", "--config", str(config), *TINY_TRAIN, "--engine", "kernels", "--out", str(tmp_path)
    )
    assert status == 2 and out == ""
    assert err.strip().splitlines() == [
        "liemem: error: LIEMEM_ENGINE=kernels: the kernels backend cannot run this model: the fast backends have no "
        "gradient for weighting 'cauchy' (they have inverse_square, softmax)"
    ]
