"""The demo as `twin-cds demo` starts it: the auditor console signs in through the simulated EHR."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ehr_sim.demo import RunningProduct, running_product
from ehr_sim.servers import free_port


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProduct]:
    work: Path = tmp_path_factory.mktemp("demo")
    with running_product(
        work, patients=1, seed=5, port=free_port(), auditor_console=True
    ) as running:
        yield running


def test_the_auditor_console_signs_in_through_the_simulated_ehr(product: RunningProduct) -> None:
    """Sign-in goes to the EHR's authorize endpoint and back, and the console's pages open."""
    console = f"{product.service.base_url}/audit/ui"
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        signed_in = browser.get(f"{console}/login")
        chain = browser.get(f"{console}/chain")
    hops = [str(r.url).split("?")[0] for r in signed_in.history]
    assert hops == [
        f"{console}/login",
        f"{product.ehr.base_url}/authorize",
        f"{console}/callback",
    ]
    assert (signed_in.url, signed_in.status_code) == (console, 200)
    assert chain.status_code == 200
    assert "The chain is <strong>intact</strong>" in chain.text


def test_without_a_session_the_console_asks_to_sign_in(product: RunningProduct) -> None:
    """The console's pages need a session: a stranger is sent to sign in, not shown records."""
    answer = httpx.get(f"{product.service.base_url}/audit/ui", timeout=30)
    assert answer.status_code == 401
    assert 'href="/audit/ui/login"' in answer.text
