"""Loaders for public datasets: the Open Bandit Dataset in the hfrl log schema."""

from hfrl.datasets.fetch import OBD_SAMPLE_ROWS, OBP_VERSION, extract_obd, fetch_obd, verify_obd
from hfrl.datasets.obd import (
    BEHAVIOR_POLICIES,
    CAMPAIGNS,
    ITEM_FEATURE_COLUMNS,
    LOG_COLUMNS,
    USER_FEATURE_COLUMNS,
    affinity_columns,
    bts_action_distribution,
    export_obd,
    iter_obd,
    load_obd,
    obd_files,
)

__all__ = [
    "OBD_SAMPLE_ROWS",
    "OBP_VERSION",
    "extract_obd",
    "fetch_obd",
    "verify_obd",
    "affinity_columns",
    "BEHAVIOR_POLICIES",
    "CAMPAIGNS",
    "ITEM_FEATURE_COLUMNS",
    "LOG_COLUMNS",
    "USER_FEATURE_COLUMNS",
    "bts_action_distribution",
    "export_obd",
    "iter_obd",
    "load_obd",
    "obd_files",
]
