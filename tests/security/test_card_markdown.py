"""Card text from FHIR data can never become a link, an image, HTML or a table break.

CDS Hooks `detail` is GitHub-flavoured Markdown that the EHR renders. Every data-derived
string enters it through ``cds_service.pipeline.render.md_text``; these properties render the
result with GitHub's own cmark-gfm (raw HTML allowed, as the least careful EHR would)
and check what a clinician would get.
"""

from __future__ import annotations

import html
import re
from typing import Any

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cds_service.pipeline.render import md_text
from cds_service.settings import Settings
from tests.conftest import hook_request, prefetch_from_bundle
from twin_cds.app import create_app

# Strings an attacker would write, mixed with anything at all.
ATTACKS = [
    "[click me](javascript:alert(1)) <b>x</b>",
    "![img](http://evil.example/x.png)",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "https://evil.example/login",
    "www.evil.example",
    "WWW.EVIL.EXAMPLE/path",
    "nurse@evil.example",
    "mailto:nurse@evil.example",
    "xmpp:nurse@evil.example",
    "<http://evil.example>",
    "[x]: http://evil.example\n[x]",
    "a | b | c",
    "mg/dL\n| injected | row |",
    "\n\n# Heading",
    "1. ordered",
    "- bullet",
    "&lt;b&gt;",
    "`code` \\",
    "***bold*** ~~gone~~",
]
attack_alphabet = st.sampled_from(list("[]()!<>|`*_~#&:@\\/.-=+ \n\twhtpsmailo1"))
fhir_text = st.one_of(
    st.sampled_from(ATTACKS),
    st.text(attack_alphabet, max_size=40),
    st.text(max_size=40),
    st.lists(st.sampled_from(ATTACKS) | st.text(max_size=8), max_size=4).map("".join),
)
TABLE_TAGS = {"table", "thead", "tbody", "tr", "th", "td"}
TAG = re.compile(r"<(/?)([a-zA-Z0-9]+)")


def _render(markdown: str) -> str:
    html_out: str = cmarkgfm.github_flavored_markdown_to_html(
        markdown, options=Options.CMARK_OPT_UNSAFE
    )
    return html_out


def _shown(text: str) -> str:
    """What a reader should see: the text on one line, as cmark-gfm shows NUL."""
    return " ".join(text.replace("\x00", "\ufffd").replace("\u200b", "").split())


def _visible(fragment: str) -> str:
    return html.unescape(fragment).replace("\u200b", "")


@settings(max_examples=500, deadline=None)
@given(value=fhir_text)
@example(value="nurse@evil.example")
@example(value="[click me](javascript:alert(1)) <b>x</b>")
def test_data_text_in_a_table_cell_stays_one_plain_cell(value: str) -> None:
    """Inside a card's table, any FHIR string is one cell of plain text that reads as sent."""
    markdown = f"| Input | Source |\n|---|---|\n| Unit | {md_text(value)} |\n| Next | row |"
    out = _render(markdown)
    tags = {m.group(2).lower() for m in TAG.finditer(out)}
    assert tags <= TABLE_TAGS, (value, out)
    assert out.count("<tr>") == 3, (value, out)
    cells = re.findall(r"<td>(.*?)</td>", out, flags=re.S)
    assert len(cells) == 4, (value, out)
    assert _visible(cells[1]) == _shown(value), (value, out)


@settings(max_examples=500, deadline=None)
@given(value=fhir_text)
def test_data_text_in_a_list_item_stays_plain_text(value: str) -> None:
    """As a reason in a card's list, any FHIR string is plain text in its one list item."""
    markdown = f"**Missing or stale**\n- eGFR: unusable — {md_text(value)}\n- {md_text(value)}"
    out = _render(markdown)
    tags = {m.group(2).lower() for m in TAG.finditer(out)}
    assert tags <= {"p", "strong", "ul", "li"}, (value, out)
    items = re.findall(r"<li>(.*?)</li>", out, flags=re.S)
    assert len(items) == 2, (value, out)
    assert _visible(items[1]) == _shown(value), (value, out)


# --- end to end: a unit from an outside lab, through the running app ------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("md-data"), auth_required=False))
    with TestClient(app) as c:
        yield c


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(unit=fhir_text.filter(lambda u: u.strip() != ""))
@example(unit="[click me](javascript:alert(1)) <b>x</b>")
def test_a_hostile_unit_in_a_patients_record_never_becomes_markup_in_a_card(
    client: TestClient, demo_bundles: list[dict[str, Any]], unit: str
) -> None:
    """An HDL result whose unit is any string yields cards whose rendered detail has no
    link, image or HTML, and whose tables keep their columns."""
    prefetch = prefetch_from_bundle(demo_bundles[0])
    for entry in prefetch["observations"]["entry"]:
        coding = entry["resource"].get("code", {}).get("coding", [{}])
        if coding[0].get("code") == "2085-9":  # HDL cholesterol
            quantity = entry["resource"]["valueQuantity"]
            quantity["unit"] = unit
            quantity.pop("code", None)
            quantity.pop("system", None)
    body = hook_request(prefetch["patient"]["id"], prefetch)
    for service in ("ascvd-risk", "cardio-renal-risk"):
        response = client.post(f"/cds-services/{service}", json=body)
        assert response.status_code == 200, response.text
        for card in response.json()["cards"]:
            out = _render(card.get("detail", ""))
            tags = {m.group(2).lower() for m in TAG.finditer(out)}
            assert tags <= TABLE_TAGS | {"p", "strong", "ul", "li", "code", "em"}, out
            for table in re.findall(r"<table>.*?</table>", out, flags=re.S):
                for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S):
                    assert len(re.findall(r"<t[dh]>", row)) == 4, row
