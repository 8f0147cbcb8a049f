"""The report templates: hostile CRM text escaped on both pages, no undefined template variable, every section kept."""

from __future__ import annotations

import dataclasses
import re

import jinja2
import pandas as pd
import pytest
from jinja2 import meta
from typer.testing import CliRunner

from reports import html, report
from reports.diff import TierDiff
from tests.trained import shared_trained_model

runner = CliRunner()
SCRIPT = "<script>alert(1)</script>"
SCRIPT_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
REASON = 'Budget & "timing" <b>now</b>'
REASON_ESCAPED = "Budget &amp; &#34;timing&#34; &lt;b&gt;now&lt;/b&gt;"
TIERS = ["tier_1", "tier_2", "tier_3", "untiered"]


MOVE = {
    "account_id": SCRIPT,
    "old_tier": "tier_2",
    "new_tier": "tier_1",
    "levels": 1,
    "old_learned_score": 70.0,
    "new_learned_score": 81.4,
    "old_rule_score": 66.0,
    "new_rule_score": 72.0,
    "old_win_probability": 0.41,
    "new_win_probability": 0.52,
    "what_changed": REASON,
}


def hostile_diff(moves: int = 2) -> TierDiff:
    """A diff of two tiny scorings, written out by hand, whose account id, reason and file names are hostile."""
    rows = [
        MOVE,
        {
            "account_id": "ACC-2",
            "old_tier": "tier_1",
            "new_tier": "tier_3",
            "levels": -2,
            "old_learned_score": 88.0,
            "new_learned_score": 40.0,
            "old_rule_score": 80.0,
            "new_rule_score": 41.0,
            "old_win_probability": 0.7,
            "new_win_probability": 0.2,
            "what_changed": "engagement 90 → 10",
        },
    ][:moves]
    counts = pd.DataFrame(
        {"tier": TIERS, "before": [1, 1, 0, 1], "after": [1, 0, 1, 1], "change": [0, -1, 1, 0]},
    )
    transitions = pd.DataFrame(
        [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], index=TIERS, columns=TIERS
    ).rename_axis(index="old_tier", columns="new_tier")
    return TierDiff(
        old_name='old<"1">.csv',
        new_name="new & improved.parquet",
        common=3,
        added=0,
        dropped=0,
        counts=counts,
        transitions=transitions,
        moves=pd.DataFrame(rows, columns=list(MOVE)),
    )


def test_diff_page_escapes_account_ids_reasons_and_file_names():
    page = report.render_diff(hostile_diff())
    assert SCRIPT not in page and "<script" not in page
    assert f"<td>{SCRIPT_ESCAPED}</td>" in page
    assert f"<span class=reasons>{REASON_ESCAPED}</span>" in page
    assert "<p class=subtitle>old&lt;&#34;1&#34;&gt;.csv → new &amp; improved.parquet</p>" in page
    assert "<title>Tier movement between two scorings</title>" in page


def test_diff_page_keeps_its_sections_menu_and_cells():
    page = report.render_diff(hostile_diff())
    assert '<nav><a href="#counts">Tier counts</a><a href="#moves">Accounts that moved</a></nav>' in page
    assert "<section id=counts>\n<h2>Tier counts before and after</h2>" in page
    assert "<section id=moves>\n<h2>Accounts that changed tier (2)</h2>" in page
    assert '<td class="num"><span class=up>▲ 1</span></td>' in page
    assert '<td class="num"><span class=down>▼ 2</span></td>' in page
    assert '<td class="num">70 → 81</td>' in page  # the learned score before → after
    assert '<td class="num">41% → 52%</td>' in page
    assert '<td><span class="tier" style="background:#b91c1c">Tier 1</span></td>' in page
    assert '<td class="num">-1</td>' in page and '<td class="num">+1</td>' in page  # tier count changes
    assert "<div class=value>33%</div><div class=note>of accounts in both</div>" in page  # 1 of 3 unchanged
    assert (  # the transition matrix: Tier 2 → Tier 1, one account of three, the diagonal outlined
        '<td class="num" style="background:rgba(31,111,235,0.86);color:#fff"><b>1</b>'
        '<span class=sub style="color:inherit">33.3%</span></td>'
    ) in page
    assert '<td class="num diagonal" style="background:rgba(31,111,235,0.06);color:#111827"><b>0</b>' in page
    assert "tier_counts.csv, transitions.csv, moves.csv.</footer>" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched from the network


def test_diff_page_without_moves_says_so():
    page = report.render_diff(hostile_diff(moves=0))
    assert "<h2>Accounts that changed tier (0)</h2>" in page
    assert "<p class=caption>No account changed tier.</p>" in page
    assert "<tbody>" in page  # the tier counts table is still there


PAGE_VARIABLES = {  # what each page reads from its context: a misspelt name fails here before a user sees it
    "diff.html": {"d", "up", "down", "moved", "counts_table", "transitions", "moves_table", "files", "written",
                  "movers_shown"},
    "compare.html": {"c", "h", "data_label", "files", "written", "mover_levels", "movers_shown", "agreement",
                     "holdout_figure", "holdout_table", "holdout_last_day", "gain_figure", "gain_table",
                     "calibration_figure", "calibration_table", "map_figure", "tier_1_accounts", "tier_1_table",
                     "movers_table", "one_level_apart", "budget_table", "budget_split", "forecast_table",
                     "forecast_end", "simulations"},
    "base.html": {"title", "subtitle", "menu", "footer"},
    "macros.html": set(),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PAGE_VARIABLES))
def test_templates_read_only_the_variables_their_renderer_passes(name):
    env = html.environment()
    source = env.loader.get_source(env, name)[0]
    # Jinja's analysis sees the page's own top-level names (the macros' `m`, its {% set %}s) as free inside blocks.
    own = {"m", *re.findall(r"{%-? set (\w+)", source)}
    assert meta.find_undeclared_variables(env.parse(source)) - own == PAGE_VARIABLES[name]


def test_an_undefined_variable_is_an_error_not_an_empty_string():
    with pytest.raises(jinja2.UndefinedError, match="'moved' is undefined"):
        html.render("diff.html", d=hostile_diff(), up=1, down=1, counts_table="", transitions="", moves_table="",
                    files=[], written=pd.Timestamp("2026-01-01"), movers_shown=40)  # fmt: skip
    with pytest.raises(jinja2.UndefinedError):
        html.environment().from_string("{{ nothing | count }}").render()


def test_macros_escape_their_text_and_refuse_a_markup_anchor():
    env = html.environment()
    page = env.from_string(
        '{% import "macros.html" as m %}{{ m.kpis([(a, b, c)]) }}{{ m.banner(a) }}{{ m.tier(a) }}'
        '{% call m.section("ok-1", a, b) %}{{ m.caption(c) }}{% endcall %}'
    ).render(a=SCRIPT, b="5 & 6", c='"quoted"')
    assert SCRIPT not in page
    assert f"<div class=label>{SCRIPT_ESCAPED}</div><div class=value>5 &amp; 6</div>" in page
    assert f'<span class="tier" style="background:#6b7280">{SCRIPT_ESCAPED}</span>' in page
    assert f"<section id=ok-1>\n<h2>{SCRIPT_ESCAPED}</h2>\n<p class=lead>5 &amp; 6</p>" in page
    assert "<p class=caption>&#34;quoted&#34;</p>" in page
    with pytest.raises(ValueError, match="not a section anchor"):
        env.from_string('{% import "macros.html" as m %}{% call m.section(a, "t") %}{% endcall %}').render(
            a="x onmouseover=alert(1)"
        )


def test_figures_are_embedded_pngs_with_their_caption():
    from matplotlib.figure import Figure

    chart = Figure(figsize=(1, 1))
    chart.add_subplot().plot([0, 1], [0, 1])
    part = html.figure(chart, 'rows & "columns"', "a <chart>")
    assert part.startswith('<figure><img src="data:image/png;base64,iVBORw0KGgo')  # the PNG signature
    assert part.endswith(
        '" alt="a &lt;chart&gt;"><figcaption><b>How to read:</b> rows &amp; &#34;columns&#34;</figcaption></figure>'
    )


# --- the compare page, from a real comparison with hostile CRM text put into it ------------------------------


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """The Comparison `tiering compare` builds with the test run's trained model (the page it renders is unused)."""
    from cli.main import app

    model = shared_trained_model(tmp_path_factory)
    built = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", model.tracking_uri)
        patch.setattr(report, "render_comparison", lambda c, label: built.append(c) or "")
        out = tmp_path_factory.mktemp("templates") / "report"
        result = runner.invoke(app, ["compare", str(model.data_dir), "--model", model.uri, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return built[0]


def hostile(c):
    """The comparison with its best Tier 1 account renamed to a script, its top reason and a warning hostile,
    and three accounts listed as movers."""
    scores = c.scores.copy()
    first = scores[scores["learned_tier"] == "tier_1"].sort_values("learned_score", ascending=False).index[0]
    scores.loc[first, ["account_id", "account_name", "reason_1"]] = [SCRIPT, SCRIPT, REASON]
    movers = scores.loc[[first]].assign(levels=2, reason_2="", reason_3=REASON)
    return dataclasses.replace(c, scores=scores, movers=movers, warnings=[f"ties at {SCRIPT}"])


def test_compare_page_escapes_account_names_reasons_warnings_and_the_data_label(comparison):
    page = report.render_comparison(hostile(comparison), "export of R&D <team>")
    assert SCRIPT not in page and "<script" not in page
    assert f"<td>{SCRIPT_ESCAPED}</td>" in page  # the name alone: the id is the same text
    assert f"<td>{REASON_ESCAPED}</td>" in page  # the Tier 1 list's top reason
    assert f"<div class=reasons>{REASON_ESCAPED}<br>{REASON_ESCAPED}</div>" in page  # movers' reasons, one a line
    assert f"<div class=banner>ties at {SCRIPT_ESCAPED}</div>" in page
    assert "<p class=subtitle>export of R&amp;D &lt;team&gt; · 1,500 accounts scored as of " in page


def test_compare_page_keeps_every_section_in_order_with_its_menu(comparison):
    page = report.render_comparison(hostile(comparison), "export")
    anchors = re.findall(r"<section id=([\w-]+)>", page)
    assert anchors == ["agreement", "holdout", "gain", "calibration", "map", "movers", "budget", "forecast"]
    assert (
        '<nav><a href="#agreement">Agreement</a><a href="#holdout">Holdout by tier</a><a href="#gain">Gain and lift'
        '</a><a href="#calibration">Calibration</a><a href="#map">Priority map</a><a href="#movers">Movers</a>'
        '<a href="#budget">Budget</a><a href="#forecast">Forecast</a></nav>'
    ) in page
    assert "<h2>Accounts the tierings disagree on (1)</h2>" in page
    assert len(re.findall(r"<figure><img src=\"data:image/png;base64,", page)) == 4
    assert page.count("<figcaption><b>How to read:</b> ") == 4
    assert page.count("<table class=matrix>") == 2  # agreement on the current book and at the holdout start
    assert "<h3>Share of holdout won revenue captured</h3>" in page
    assert "summary.csv, holdout_tiers.csv, book_tiers.csv, gain.csv, scores.csv, agreement.csv" in page


def test_rules_only_page_leaves_out_the_learned_sections(comparison):
    rules = dataclasses.replace(comparison, learned=False, model="rules only", warnings=[])
    page = report.render_comparison(rules, "export")
    assert re.findall(r"<section id=([\w-]+)>", page) == ["holdout", "gain", "budget"]
    assert "<div class=banner>No learned model: no champion model is registered" in page
    assert "<h2>How the rule tiers did on recent deals</h2>" in page
    assert "<div class=label>Accounts scored</div><div class=value>1,500</div>" in page


def test_counts_are_rounded_to_the_nearest_whole_not_truncated():
    from ingest.display import count

    assert count(134.94) == "135"  # an expected 134.94 deals won
    assert count(2118.53) == "2,119"
    assert count(20) == "20"
    assert count(float("nan")) == "–"
