"""Plugin tests build everything (CPU library, cubins, PTX) into a per-session cache dir."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _plugin_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GSVNET_PLUGIN_CACHE", str(tmp_path_factory.mktemp("plugin-cache")))
        yield

