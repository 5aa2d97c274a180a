"""The row that ``epmpulse smoke-test`` writes after a deploy.

It is stored, kept in the history and served by ``/api/v1/status`` like any row, so
the smoke test proves the whole write path. Every board leaves it out, because it is
no EPM job, and apps.json need not list it.
"""

from __future__ import annotations

SMOKE_TEST_APP = "EPMPulse"
SMOKE_TEST_DOMAIN = "SmokeTest"


def is_smoke_test_row(app: str, domain: str) -> bool:
    """Return True for the smoke-test row; the names match exactly, case included."""
    return app == SMOKE_TEST_APP and domain == SMOKE_TEST_DOMAIN
