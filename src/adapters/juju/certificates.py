"""The ``certificates`` relation (interface ``tls-certificates``) through the TLS library.

The charm is a requirer in the library's UNIT mode: each unit makes its own private key and
sends its own certificate signing request, with the names clients reach it by
(``certificate_names``). The library keeps the key in a Juju secret owned by the unit, which
no other unit can read; the charm takes it from there only to write it into its own container
(``domain.tls``). It never goes into the peer relation, the leader's shared secret, a status or
a log line: ``ClientTlsFiles`` hides it from its repr.

The library brings ``cryptography`` and ``pydantic``, which together cost a hook about as much
to import as ops itself (``bench/library_imports.py``). So this module is imported only by the
hooks that need it (``app.charm``: the certificates events and the library's own secret
events, where the library must observe them; a restarted container, and a unit not yet serving
what its relation promises, where the charm only reads through it).
"""

from __future__ import annotations

import logging

import ops
from charmlibs.interfaces import tls_certificates as lib

from adapters.juju.hostname import unit_hostname
from domain.tls import ClientTlsFiles

logger = logging.getLogger(__name__)

CERTIFICATES_RELATION = "certificates"
# pgbouncer serves the certificate to every client, so one key per unit, made by the library.
_MAX_COMMON_NAME = 64  # X.509's ub-common-name


def certificate_names(app: str, unit_name: str, model: str) -> tuple[str, frozenset[str]]:
    """The common name and the DNS names a unit's certificate carries.

    The unit's own hostname (what the peer relation and the client answers give), the
    application's Kubernetes services (``<app>`` and ``<app>-endpoints``, short and fully
    qualified) and ``localhost`` for checks from inside the pod.
    """
    hostname = unit_hostname(unit_name, model)
    names = {
        hostname,
        app,
        f"{app}.{model}",
        f"{app}.{model}.svc",
        f"{app}.{model}.svc.cluster.local",
        f"{app}-endpoints",
        f"{app}-endpoints.{model}.svc.cluster.local",
        "localhost",
    }
    # The hostname is often longer than a common name may be; the SANs are what clients check.
    common_name = unit_name.replace("/", "-")[:_MAX_COMMON_NAME]
    return common_name, frozenset(names)


def request_attributes(charm: ops.CharmBase) -> lib.CertificateRequestAttributes:
    common_name, names = certificate_names(charm.app.name, charm.unit.name, charm.model.name)
    return lib.CertificateRequestAttributes(
        common_name=common_name, sans_dns=names, sans_ip=frozenset({"127.0.0.1"})
    )


class Certificates:
    """The library's requirer for this unit, and what it has been given."""

    def __init__(self, charm: ops.CharmBase):
        self._charm = charm
        self._request = request_attributes(charm)
        self.requirer = lib.TLSCertificatesRequiresV4(
            charm,
            CERTIFICATES_RELATION,
            certificate_requests=[self._request],
            mode=lib.Mode.UNIT,
        )

    def wanted(self) -> ClientTlsFiles | None:
        """This unit's key, certificate chain and CA, or None until its certificate came.

        Raises ``InvalidTlsMaterial`` when the provider's certificate is not usable PEM.
        """
        if self._charm.model.get_relation(CERTIFICATES_RELATION) is None:
            return None
        provided, key = self.requirer.get_assigned_certificate(self._request)
        if provided is None or key is None:
            return None
        if provided.revoked:
            logger.warning("this unit's certificate was revoked; serving without it")
            return None
        leaf = str(provided.certificate)
        ca = str(provided.ca)
        # The certificate file holds the unit's certificate and any intermediate, not the root.
        intermediates = [str(c) for c in provided.chain if str(c) not in (leaf, ca)]
        # ClientTlsFiles validates itself and raises InvalidTlsMaterial (the domain's error).
        return ClientTlsFiles(key=str(key), cert="\n".join([leaf, *intermediates]), ca=ca)
