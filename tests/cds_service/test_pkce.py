"""PKCE S256 (RFC 7636): one challenge function for the app, the console and the simulator."""

from __future__ import annotations

import importlib

import pytest

from cds_service.http.pkce import pkce_challenge


def test_the_challenge_is_rfc_7636s_worked_example() -> None:
    """RFC 7636 Appendix B: this verifier gives exactly this challenge (no padding)."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize(
    "module", ["smart_app.launch", "cds_service.audit.console_signin", "ehr_sim.tokens"]
)
def test_every_party_uses_the_one_function(module: str) -> None:
    """The app's launch, the console's sign-in and the simulator's token check share it."""
    assert importlib.import_module(module).pkce_challenge is pkce_challenge
