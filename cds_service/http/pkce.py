"""PKCE S256 (RFC 7636): the one code challenge every OAuth party here computes.

The clinician app's SMART launch and the audit console's sign-in send it; the demo's EHR
simulator (``ehr_sim``) checks it.
"""

from __future__ import annotations

import base64
import hashlib


def pkce_challenge(verifier: str) -> str:
    """BASE64URL(SHA256(ASCII(verifier))) without padding (RFC 7636 §4.2, S256)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
