"""Signing keys for the tests: a private key with the kid and algorithm it signs under,
its public JWK and JWKS, its PEM, and the JWTs it signs.

CDS clients and EHRs sign with ES384 or RS384 (CDS Hooks 2.0 asks for one of them), the
EHR's SMART launch with RS256, auditors' identity providers with ES384.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A private key, the ``kid`` its JWK is published under and its JWS algorithm."""

    private: PrivateKey
    kid: str
    alg: str

    def jwk(self, *, use: str | None = None) -> dict[str, Any]:
        """The public JWK with its kid and alg (and ``use`` when given)."""
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            public = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key())
        else:
            public = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key())
        data: dict[str, Any] = json.loads(public)
        data.update({"kid": self.kid, "alg": self.alg})
        if use is not None:
            data["use"] = use
        return data

    def jwks(self, *, use: str | None = None) -> dict[str, Any]:
        """A JWKS holding this key only."""
        return jwks(self, use=use)

    def pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (what a key file holds)."""
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        """A JWT of these claims, signed with this key; ``kid`` in the header unless
        ``headers`` says otherwise."""
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers}
        )


def es384(kid: str) -> SigningKey:
    """A new P-384 key signing ES384."""
    return SigningKey(ec.generate_private_key(ec.SECP384R1()), kid, "ES384")


def rsa_key(kid: str, alg: str = "RS384") -> SigningKey:
    """A new 2048-bit RSA key signing ``alg`` (RS384 unless told otherwise)."""
    return SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid, alg)


def jwks(*keys: SigningKey, use: str | None = None) -> dict[str, Any]:
    """A JWKS of the keys' public JWKs, in order."""
    return {"keys": [k.jwk(use=use) for k in keys]}


def hook_claims(iss: str, aud: str, *, lifetime_s: int = 120, **extra: Any) -> dict[str, Any]:
    """The claims of a CDS client's JWT for one call: issued now, expiring in
    ``lifetime_s``, with a fresh jti (CDS Hooks 2.0, Trusting CDS Clients)."""
    now = int(time.time())
    return {
        "iss": iss,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime_s,
        "jti": str(uuid.uuid4()),
        **extra,
    }
