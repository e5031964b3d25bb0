"""TLS under Juju's interleavings: many orders of the certificates events, fake workloads.

``MultiUnitModel`` (``real=False``) runs three units of the real charm and delivers events in
orders drawn from seeded ``random.Random``s, while the provider answers some units late
(``withheld``), renews every certificate, and finally leaves. ``FakeWorkload`` refuses what a
real pgbouncer would fail on: a config copy naming a TLS file the unit does not have, or a
TLS file removed while a copy still names it (the hook then fails, and the test with it).
Every order must end with every unit serving TLS with its own, current certificate, and,
after the relation is removed, every unit plain with no key left in its container.
"""

import pickle
import random

import pytest

from domain.tls import ClientTlsFiles, TlsInPlace
from localenv.fake_workload import FakeWorkload
from localenv.juju_model import MultiUnitModel
from localenv.tls_provider import CertificateAuthority

SEEDS = range(8)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


def fake(model: MultiUnitModel, n: int) -> FakeWorkload:
    return model.fake_workload(n)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_order_ends_with_every_unit_serving_its_own_certificate(
    seed: int, ca: CertificateAuthority
) -> None:
    rng = random.Random(seed)
    with MultiUnitModel(3, config={"listen_port": 6432}) as model:
        model.setup_backend(
            '"pgbouncer_auth_pgbouncer_k8s" "md5aad46d9afbcc8c8248d254d567b577c1"\n'
        )
        # Some hooks run before the relation comes, some units get certificates late.
        model.run(rng, rng.randrange(0, 12))
        model.withheld.update(n for n in model.units if rng.random() < 0.5)
        relation = model.relate_certificates(ca)
        model.run(rng, rng.randrange(0, 20))
        model.release_certificates()
        model.settle(rng)
        for n in model.units:
            workload = fake(model, n)
            assert workload.served.client, (seed, n, model.unit_status(n))
            assert workload.client_tls is not None
            assert workload.client_tls.cert.strip() in {c.strip() for c in ca.issued.values()}
            assert model.unit_status(n).startswith("active"), model.unit_status(n)
        keys = {fake(model, n).client_tls.key for n in model.units}  # type: ignore[union-attr]
        assert len(keys) == len(model.units), "units share a private key"

        # Renewal in the middle of other hooks.
        before = {n: fake(model, n).client_tls for n in model.units}
        model.rotate_certificates()
        model.set_config(pool_mode="transaction")
        model.settle(rng)
        for n in model.units:
            assert fake(model, n).client_tls != before[n]
            assert fake(model, n).served.client

        model.unrelate(relation)
        model.settle(rng)
        for n in model.units:
            assert not fake(model, n).served.client
            assert fake(model, n).client_tls is None
            assert "client_tls" not in (model.published_cfg() or "")


def test_a_fake_workload_with_tls_crosses_to_a_revision_without_domain_tls_and_back(
    ca: CertificateAuthority,
) -> None:
    """Mixed-revision models (``localenv.revision_runner``) pickle the workload into a worker
    running a revision that may predate ``domain.tls``: the pickle names none of its classes,
    and the TLS state comes back whole."""
    key, cert = ca.server_pair("pgbouncer-k8s-0")
    workload = FakeWorkload()
    workload.client_tls = ClientTlsFiles(key=key, cert=cert, ca=ca.pem)
    workload.backend_ca = ca.pem
    workload.served = TlsInPlace(client=True, backend_ca=True)

    data = pickle.dumps(workload)
    back = pickle.loads(data)

    assert b"domain.tls" not in data
    assert (back.client_tls, back.backend_ca, back.served) == (
        workload.client_tls,
        workload.backend_ca,
        workload.served,
    )
