"""The dashboard's experiments in headless Chromium: `pushlang serve` reads an activity log with
variants a/b/c, a control group, the global holdout and a winner record (written as the runtime
writes them, SPEC §9.4), and the page shows each variant's figures, the winner, and the forest plots
of the differences in conversion rate with their 95% intervals. And its languages: a log whose
decisions used the texts of `lang` blocks (and the message's own) gives a row per language."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from browser_env import BROWSER, CHROMIUM, needs_browser, serving
from test_experiment_stats import records
from test_language_stats import records as language_records

from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.stats import campaign_stats, comparison_text, from_outputs

pytestmark = needs_browser

TOKEN = "dashboard-token"
CART = '''campaign cart "Abandoned cart" {
  labels "retention"
  platforms chrome
  on "Added To Cart"
  message {
    title "Hi"
    body "Your cart"
  }
  control group 10%
}
'''
NEWS = '''campaign news {
  platforms chrome
  on "Read Article"
  message {
    title "News"
    body "Out now"
  }
}
'''
CARD = '.experiment[data-campaign="{}"]'


def test_dashboard_shows_variants_the_winner_and_the_global_holdout(tmp_path: Path) -> None:
    (tmp_path / "cart.push").write_text(CART, encoding="utf-8")
    (tmp_path / "news.push").write_text(NEWS, encoding="utf-8")
    with serving(tmp_path, ["cart.push", "news.push"], TOKEN) as base:
        log = ActivityLog(str(tmp_path / "state.db"))  # the service's file, on a connection of its own
        for out in records():
            log.record(out)
        log.close()
        expected = {c["id"]: c for c in campaign_stats(from_outputs(records()), {})["campaigns"]}
        asking = urllib.request.Request(base + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        served = {c["id"]: c for c in json.loads(urllib.request.urlopen(asking, timeout=5).read())["campaigns"]}
        assert served["cart"]["variants"] == json.loads(json.dumps(expected["cart"]["variants"]))

        shot = tmp_path / "experiments.png"
        cart, holdout = CARD.format("cart"), CARD.format("global-holdout")
        selectors = [f"{cart} h3", f"{cart} [data-key=winner]", f"{cart} tbody tr", f"{cart} thead th",
                     f"{cart} [data-key=vs-first]", f"{cart} [data-key=vs-control]", f"{cart} [data-key=vs-control-p]",
                     f"{cart} svg.forest g.row", f"{cart} svg.forest g.row.up", f"{cart} svg.forest g.row.down",
                     f"{cart} svg.forest line.zero", f"{cart} svg.forest circle.point",
                     f"{holdout} tbody tr", f"{holdout} [data-key=vs-holdout]", f"{holdout} svg.forest g.row",
                     CARD.format("news"), "#experiments"]
        run = subprocess.run(["node", str(BROWSER / "screenshot.mjs"), "--url", base + f"/dashboard#token={TOKEN}",
                              "--out", str(shot), "--height", "1200", *(arg for s in selectors for arg in ("--text", s))],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "CHROMIUM": CHROMIUM})
        assert run.returncode == 0, run.stdout + run.stderr
        assert "[page error]" not in run.stderr, run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["ok"] and int(result["chartsReady"]) > 0
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("PUSHLANG_KEEP_SCREENSHOT"):  # a copy to look at
            Path(os.environ["PUSHLANG_KEEP_SCREENSHOT"]).write_bytes(shot.read_bytes())
        texts = {s: [(t.get("text") or "").strip() for t in found]  # SVG elements have no innerText
                 for s, found in result["texts"].items()}

        assert texts[f"{cart} h3"] == ["Abandoned cart cart"]
        (winner,) = texts[f"{cart} [data-key=winner]"]
        assert winner == "Winner b · a 30%, b 50%, c 0% · not significant · at 2026-12-01 12:00:00 UTC"
        headers = texts[f"{cart} thead th"]
        assert headers[:2] == ["Variant", "Sends"] and "Δ vs a" in headers and "Δ vs control" in headers
        rows = [row.split("\t") for row in texts[f"{cart} tbody tr"]]
        assert [r[0] for r in rows] == ["a", "bwinner", "c"]
        assert [r[1:7] for r in rows] == [["10", "3", "30%", "2", "20%", "20.00"],
                                         ["10", "5", "50%", "6", "60%", "120.00"],
                                         ["8", "0", "0%", "0", "0%", "0.00"]]
        # the intervals as `pushlang stats` gives them (its minus is ASCII, the page's U+2212)
        variants = expected["cart"]["variants"]
        assert [t.replace("\u2212", "-") for t in texts[f"{cart} [data-key=vs-first]"]] == [
            comparison_text(variants[v]["vs_first"]).rsplit(" p", 1)[0] for v in ("b", "c")]
        assert [t.replace("\u2212", "-") for t in texts[f"{cart} [data-key=vs-control]"]] == [
            comparison_text(variants[v]["vs_control"]).rsplit(" p", 1)[0] for v in ("a", "b", "c")]
        assert texts[f"{cart} [data-key=vs-control-p]"] == ["0.531", "0.019 *", "0.357"]
        # the forest: b − a, c − a, then each variant − control; only b − control is significant
        assert len(texts[f"{cart} svg.forest g.row"]) == 5
        assert len(texts[f"{cart} svg.forest g.row.up"]) == 1 and texts[f"{cart} svg.forest g.row.down"] == []
        assert len(texts[f"{cart} svg.forest circle.point"]) == 5 and len(texts[f"{cart} svg.forest line.zero"]) == 1
        # the global holdout: cart, news and all of them
        assert [r.split("\t")[:4] for r in texts[f"{holdout} tbody tr"]] == [
            ["Abandoned cart", "5", "1", "20%"], ["news", "2", "0", "0%"], ["All", "7", "1", "14.3%"]]
        assert len(texts[f"{holdout} [data-key=vs-holdout]"]) == 3 and len(texts[f"{holdout} svg.forest g.row"]) == 3
        assert texts[CARD.format("news")] == []  # no variants, no winner: no card of its own


LANG_CART = '''campaign cart "Abandoned cart" {
  platforms chrome
  on "Added To Cart"
  message {
    title "Hi"
    body "Your cart"
    lang "fr" {
      title "Bonjour"
    }
    lang "pt-BR" {
      title "Olá"
    }
  }
  control group 10%
}
'''
LANGS = '.lang-card[data-campaign="{}"]'


def test_dashboard_shows_each_language(tmp_path: Path) -> None:
    (tmp_path / "cart.push").write_text(LANG_CART, encoding="utf-8")
    (tmp_path / "news.push").write_text(NEWS, encoding="utf-8")
    with serving(tmp_path, ["cart.push", "news.push"], TOKEN) as base:
        log = ActivityLog(str(tmp_path / "state.db"))  # the service's file, on a connection of its own
        for out in language_records():
            log.record(out)
        log.close()
        expected = {c["id"]: c for c in campaign_stats(from_outputs(language_records()), {})["campaigns"]}
        asking = urllib.request.Request(base + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        served = {c["id"]: c for c in json.loads(urllib.request.urlopen(asking, timeout=5).read())["campaigns"]}
        assert served["cart"]["languages"] == json.loads(json.dumps(expected["cart"]["languages"]))
        assert served["news"]["languages"] == {}

        shot = tmp_path / "languages.png"
        cart = LANGS.format("cart")
        selectors = [f"{cart} h3", f"{cart} thead th", f"{cart} tbody tr", f"{cart} tbody td.name",
                     f"{cart} [data-key=vs-control]", f"{cart} svg.forest g.row", f"{cart} svg.forest g.row.up",
                     f"{cart} svg.forest g.row.down", LANGS.format("news"), "#languages", "#languages-title"]
        run = subprocess.run(["node", str(BROWSER / "screenshot.mjs"), "--url", base + f"/dashboard#token={TOKEN}",
                              "--out", str(shot), "--height", "1200", *(arg for s in selectors for arg in ("--text", s))],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "CHROMIUM": CHROMIUM})
        assert run.returncode == 0, run.stdout + run.stderr
        assert "[page error]" not in run.stderr, run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["ok"] and int(result["chartsReady"]) > 0
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("PUSHLANG_KEEP_SCREENSHOT"):  # a copy to look at
            Path(os.environ["PUSHLANG_KEEP_SCREENSHOT"]).write_bytes(shot.read_bytes())
        texts = {s: [(t.get("text") or "").strip() for t in found] for s, found in result["texts"].items()}
        titles = {s: [t.get("title") for t in found] for s, found in result["texts"].items()}

        assert texts[f"{cart} h3"] == ["Abandoned cart cart"]
        assert texts["#languages-title"][0].startswith("Languages")
        headers = texts[f"{cart} thead th"]
        assert headers[:4] == ["Language", "Sends", "Viewed", "Clicked"] and "Δ vs control" in headers
        rows = [row.split("\t") for row in texts[f"{cart} tbody tr"]]
        assert [r[:10] for r in rows] == [
            ["default", "6", "4", "2", "33.3%", "2", "33.3%", "20.00", "4", "25%"],
            ["fr", "5", "3", "3", "60%", "1", "20%", "30.00", "2", "50%"],
            ["pt-BR", "4", "1", "0", "0%", "2", "50%", "40.00", "0", "-"]]
        assert [r[10:] for r in rows] == [["+8.3 pts [\u221248.4, +65.1]", "0.778", "+33.3%"],
                                         ["\u221230.0 pts [\u2212107.7, +47.7]", "0.427", "-60%"],
                                         ["-", "-", "-"]]  # pt-BR has no control group
        assert titles[f"{cart} tbody td.name"][0] == \
            "the message's own texts: no lang block matched the user's language"
        # the intervals as `pushlang stats` gives them (its minus is ASCII, the page's U+2212)
        languages = expected["cart"]["languages"]
        assert [t.replace("\u2212", "-") for t in texts[f"{cart} [data-key=vs-control]"]] == [
            comparison_text(languages[x]["vs_control"]).rsplit(" p", 1)[0] for x in ("default", "fr")] + ["-"]
        # the forest: default − control and fr − control, neither significant
        assert len(texts[f"{cart} svg.forest g.row"]) == 2
        assert texts[f"{cart} svg.forest g.row.up"] == texts[f"{cart} svg.forest g.row.down"] == []
        assert texts[LANGS.format("news")] == []  # no languages: no card
