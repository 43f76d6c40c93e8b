"""`RunOptions`: the options a trainer passes on to `fit`, as one object."""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

from bayesdistill.teachers import TeacherContext, train_mse_teacher
from bayesdistill.train import DEFAULT_RUN, RunOptions, TrainSettings, fit

from ..conftest import make_mlp


def test_every_option_is_a_keyword_of_fit_with_the_same_default():
    """`DEFAULT_RUN` trains as a plain `fit` does, and no option is one fit does not take."""
    keywords = inspect.signature(fit).parameters
    for option in fields(RunOptions):
        assert option.name in keywords, option.name
        assert keywords[option.name].default == getattr(DEFAULT_RUN, option.name), option.name


def test_fit_options_and_in_dir():
    run = RunOptions(resume=True, progress=False)
    moved = run.in_dir(Path("elsewhere"))
    assert moved.fit_options() == {**run.fit_options(), "run_dir": Path("elsewhere")}
    assert run.run_dir is None  # frozen: in_dir makes a new one


def test_a_teacher_context_carries_one_run_options(tiny_splits):
    """A `TeacherContext` holds its builders' run options as one `RunOptions` (an option
    added there reaches every builder), readable under each option's own name, and
    `in_run_dir` moves only the folder."""
    run = RunOptions(
        evaluate=lambda network: {},
        augment=lambda x, generator: x,
        run_dir=Path("run"),
        resume=True,
        progress=False,
    )
    context = TeacherContext(splits=tiny_splits, run=run)
    assert context.run_options() is run
    for option in fields(RunOptions):
        assert getattr(context, option.name) == getattr(run, option.name), option.name
    moved = context.in_run_dir(Path("elsewhere"))
    assert moved.run == run.in_dir(Path("elsewhere")) and moved.splits is context.splits
    assert context.run_dir == Path("run")


def test_a_trainer_runs_with_the_options_it_is_given(tiny_splits, tmp_path):
    """``run`` reaches `fit`: its run folder gets the learning curve, ``evaluate`` is called."""
    calls = []

    def evaluate(network):
        calls.append(1)
        return {"test_accuracy": 0.5}

    train_mse_teacher(
        make_mlp(tiny_splits),
        tiny_splits.train,
        settings=TrainSettings(epochs=2, batch_size=64, lr=0.1),
        seed=0,
        run=RunOptions(evaluate=evaluate, run_dir=tmp_path, progress=False),
    )
    assert (tmp_path / "metrics.jsonl").is_file()
    assert calls
