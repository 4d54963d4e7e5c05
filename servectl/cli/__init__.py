"""servectl's command line. One module per command group; importing them registers the commands."""

from servectl.cli.app import main
from servectl.cli import catalog_cmds  # noqa: F401  (profiles, models)
from servectl.cli import render_cmd  # noqa: F401  (render)
from servectl.cli import plan_cmd  # noqa: F401  (plan, calibrate)
from servectl.cli import patch_cmd  # noqa: F401  (patch, bootstrap)
from servectl.cli import serve_cmd  # noqa: F401  (up, down, status, logs, demo)
from servectl.cli import check_cmd  # noqa: F401  (check)
from servectl.cli import gpus_cmd  # noqa: F401  (gpus, diagnose)
from servectl.cli import proxy_cmd  # noqa: F401  (proxy)

__all__ = ["main"]
