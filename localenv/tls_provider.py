"""A certificate authority for local runs, and the provider side of ``tls-certificates``.

``CertificateAuthority`` makes a CA and signs certificate signing requests with the TLS
library's own helpers (``PrivateKey.generate``, ``Certificate.generate_self_signed_ca``,
``Certificate.generate``), as the ``self-signed-certificates`` charm does. ``provider_data``
is what that charm writes in its application databag of the ``certificates`` relation: one
entry per request, with the certificate, the CA and the chain. ``MultiUnitModel`` plays the
provider with it (``relate_certificates``, ``rotate_certificates``); tests also use it to
make a server certificate for the test PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import timedelta

from charmlibs.interfaces.tls_certificates import (
    Certificate,
    CertificateRequestAttributes,
    CertificateSigningRequest,
    PrivateKey,
)

VALIDITY = timedelta(days=30)


class CertificateAuthority:
    """A CA key and certificate; ``issued`` maps each CSR it signed to its certificate."""

    def __init__(self, name: str = "pgbouncer-k8s test CA") -> None:
        self.key = PrivateKey.generate()
        self.certificate = Certificate.generate_self_signed_ca(
            CertificateRequestAttributes(common_name=name, is_ca=True), self.key, VALIDITY
        )
        self.issued: dict[str, str] = {}

    @property
    def pem(self) -> str:
        return str(self.certificate)

    def sign(self, csr: str) -> str:
        """A new certificate (new serial) for ``csr``; remembered in ``issued``."""
        certificate = Certificate.generate(
            CertificateSigningRequest.from_string(csr), self.certificate, self.key, VALIDITY
        )
        self.issued[csr] = str(certificate)
        return self.issued[csr]

    def server_pair(
        self, common_name: str, sans_dns: Iterable[str] = (), sans_ip: Iterable[str] = ()
    ) -> tuple[str, str]:
        """A key and a certificate for a server (the test PostgreSQL): ``(key, cert)``."""
        key = PrivateKey.generate()
        attributes = CertificateRequestAttributes(
            common_name=common_name, sans_dns=frozenset(sans_dns), sans_ip=frozenset(sans_ip)
        )
        csr = attributes.generate_csr(key)
        return str(key), self.sign(str(csr))

    def provider_data(self, csrs: Iterable[str], reissue: bool = False) -> dict[str, str]:
        """The provider's application databag answering ``csrs`` (signing new ones, or all
        of them again with ``reissue``)."""
        entries = []
        for csr in csrs:
            cert = self.sign(csr) if reissue or csr not in self.issued else self.issued[csr]
            entries.append(
                {
                    "certificate_signing_request": csr,
                    "certificate": cert,
                    "ca": self.pem,
                    "chain": [cert, self.pem],
                }
            )
        return {"certificates": json.dumps(entries)}


def requested_csrs(unit_data: Mapping[str, str]) -> list[str]:
    """The CSRs a requirer unit put in its databag."""
    raw = unit_data.get("certificate_signing_requests")
    if not raw:
        return []
    return [entry["certificate_signing_request"] for entry in json.loads(raw)]
