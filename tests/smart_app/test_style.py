"""The EHR's SMART style: applied only when readable and harmless, fetched only from the EHR."""

from __future__ import annotations

import httpx
import pytest
import respx

from smart_app.style import contrast_with_white, fetch_style, safe_style


@pytest.mark.parametrize(
    ("colour", "ratio"),
    [
        ("#000000", 21.0),  # the WCAG maximum
        ("#ffffff", 1.0),
        ("#767676", 4.54),  # the lightest grey passing AA on white (WebAIM's example)
        ("#777777", 4.48),  # one step lighter fails
    ],
)
def test_contrast_follows_wcag(colour: str, ratio: float) -> None:
    assert contrast_with_white(colour) == pytest.approx(ratio, abs=0.01)


@pytest.mark.parametrize(
    ("style", "applied"),
    [
        ({"color_highlight": "#1F5F99"}, {"highlight": "#1f5f99"}),
        ({"color_highlight": "#767676"}, {"highlight": "#767676"}),
        ({"color_highlight": "#777777"}, {}),  # 4.48:1: links would be unreadable
        ({"color_highlight": "#ffff00"}, {}),
        ({"color_highlight": "red"}, {}),
        ({"color_highlight": "#123"}, {}),
        (
            {"font_family_body": "Helvetica, 'Open Sans', sans-serif"},
            {"font_family": "Helvetica, 'Open Sans', sans-serif"},
        ),
        ({"font_family_body": "x; background: url(https://evil/)"}, {}),
        ({"font_family_body": "a}body{display:none"}, {}),
        ("not a style", {}),
    ],
)
def test_only_safe_style_is_applied(style: object, applied: dict[str, str]) -> None:
    assert safe_style(style) == applied


async def test_the_style_is_fetched_only_from_the_ehrs_origin() -> None:
    iss = "https://ehr.test/fhir"
    with respx.mock(assert_all_called=False) as mock:
        mock.get("https://ehr.test/style.json").respond(json={"color_highlight": "#1f5f99"})
        mock.get("https://elsewhere.test/style.json").respond(json={"color_highlight": "#000000"})
        async with httpx.AsyncClient() as http:
            assert await fetch_style(http, "https://ehr.test/style.json", iss) == {
                "highlight": "#1f5f99"
            }
            assert await fetch_style(http, "https://elsewhere.test/style.json", iss) == {}
            assert await fetch_style(http, "http://ehr.test/style.json", iss) == {}
            assert await fetch_style(http, None, iss) == {}
        assert mock.calls.call_count == 1


async def test_a_broken_style_means_the_default_style() -> None:
    iss = "https://ehr.test/fhir"
    with respx.mock() as mock:
        mock.get("https://ehr.test/a.json").respond(500)
        mock.get("https://ehr.test/b.json").respond(text="not json")
        mock.get("https://ehr.test/c.json").mock(side_effect=httpx.ConnectTimeout("slow"))
        async with httpx.AsyncClient() as http:
            for name in ("a", "b", "c"):
                assert await fetch_style(http, f"https://ehr.test/{name}.json", iss) == {}
