"""results.md on a hand-built study: intervals, marks, findings and the literature columns."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from bayesdistill.reports import collect, markdown, write_reports
from bayesdistill.reports.differences import Difference, findings
from bayesdistill.reports.stats import compare_paired
from tests.reports.fake_study import EARLY_GAP, LAPLACE_VS_DET, build_study, student_accuracies


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return collect(build_study(tmp_path_factory.mktemp("reports") / "study"))


def _row(text: str, kind: str, after: str = "## Student loss `kd`") -> list[str]:
    section = text.split(after)[1]
    line = next(x for x in section.splitlines() if x.startswith(f"| `{kind}`"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_delta_cells_show_interval_wins_p_and_mark_only_excluded_zero(results):
    text = markdown(results)
    laplace = _row(text, "laplace")
    # Δ vs deterministic: d = [1.2, 0.4, 2.0, −0.3, 1.1], mean 0.88 ± t₀.₉₇₅,₄·sd/√5
    ci = stats.ttest_1samp(LAPLACE_VS_DET, 0.0).confidence_interval(0.95)
    assert f"{ci.low:+.2f}" == "-0.20" and f"{ci.high:+.2f}" == "+1.96"
    assert laplace[-1] == "+0.88 [-0.20, +1.96] (4/5, p=0.125)"  # inconclusive: no mark
    # Δ vs one-hot: every seed well above, the interval excludes 0
    assert laplace[-2].endswith("(5/5, p=0.0625)*")
    ivon = _row(text, "ivon")
    assert ivon[-1] == "+2.00 [+1.80, +2.20] (5/5, p=0.0625)*"
    assert _row(text, "deterministic")[-1] == "—"


def test_findings_list_only_resolved_differences(results):
    text = markdown(results)
    section = text.split("### Findings for `kd`")[1].split("What the students learn from")[0]
    resolved, unresolved = section.split("Not resolved")
    assert "`ivon` − `deterministic`: +2.00 pp [+1.80, +2.20], higher in 5/5 seeds" in resolved
    assert "`laplace` − `none`" in resolved
    assert "`laplace` − `deterministic`" not in resolved
    # seeds for 80 % power at the observed effect and spread: ⌈7.85·(0.870/0.88)²⌉ = 8
    sd = stats.tstd(LAPLACE_VS_DET)
    needed = math.ceil(((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sd / 0.88) ** 2)
    assert needed == 8
    assert (
        f"`laplace` − `deterministic`: +0.88 pp [-0.20, +1.96] (4/5 seeds positive; "
        f"Wilcoxon p = 0.125, sign test p = 0.375); resolving 0.88 pp at this spread "
        f"(sd 0.87 pp) takes about {needed} seeds"
    ) in unresolved
    assert "`ivon` − `deterministic`" not in unresolved


def test_bootstrap_interval_option_changes_the_intervals(results):
    text = markdown(results, interval="bootstrap", bootstrap_seed=0)
    # the percentile bootstrap is narrower than t with five seeds: here it excludes 0
    cell = _row(text, "laplace")[-1]
    assert cell.startswith("+0.88 [") and cell.endswith("*")
    assert "percentile bootstrap" in text
    assert markdown(results, interval="bootstrap", bootstrap_seed=0) == text
    with pytest.raises(ValueError, match=r"interval must be one of \['t', 'bootstrap'\]"):
        markdown(results, interval="wald")


def test_literature_table_reports_final_best_by_val_and_best_by_test(results):
    text = markdown(results)
    after = "Accuracy (%) as papers report it"
    header = next(x for x in text.split(after)[1].splitlines() if x.startswith("| teacher kind"))
    assert "best by test (selected on the test set)" in header and "top-5" not in header
    accs = [100 * a for a in student_accuracies()["ivon"]]
    mean, sd = sum(accs) / 5, stats.tstd(accs)
    cells = _row(text, "ivon", after)
    assert cells[2:5] == [
        f"{mean:.2f} ± {sd:.2f}",
        f"{mean - 100 * EARLY_GAP:.2f} ± {sd:.2f}",
        f"{mean:.2f} ± {sd:.2f}",
    ]


def test_top5_column_with_ten_classes_and_reports_written(tmp_path):
    folder = build_study(tmp_path / "study", num_classes=10)
    write_reports(folder)
    text = (folder / "results.md").read_text()
    after = "Accuracy (%) as papers report it"
    cells = _row(text, "none", after)
    accs = [100 * (a + 0.3) for a in student_accuracies()["none"]]
    assert cells[-1] == f"{sum(accs) / 5:.2f} ± {stats.tstd(accs):.2f}"
    assert "best_test_accuracy" in (folder / "results.csv").read_text().splitlines()[0]


def test_findings_text_for_one_seed_a_zero_mean_and_nothing_resolved():
    one_seed = Difference("laplace", "deterministic", compare_paired([0.7]))
    zero_mean = Difference("ivon", "deterministic", compare_paired([1.0, -1.0, 0.5, -0.5]))
    lines = "\n".join(findings([one_seed, zero_mean], "kd"))
    assert "No difference is resolved: every 95 % interval includes 0." in lines
    assert "`laplace` − `deterministic`: +0.70 pp (1/1 seeds positive; Wilcoxon p = 1" in lines
    assert "needs at least 2 seeds" in lines
    assert "`ivon` − `deterministic`: +0.00 pp [" in lines
    assert "the mean difference is 0, which no number of seeds resolves" in lines
    # one of the two has an interval: no chance count for a single comparison
    assert "by chance" not in lines


def test_findings_say_how_many_intervals_exclude_0_by_chance():
    differences = [
        Difference(kind, "deterministic", compare_paired([0.5, 1.0, -0.2, 0.3, 0.8]))
        for kind in ("a", "b", "c", "d", "e", "f", "g", "h")
    ]
    lines = "\n".join(findings(differences, "kd"))
    assert "8 intervals in this list: if no teacher kind differed, about 0.4 of them" in lines
