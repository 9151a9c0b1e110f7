"""A stand-in for a company's identity provider: keys made here (RSA 2048 and EC P-256), their
JWKS, and JWTs minted with PyJWT, or built by hand where PyJWT would refuse (unsigned, HMAC
signed with a public key)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.corp.test"
AUDIENCE = "mlops"
GROUPS = "groups"
ROLES = (
    "ml-viewers=viewer",
    "ml-ops=operator:api",
    "ml-ops-other=operator:oth*",
    "ml-admins=admin",
    "ml-predict=predict:api",
)
"""The `--jwt-role` options of the servers in the SSO tests."""

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@functools.cache
def rsa_key(name: str = "rsa-1") -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(name: str = "ec-1", curve: str = "P-256") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1() if curve == "P-384" else ec.SECP256R1())


def public_jwk(kid: str, key: PrivateKey) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        found = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        found = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**found, "kid": kid, "use": "sig"}


def jwks(keys: dict[str, PrivateKey]) -> dict[str, Any]:
    return {"keys": [public_jwk(kid, key) for kid, key in keys.items()]}


def write_jwks(path: Path, keys: dict[str, PrivateKey]) -> Path:
    path.write_text(json.dumps(jwks(keys)))
    return path


def default_keys() -> dict[str, PrivateKey]:
    return {"rsa-1": rsa_key(), "ec-1": ec_key()}


def sso_args(jwks_location: str | Path) -> list[str]:
    """The options of `mlops serve` that trust this identity provider."""
    args = ["--jwt-jwks", str(jwks_location), "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE]
    for role in ROLES:
        args += ["--jwt-role", role]
    return args


@dataclass
class Claims:
    sub: str = "ana@corp"
    groups: list[str] | str | None = None
    iss: str = ISSUER
    aud: str = AUDIENCE
    exp_in: float = 3600.0
    iat_in: float = 0.0
    nbf_in: float | None = None

    def payload(self) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {
            "sub": self.sub,
            "iss": self.iss,
            "aud": self.aud,
            "iat": int(now + self.iat_in),
            "exp": int(now + self.exp_in),
        }
        if self.groups is not None:
            out[GROUPS] = self.groups
        if self.nbf_in is not None:
            out["nbf"] = int(now + self.nbf_in)
        return out


def mint(
    claims: Claims | None = None,
    *,
    kid: str = "rsa-1",
    key: PrivateKey | None = None,
    algorithm: str | None = None,
) -> str:
    """A JWT signed as the identity provider would: RS256 with the RSA key, ES256 with the EC
    one, unless `algorithm` says otherwise."""
    key = key if key is not None else (ec_key() if kid.startswith("ec") else rsa_key())
    algorithm = algorithm or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
    payload = (claims or Claims()).payload()
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def unsigned(claims: Claims | None = None, kid: str = "rsa-1") -> str:
    """`alg: none`: a JWT with no signature at all."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{b64(json.dumps((claims or Claims()).payload()).encode())}."


def key_confusion(claims: Claims | None = None, kid: str = "rsa-1") -> str:
    """HS256 signed with the RSA public key's PEM as the HMAC secret: what a verifier that
    takes the header's algorithm with the stored key would accept."""
    pem = (
        rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps((claims or Claims()).payload()).encode())
    signature = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def flipped(token: str) -> str:
    """The same JWT with one byte of its signature changed."""
    head, body, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{body}.{b64(bytes(raw))}"
