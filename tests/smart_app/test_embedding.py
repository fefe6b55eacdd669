"""The app inside the EHR's frame: who may frame it, and the cookie that works there."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from cds_service.settings import Settings, SmartServerConfig
from smart_app.embedding import content_security_policy, frame_ancestors, session_cookie
from twin_cds.app import create_app

EPIC = SmartServerConfig(iss="https://fhir.hospital.example/api/FHIR/R4", client_id="a")
OTHER = SmartServerConfig(
    iss="https://fhir.other.example:8443/r4",
    client_id="b",
    frame_origins=("https://ehr.other.example", "https://ehr.other.example:443/path"),
)


def _settings(tmp_path: Path, *, embed: bool, servers: tuple[SmartServerConfig, ...]) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        auth_required=False,
        smart_servers=servers,
        app_embed_in_ehr=embed,
        public_base_url="https://cds.hospital.example",
    )


def test_the_frame_allowlist_is_the_configured_ehrs_origins(tmp_path: Path) -> None:
    """Each EHR's iss origin by default, its frame_origins when given, each once."""
    settings = _settings(tmp_path, embed=True, servers=(EPIC, OTHER))
    assert frame_ancestors(settings) == (
        "https://fhir.hospital.example",
        "https://ehr.other.example",
    )
    csp = content_security_policy(settings)
    assert csp.endswith("; frame-ancestors https://fhir.hospital.example https://ehr.other.example")


def test_without_embedding_no_page_may_frame_the_app(tmp_path: Path) -> None:
    """Embedding off (the default): frame-ancestors 'none', and a Lax cookie as before."""
    settings = _settings(tmp_path, embed=False, servers=(EPIC,))
    assert "frame-ancestors 'none'" in content_security_policy(settings)
    cookie = session_cookie(settings, "sid", 60)
    assert "SameSite=Lax" in cookie and "Secure" in cookie and "Partitioned" not in cookie


def test_an_embedded_session_cookie_works_in_a_third_party_frame(tmp_path: Path) -> None:
    """SameSite=None needs Secure; Partitioned keeps it working where third-party cookies
    are blocked. Still HttpOnly and scoped to /app."""
    settings = _settings(tmp_path, embed=True, servers=(EPIC,))
    attributes = session_cookie(settings, "sid", 60).split("; ")
    assert attributes[0] == "twin_cds_session=sid"
    assert {"HttpOnly", "Secure", "SameSite=None", "Partitioned", "Path=/app"} <= set(attributes)


def test_an_ehr_listed_with_no_frame_origins_cannot_frame_the_app(tmp_path: Path) -> None:
    """An explicit empty frame_origins: that EHR is a launch source, never a framer."""
    never = SmartServerConfig(iss="https://fhir.x.example", client_id="c", frame_origins=())
    settings = _settings(tmp_path, embed=True, servers=(never,))
    assert frame_ancestors(settings) == ()
    assert "frame-ancestors 'none'" in content_security_policy(settings)
    assert "SameSite=Lax" in session_cookie(settings, "sid", 60)


def test_app_pages_carry_the_allowlist(tmp_path: Path) -> None:
    """The page, the API and the launch all answer with the same frame-ancestors."""
    settings = _settings(tmp_path, embed=True, servers=(EPIC,))
    with TestClient(create_app(settings)) as client:
        for path in ("/app/", "/app/api/session"):
            csp = client.get(path).headers["content-security-policy"]
            assert csp.endswith("frame-ancestors https://fhir.hospital.example"), path
