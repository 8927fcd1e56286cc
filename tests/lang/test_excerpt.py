"""A rule's source lines: from `rule NAME` to the brace that closes it, whatever its
strings and comments hold."""

from __future__ import annotations

from arbiter.lang.excerpt import rule_sources

TEXT = """\
const LIMIT = 3  # a } in a comment

rule Braces priority 10 {
    // a { in a comment
    when { task.topic == "a } in a string" or task.topic == "\\"}" }
    then Deny { reason: "closing } quoted" }
}
rule Next { when { true } then Allow {} otherwise Alert {} }
"""


def test_a_rule_ends_at_its_own_closing_brace() -> None:
    found = rule_sources(
        {"main.arb": TEXT, "lib/other.arb": "rule Other { when { true } then Allow {} }"}
    )
    braces = found["Braces"]
    assert (braces.file, braces.line, braces.end_line) == ("main.arb", 3, 7)
    assert braces.text.splitlines()[0] == "rule Braces priority 10 {"
    assert braces.text.splitlines()[-1] == "}"
    assert (braces.then_action, braces.otherwise_action) == ("Deny", None)
    one_line = found["Next"]
    assert (one_line.line, one_line.end_line, one_line.otherwise_action) == (8, 8, "Alert")
    assert found["Other"].file == "lib/other.arb"


def test_a_file_that_no_longer_parses_still_gives_the_rules_it_can() -> None:
    broken = TEXT + "rule Broken { when { task. } then Deny {} }\n"
    found = rule_sources({"main.arb": broken})
    assert {"Braces", "Next"} <= set(found)
