"""Service settings: one pydantic-settings class, built once at start and passed down.

Every field reads from an environment variable with the ``TWIN_CDS_`` prefix, e.g.
``TWIN_CDS_DATA_DIR`` or ``TWIN_CDS_FHIR_SERVER_ALLOWLIST='["https://ehr.example/fhir"]'``.
The core packages never read the environment; they receive what they need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cds_service.audit.auth import AuditorIssuerConfig
from cds_service.http.auth import CdsClientConfig

#: The SMART scopes the clinician app asks for (SMART App Launch 2.x, v2 scopes): the
#: launch context, the user's identity, and read/search of what the twin and the dose
#: simulator read. Procedure is there because dialysis may be recorded as one.
SMART_APP_SCOPES = (
    "launch openid fhirUser patient/Patient.rs patient/Observation.rs patient/Condition.rs "
    "patient/MedicationRequest.rs patient/MedicationAdministration.rs patient/Procedure.rs "
    "online_access"
)


class SmartServerConfig(BaseModel):
    """An EHR's FHIR server the clinician app may be launched from, and our id there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iss: str = Field(description="The FHIR base URL the EHR sends as `iss` at launch.")
    client_id: str = Field(description="The app's client_id registered with that EHR.")
    scope: str = Field(default=SMART_APP_SCOPES, description="Scopes requested at EHR launch.")
    frame_origins: tuple[str, ...] | None = Field(
        default=None,
        description=(
            "Origins of the EHR pages that may show the app in a frame (CSP "
            "frame-ancestors); default: the origin of `iss`. An empty list: never framed."
        ),
    )


class Settings(BaseSettings):
    """What an operator configures."""

    model_config = SettingsConfigDict(env_prefix="TWIN_CDS_", frozen=True)

    data_dir: Path = Field(
        default=Path(".twin-cds"),
        description="Directory of the embedded SQLite stores (twins, audit trail).",
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Where clinicians' browsers reach this service; used in card links.",
    )
    fhir_server_allowlist: tuple[str, ...] = Field(
        default=(),
        description=(
            "Base URLs of the FHIR servers this service may contact with a hook's "
            "fhirAuthorization token. A fhirServer not on this list is never contacted."
        ),
    )
    allow_insecure_loopback_fhir: bool = Field(
        default=True,
        description="Permit http:// FHIR servers on 127.0.0.0/8 and ::1 (development only).",
    )
    fhir_timeout_s: float = Field(default=5.0, gt=0, description="Per-request FHIR timeout.")
    fhir_budget_ms: float = Field(
        default=400.0,
        gt=0,
        description=(
            "Time budget for all FHIR fetches of one hook call. When it runs out the "
            "call answers with what it has (and says what is missing), or 412."
        ),
    )
    cors_origins: tuple[str, ...] = Field(
        default=("*",),
        description="Origins of browser-based CDS clients allowed to call (CORS).",
    )
    parse_memo: bool = Field(
        default=True,
        description=(
            "Remember parsed FHIR entries by content (an EHR resends the same resources). "
            "false: parse everything every time (benchmarks of never-seen patients)."
        ),
    )
    log_format: Literal["json", "console"] = Field(
        default="json",
        description="Log lines as JSON (one object a line, for collectors) or console text.",
    )
    fhir_max_pages: int = Field(
        default=20, ge=1, description="Most Bundle.link[next] pages followed per search."
    )
    auth_required: bool = Field(
        default=True,
        description=(
            "Require a signed JWT from a configured CDS client on every call. Turning it "
            "off is for local development only, and the service logs that loudly."
        ),
    )
    clients: tuple[CdsClientConfig, ...] = Field(
        default=(),
        description="CDS clients (JSON list): iss, jwks or jku_allowlist, fhir_servers, tenant.",
    )
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300)
    jwt_max_lifetime_s: float = Field(
        default=600.0, gt=0, description="Longest exp - iat accepted on a CDS client JWT."
    )
    auditor_token_max_lifetime_s: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "Longest exp - iat accepted on an auditor token (each is also single-use: "
            "its jti is accepted once)."
        ),
    )
    api_docs: bool = Field(
        default=False,
        description=(
            "Serve /docs and /openapi.json. Off in production: the service's map is for "
            "its developers, not for whoever can reach it."
        ),
    )
    max_entries_per_call: int = Field(
        default=20_000,
        ge=1,
        description=(
            "Most FHIR resources one hook call reads: a prefetch holding more is refused "
            "(413, naming the cap); a FHIR search stops paging there."
        ),
    )
    kfre_calibration: Literal["north_america", "non_north_america"] = Field(
        default="north_america",
        description=(
            "KFRE baseline survival: North America (Tangri 2011) or the recalibration for "
            "elsewhere (Tangri 2016). A property of the deployment, not of the patient."
        ),
    )
    vancomycin_model: Literal[
        "vancomycin_goti2018",
        "vancomycin_buelga2005",
        "vancomycin_thomson2009",
        "vancomycin_goti2018_v2wt",
    ] = Field(
        default="vancomycin_goti2018",
        description=(
            "Population PK model for vancomycin: vancomycin_goti2018 (default), "
            "vancomycin_buelga2005, vancomycin_thomson2009. Model choice changes predictions."
        ),
    )
    smart_servers: tuple[SmartServerConfig, ...] = Field(
        default=(),
        description=(
            "EHRs the clinician app may be launched from (JSON list of {iss, client_id}). "
            "A launch naming any other iss is refused before anything is fetched from it."
        ),
    )
    app_embed_in_ehr: bool = Field(
        default=False,
        description=(
            "Let the configured EHRs show the app in a frame: CSP frame-ancestors lists "
            "their origins (never any other), and the session cookie is SameSite=None; "
            "Secure; Partitioned so it works in a third-party frame. False: no framing, "
            "SameSite=Lax."
        ),
    )
    app_session_max_s: int = Field(
        default=8 * 3600,
        gt=0,
        description=(
            "Longest clinician app session; without a refresh token from the EHR it also "
            "ends when the EHR's access token expires."
        ),
    )
    model_dir: Path | None = Field(
        default=None, description="Directory of .onnx models; default: the packaged models."
    )
    audit_console_issuer: str | None = Field(
        default=None,
        description="The OpenID Connect provider auditors sign in to /audit/ui with: the iss "
        "of one of TWIN_CDS_AUDITORS (its keys verify the id_token). Unset: no console.",
    )
    audit_console_client_id: str = Field(
        default="twin-cds-audit-console",
        description="The console's client_id at that provider (a public client with PKCE).",
    )
    audit_console_aud: str | None = Field(
        default=None,
        description="An aud parameter the provider requires on its authorize request "
        "(a SMART EHR's FHIR base); unset: none sent.",
    )
    # Forecast self-check bounds. External evaluations of vancomycin population PK models
    # call predictive performance acceptable at MDPE within +/-15% and MDAPE <= 30%
    # (Front Pharmacol 2021;12:623907, an external evaluation of 18 published models).
    selfcheck_mdpe_bound: float = Field(
        default=0.15,
        gt=0,
        description="A model drifts when its median prediction error (MDPE) is beyond "
        "+/- this fraction and its 95% interval excludes 0.",
    )
    selfcheck_mdape_bound: float = Field(
        default=0.30,
        gt=0,
        description="A model is imprecise when its median absolute prediction error exceeds this.",
    )

    database_url: str | None = Field(
        default=None,
        description=(
            "postgresql://... to keep the audit trail, twin versions, JWT replay cache and "
            "app sessions in PostgreSQL (several replicas); "
            "unset: SQLite under data_dir. A search_path in the URL's options picks the schema."
        ),
    )
    audit_signing_key_file: Path | None = Field(
        default=None,
        description=(
            "Ed25519 private key (PEM, PKCS#8) that signs audit checkpoints. Unset: "
            "checkpoints are not signed, and `twin-cds audit verify` says so."
        ),
    )
    audit_verify_key_file: Path | None = Field(
        default=None,
        description="Ed25519 public key (PEM) that checks checkpoint signatures (auditors).",
    )
    audit_checkpoint_every: int = Field(
        default=100, ge=0, description="Sign a checkpoint every this many records (0: never)."
    )
    # Off by default: on a quiet machine it measured even (bench/group_commit_ab.py under
    # wrk: throughput x0.94, p99 x0.88), and where another process competes for the cores
    # each answer waits for the committer thread to get the GIL back (load.py's Python
    # client on the same two cores: p99 687 ms on, 407 ms off).
    audit_group_commit: bool = Field(
        default=False,
        description=(
            "Commit the hook calls' audit records in batches, off the event loop: one "
            "transaction (one fsync) for every record waiting; each call is still answered "
            "only after its record is durable. false: one commit per call, on the loop."
        ),
    )
    auditors: tuple[AuditorIssuerConfig, ...] = Field(
        default=(),
        description=(
            "Issuers of auditor tokens (JSON list of {iss, jwks, algorithms}); tokens need "
            "role auditor and aud <public_base_url>/audit. None: the auditor API refuses all."
        ),
    )

    @property
    def kfre_model(self) -> str:
        return "kfre" if self.kfre_calibration == "north_america" else "kfre_non_na"

    @property
    def twin_db(self) -> Path:
        return self.data_dir / "twins.sqlite"

    @property
    def audit_db(self) -> Path:
        return self.data_dir / "audit.sqlite"

    @property
    def model_archive_dir(self) -> Path:
        """Every model file ever served, by sha256 (audit replay reads old records' models)."""
        return self.data_dir / "model-archive"

    @property
    def audit_audience(self) -> str:
        return self.public_base_url.rstrip("/") + "/audit"

    @property
    def app_sessions_db(self) -> Path:
        return self.data_dir / "app_sessions.sqlite"

    @property
    def replay_db(self) -> Path:
        """The JWT replay cache (jti values already used) when there is no database URL."""
        return self.data_dir / "replay.sqlite"

    @property
    def app_redirect_uri(self) -> str:
        return self.public_base_url.rstrip("/") + "/app/callback"

    @property
    def app_launch_url(self) -> str:
        return self.public_base_url.rstrip("/") + "/app/launch"
