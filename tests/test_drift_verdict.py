"""The batch's verdict weighed by the model's feature importance (issue 13 item 2;
workbench.core.drift_verdict): each weighted rule fires on its own, `verdict = "share"` is the rule
before weights exactly, model features map to data columns, and wide tables follow what the model
leans on. Pure: reports built by the real `compare` on synthetic tables, or columns built by hand
where a rule must fire alone."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from tests.test_drift_core import numbers_table
from workbench.core.drift import compare, judge as judge_from_drift
from workbench.core.drift_report import ColumnDrift, DriftReport, Finding, report_from_dict, report_to_dict
from workbench.core.drift_verdict import column_weights, drift_rule, feature_column, judge, weigh
from workbench.core.manifest import DriftSpec

SPEC = DriftSpec()
SHARE = replace(SPEC, verdict="share")


def column(name: str, drifted: bool = False, major: str = "", importance: float | None = None,
           role: str = "feature", test: str = "wasserstein") -> ColumnDrift:
    return ColumnDrift(name, "numeric", test, 0.5 if drifted else 0.01, None, 0.1, 0.1, drifted,
                       0.9 if drifted else 0.1, "", major=major, importance=importance, role=role)


def fifty(weights: dict[int, float] | None = None, drifted=(), major: dict[int, str] | None = None) -> list[ColumnDrift]:
    """50 feature columns c0..c49; the weights not given share the rest evenly."""
    weights = dict(weights or {})
    rest = (1 - sum(weights.values())) / (50 - len(weights))
    return [column(f"c{i}", i in drifted, (major or {}).get(i, ""), weights.get(i, rest)) for i in range(50)]


# -- each rule on its own ----------------------------------------------------------------------

def test_a_severe_shift_of_an_important_feature_drifts_the_batch_on_its_own():
    columns = fifty({0: 0.34}, drifted={0}, major={0: "c0 shifted by +1.2 sd, PSI 0.71 (>= 2 x 0.25)"})
    # 1 of 50 columns, carrying 34%: with the other rules out of reach, only the severe-shift rule fires.
    assert judge(columns, (), replace(SPEC, drift_importance=0.5))[0] == "drifted"
    assert judge(columns, (), replace(SPEC, important_feature=0.35, drift_importance=0.5))[0] == "warning"
    assert judge(columns, (), SPEC) == (
        "drifted", "c0 shifted by +1.2 sd, PSI 0.71 (>= 2 x 0.25), 34% of the model's importance")


def test_drifted_columns_carrying_enough_importance_drift_the_batch():
    columns = fifty({3: 0.2, 7: 0.12}, drifted={3, 7})  # no severe shift, 2 of 50 columns: below the share rule
    assert judge(columns, (), SPEC) == (
        "drifted", "2 columns carrying 32% of the importance drifted (>= 30%): c3, c7")
    assert judge(columns, (), replace(SPEC, drift_importance=0.4))[0] == "no drift"


def test_the_share_rule_stays_one_input_of_the_weighted_verdict():
    columns = fifty({0: 0.5}, drifted={10, 11, 12})  # three columns of 1% each
    assert judge(columns, (), SPEC) == ("drifted", ">= 3 columns")
    report = _report(columns)
    assert report.summary == "drifted: 3 of 50 columns drifted (6%), rule: >= 3 columns"


def test_a_severe_shift_of_a_minor_column_is_a_warning():
    columns = fifty({0: 0.5}, drifted={9}, major={9: "c9 shifted by +1.1 sd"})
    verdict, rule = judge(columns, (), SPEC)
    assert (verdict, rule) == ("warning", "c9 shifted by +1.1 sd, 1% of the model's importance (< 5%)")
    assert _report(columns).summary == (
        "warning: c9 shifted by +1.1 sd, 1% of the model's importance (< 5%); 1 of 50 columns drifted (2%), "
        "below the drift rules")


def test_no_drift_says_how_much_importance_drifted():
    columns = fifty({0: 0.5}, drifted={9})
    assert _report(columns).summary == (
        "no drift: 1 of 50 columns drifted (2%), below the drift rules (>= 3 columns; 1% of the importance "
        "drifted, < 30%)")


def test_a_blocking_finding_is_not_checked_whatever_the_weights():
    columns = fifty({0: 0.5}, drifted={0}, major={0: "c0 shifted by +3.0 sd"})
    missing = Finding("missing_column", "column c1 is missing from the batch", "c1", blocking=True)
    assert judge(columns, (missing,), SPEC) == ("not checked", "unusable batch: missing column: c1")


def test_the_target_and_columns_not_compared_never_weigh():
    report = _report([column("a", drifted=True), column("b"), column("id", test="not_compared"),
                      column("label", drifted=True, role="target")])
    weighed = weigh(report, {"a": 3.0, "b": 1.0, "id": 6.0, "label": 100.0}, "explanations of version 1 (gain)",
                    SPEC)
    assert {c.column: c.importance for c in weighed.columns} == {"a": 0.75, "b": 0.25, "id": None, "label": None}
    assert weighed.verdict == "drifted" and weighed.rule.startswith("1 column carrying 75% of the importance")
    assert weighed.importance_line == ("importance: explanations of version 1 (gain); left out, matching no "
                                       "compared column: id, label")


# -- no weights: what can be used, and why ----------------------------------------------------

@pytest.mark.parametrize("importance,why,said", [
    ({}, "no model version yet (no run has registered one)",
     "no feature importance: no model version yet (no run has registered one)"),
    ({"x_1": 2.0, "y": 1.0}, "",
     "no feature importance: none of the model's 2 features (x_1, y) is a compared column of the data"),
    ({"c0": 0.0, "c1": 0.0}, "", "no feature importance: none of the model's 2 features (c0, c1) is a compared "
                                 "column of the data"),
])
def test_without_importance_the_share_rule_and_the_warning_decide_and_the_report_says_why(importance, why, said):
    columns = fifty(drifted={0}, major={0: "c0 shifted by +2.0 sd"})
    plain = [replace(c, importance=None) for c in columns]
    weighed = weigh(_report(plain), importance, "explanations of version 2 (gain)", SPEC, why)
    assert (weighed.verdict, weighed.rule) == judge(plain, (), SHARE) == ("warning", "c0 shifted by +2.0 sd")
    assert weighed.importance_source == "none" and weighed.importance_line == said and not weighed.weighed
    assert all(c.importance is None for c in weighed.columns)


# -- "share": the rule before weights, exactly --------------------------------------------------

def _old_judge(counted, findings, spec):
    """core/drift.py's judge before weights (commit c787f7a), verbatim but for the names."""
    blocking = [f for f in findings if f.blocking]
    if blocking:
        from workbench.core.drift_verdict import _unusable
        return "not checked", "unusable batch: " + _unusable(blocking)
    by_share = max(1, math.ceil(spec.drift_share * len(counted) - 1e-9))
    needed, rule = (by_share, f"share >= {spec.drift_share:.0%}") if by_share <= spec.drift_columns else \
        (spec.drift_columns, f">= {spec.drift_columns} columns")
    if counted and sum(c.drifted for c in counted) >= needed:
        return "drifted", rule
    major = [c.major for c in counted if c.major]
    if major:
        shown = "; ".join(major[:3]) + (f" and {len(major) - 3} more" if len(major) > 3 else "")
        return "warning", shown
    return "no drift", rule


def test_share_reproduces_the_old_verdict_on_random_weighed_batches():
    rng = random.Random(13)
    differ = 0
    for _ in range(2000):
        n = rng.randint(1, 60)
        raw = [rng.random() ** 4 for _ in range(n)]
        columns = [column(f"c{i}", rng.random() < 0.1, f"c{i} shifted by +1.0 sd" if rng.random() < 0.05 else "",
                          raw[i] / sum(raw)) for i in range(n)]
        findings = (Finding("missing_column", "gone", "c0", blocking=True),) if rng.random() < 0.05 else ()
        spec = replace(SHARE, drift_share=rng.choice([0.1, 0.2, 0.25, 0.5]), drift_columns=rng.choice([1, 3, 5]))
        assert judge(columns, findings, spec) == _old_judge(columns, findings, spec)
        differ += judge(columns, findings, replace(spec, verdict="weighted")) != _old_judge(columns, findings, spec)
    assert differ > 100  # the weights were there to be used: the weighted rule does decide otherwise


# The documented cases of test_drift_core (issue 11): 3 of 13, 3 of 53, 2 of 53, a warning, clean.
DOCUMENTED = [
    (13, {0: 1.0, 1: 0.4, 2: 0.4}, {}, "drifted", "drifted: 3 of 13 columns drifted (23%), rule: share >= 20%"),
    (53, {0: 0.4, 1: 0.4, 2: 0.4}, {}, "drifted", "drifted: 3 of 53 columns drifted (6%), rule: >= 3 columns"),
    (53, {0: 0.4, 1: 0.4}, {}, "no drift", "no drift: 2 of 53 columns drifted (4%), below the drift rule (>= 3 columns)"),
    (19, {}, {0: 1.4}, "warning", "warning: c0 shifted by +2.0 sd, PSI "),
    (19, {3: 1.0}, {}, "warning", "warning: c3 shifted by +1.0 sd"),
    (19, {}, {}, "no drift", "no drift: 0 of 19 columns drifted (0%)"),
]


@pytest.mark.parametrize("columns,shifts,scale,verdict,summary", DOCUMENTED)
def test_share_keeps_the_documented_verdicts_even_with_weights_that_would_change_them(columns, shifts, scale,
                                                                                    verdict, summary):
    reference = numbers_table(5000, columns, seed=1)
    batch = numbers_table(1000, columns, seed=2, shifts=shifts, scale=scale)
    report = compare(reference, batch, 1000, SHARE)
    # All the importance in the shifted column: the weighted rule would call a warning drift.
    weighed = weigh(report, {"c0": 10.0, "c3": 10.0, "c5": 1.0}, "explanations of version 1 (gain)", SHARE)
    assert weighed.weighed and (weighed.verdict, weighed.rule) == (report.verdict, report.rule)
    assert weighed.verdict == verdict and weighed.summary.startswith(summary), weighed.summary
    # Without weights the default (weighted) is the same rule too: what it cannot weigh, it counts.
    plain = compare(reference, batch, 1000, SPEC)
    assert (plain.verdict, plain.summary) == (report.verdict, report.summary)
    if verdict == "warning":
        assert weigh(report, {"c0": 10.0, "c3": 10.0, "c5": 1.0}, "x", SPEC).verdict == "drifted"


def test_drift_keeps_exporting_the_verdict_functions():
    assert judge_from_drift is judge
    assert drift_rule(53, SPEC) == (3, ">= 3 columns")


# -- wide tables: the verdict follows what the model uses ---------------------------------------

@pytest.mark.parametrize("shifted,verdict,said", [
    (0, "drifted", ("drifted: c0 ", "30% of the model's importance")),
    (7, "warning", ("warning: c7 ", "1% of the model's importance (< 5%); 1 of 50 columns drifted (2%), below the "
                                    "drift rules")),
])
def test_fifty_columns_one_feature_shifted_by_a_standard_deviation(shifted, verdict, said):
    reference = numbers_table(5000, 50, seed=1)
    batch = numbers_table(1000, 50, seed=2, shifts={shifted: 1.0})
    importance = {"c0": 30.0, **{f"c{i}": 70 / 49 for i in range(1, 50)}}
    report = weigh(compare(reference, batch, 1000, SPEC), importance, "explanations of version 1 (gain)", SPEC)
    begins, ends = said
    assert report.verdict == verdict and report.summary.startswith(begins) and report.summary.endswith(ends), \
        report.summary
    assert "PSI" in report.summary  # severe: a one-sd move of a normal column moves its deciles' PSI past 0.5
    assert report.drifted_columns == [f"c{shifted}"]
    old = weigh(compare(reference, batch, 1000, SHARE), importance, "x", SHARE)
    assert old.verdict == "warning"  # the rule before weights: a warning either way


# -- features -> columns -----------------------------------------------------------------------

COLUMNS = ["contract", "contract_type", "payment", "payment_method", "monthly charges", "tenure", "a.b"]


@pytest.mark.parametrize("feature,expected", [
    ("tenure", "tenure"),                                   # exact
    ("contract_type", "contract_type"),                     # exact beats the prefix contract_
    ("contract_Month-to-month", "contract"),                # one-hot (pandas get_dummies, sklearn)
    ("contract=Two year", "contract"),                      # DictVectorizer
    ("contract.One year", "contract"),
    ("contract:One year", "contract"),
    ("contract_type_Monthly", "contract_type"),             # the longest prefix
    ("payment_method_Electronic check", "payment_method"),  # not payment
    ("payment_x", "payment"),
    ("monthly_charges", "monthly charges"),                 # LightGBM writes spaces as _
    ("a.b_1", "a.b"),
    ("contracts", None),                                    # a prefix must end at a separator
    ("tenure_months_bucket", "tenure"),
    ("income", None),
    ("Tenure", None),                                       # names are case-sensitive, as columns are
])
def test_feature_column(feature, expected):
    assert feature_column(feature, COLUMNS) == expected


def test_column_weights_add_encoded_features_up_and_normalize_over_the_columns():
    weights, unmapped = column_weights({"contract_Month-to-month": 30.0, "contract_Two year": 10.0,
                                        "tenure": 40.0, "income": 500.0, "payment_x": 0.0}, COLUMNS)
    assert weights == {"contract": 0.5, "contract_type": 0.0, "payment": 0.0, "payment_method": 0.0,
                       "monthly charges": 0.0, "tenure": 0.5, "a.b": 0.0}
    assert unmapped == ["income"] and sum(weights.values()) == pytest.approx(1.0)
    assert column_weights({"income": 3.0}, COLUMNS) == ({}, ["income"])


# -- the report ---------------------------------------------------------------------------------

def test_a_weighed_report_survives_json_and_an_old_report_reads_without_weights():
    report = weigh(_report(fifty({0: 0.3}, drifted={0}, major={0: "c0 shifted by +1.5 sd"})),
                   {f"c{i}": (30.0 if i == 0 else 70 / 49) for i in range(50)}, "model file of version 4 (gain)",
                   SPEC)
    back = report_from_dict(report_to_dict(report))
    assert back == report and back.columns[0].importance == pytest.approx(0.3)
    assert back.summary == "drifted: c0 shifted by +1.5 sd, 30% of the model's importance"
    old = report_to_dict(report)
    del old["importance_source"], old["importance_note"]
    for c in old["columns"]:
        del c["importance"]
    read = report_from_dict(old)
    assert read.importance_source == "" and read.importance_line == "" and not read.weighed
    assert all(c.importance is None for c in read.columns)


def test_the_settings_are_checked_where_they_are_parsed():
    from workbench.core.errors import ManifestError
    from workbench.core.manifest import parse_manifest

    base = '[project]\nname = "p"\n[stages.fit]\ncommand = "python -c pass"\n[drift]\n'
    drift = parse_manifest(base).drift
    assert (drift.verdict, drift.important_feature, drift.drift_importance) == ("weighted", 0.05, 0.3)
    drift = parse_manifest(base + 'verdict = "share"\nimportant_feature = 0.2\ndrift_importance = 0.5\n').drift
    assert (drift.verdict, drift.important_feature, drift.drift_importance) == ("share", 0.2, 0.5)
    for bad, message in [('verdict = "count"', "drift.verdict.*'weighted'.*'share'.*'count'"),
                         ("important_feature = 0", "drift.important_feature.*above 0 and at most 1"),
                         ("drift_importance = 1.5", "drift.drift_importance.*above 0 and at most 1"),
                         ('drift_importance = "a third"', "drift.drift_importance")]:
        with pytest.raises(ManifestError, match=message):
            parse_manifest(base + bad + "\n")


def _report(columns: list[ColumnDrift], spec: DriftSpec = SPEC) -> DriftReport:
    counted = [c for c in columns if c.role == "feature" and c.compared]
    verdict, rule = judge(counted, (), spec)
    return DriftReport("b.csv", 100, "ref", 1000, tuple(columns), (), spec.drift_share,
                       sum(c.drifted for c in counted) / len(counted), verdict == "drifted", verdict=verdict,
                       rule=rule, drift_columns=spec.drift_columns)


def test_findings_added_later_re_judge_with_the_weights_kept():
    """services/drift.py adds findings (malformed rows, the reference's rejected rows) after
    comparing: the verdict they make is still the weighted one."""
    from workbench.services.drift import _with_findings

    report = weigh(_report(fifty({0: 0.5}, drifted={0})), {f"c{i}": (50.0 if i == 0 else 50 / 49) for i in range(50)},
                   "explanations of version 2 (gain)", SPEC)
    assert report.verdict == "drifted" and report.rule.startswith("1 column carrying 50% of the importance")
    noted = _with_findings(report, (Finding("reference_rows", "the reference: 1 row could not be read"),), SPEC)
    assert (noted.verdict, noted.rule, noted.columns) == (report.verdict, report.rule, report.columns)
    assert noted.importance_source == "explanations of version 2 (gain)"
    blocked = _with_findings(report, (Finding("malformed_rows", "b.csv: 2 rows could not be read: line 3",
                                              blocking=True),), SPEC)
    assert blocked.verdict == "not checked" and blocked.columns[0].importance == pytest.approx(0.5)
