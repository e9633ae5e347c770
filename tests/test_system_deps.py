"""Under ``make test`` the real-browser, Spark and PostgreSQL tests must run, not skip.

Those tests skip (with a reason) on a machine without chromium, Java, pyspark, PostgreSQL or psycopg,
so that a plain ``pytest`` works anywhere. ``make test`` installs them all and sets
``HFRL_REQUIRE_SYSTEM_DEPS=1``; this test then fails if any is missing, so a broken install step
cannot turn into silent skips in CI.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

from pgcluster import postgres_bin


@pytest.mark.skipif(
    not os.environ.get("HFRL_REQUIRE_SYSTEM_DEPS"), reason="only enforced under make test"
)
def test_make_test_installed_chromium_java_pyspark_and_postgresql():
    assert shutil.which("chromium") or shutil.which("chromium-browser"), "chromium is not installed"
    assert shutil.which("java"), "no Java runtime for the Spark tests"
    assert importlib.util.find_spec("pyspark") is not None, "the spark extra is not installed"
    assert postgres_bin() is not None, "PostgreSQL (initdb, pg_ctl) is not installed"
    assert importlib.util.find_spec("psycopg_pool") is not None, "psycopg's pool (the dev extra) is missing"
