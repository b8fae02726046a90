"""Every endpoint common/guest_access.py opens to guests is one the single
process serves (a misspelt entry would silently forbid it)."""

from __future__ import annotations

from pathlib import Path

from common.guest_access import GUEST_ALLOWED, template_of
from tests.contract.myelin_routes import monolith_app


def test_every_guest_endpoint_is_served(tmp_path: Path) -> None:
    app = monolith_app(tmp_path)
    served = {(method, template_of(route.path)) for route in app.router.routes
              if route.path.lstrip("/").startswith("_matrix/client/") for method in route.methods}
    assert sorted(GUEST_ALLOWED - served) == []
    # And the templates are what the check computes for real requests.
    assert ("PUT", "rooms/*/send/*/*") in served and ("GET", "sync") in served
