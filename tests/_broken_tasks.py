"""Task plugins that break on purpose (issue 20), installed as a real distribution by
``install_broken_tasks``: one whose load_data() raises, one whose constructor raises, one whose
training pool holds NaN, all otherwise the built-in synthetic task."""

from __future__ import annotations

from pathlib import Path

MODULE = "robust_t_broken_tasks"

SOURCE = '''
import math
from robustcli.builtin.synthetic import SyntheticTask


class LoadRaises(SyntheticTask):
    name = "broken-load"
    description = "load_data() raises OSError"

    def load_data(self):
        raise OSError("the data disk is gone")


class InitRaises(SyntheticTask):
    name = "broken-init"
    description = "the constructor raises ZeroDivisionError"

    def __init__(self, **options):
        1 / 0


class NanPool(SyntheticTask):
    name = "broken-nan"
    description = "NaN in the training pool"

    def load_data(self):
        data = super().load_data()
        data.pool_x[3, 2] = math.nan
        return data
'''

TASKS = {"broken-load": "LoadRaises", "broken-init": "InitRaises", "broken-nan": "NanPool"}


def install_broken_tasks(site: Path) -> Path:
    """Write the distribution into ``site`` (put it on sys.path / PYTHONPATH); returns ``site``."""
    dist = site / "robust_t_broken-1.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: robust-t-broken\nVersion: 1.0\n")
    lines = "".join(f"{name} = {MODULE}:{cls}\n" for name, cls in TASKS.items())
    (dist / "entry_points.txt").write_text(f"[robustcli.tasks]\n{lines}")
    (site / f"{MODULE}.py").write_text(SOURCE)
    return site
