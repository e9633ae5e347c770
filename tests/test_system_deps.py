"""Under ``make test`` the real-browser, Spark, PostgreSQL and neural-learner tests must run, not skip.

Those tests skip (with a reason) on a machine without chromium, Java, pyspark, PostgreSQL, psycopg
or torch, so that a plain ``pytest`` works anywhere. ``make test`` installs them all and sets
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


@pytest.mark.skipif(
    not os.environ.get("HFRL_REQUIRE_SYSTEM_DEPS"), reason="only enforced under make test"
)
def test_make_test_installed_the_cpu_torch_extra():
    assert importlib.util.find_spec("torch") is not None, "the torch extra is not installed"
    import torch

    assert torch.__version__.split("+")[0] == "2.13.0", f"torch {torch.__version__}, pinned 2.13.0"
