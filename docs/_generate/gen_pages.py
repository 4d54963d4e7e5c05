"""Run by the mkdocs-gen-files plugin at every build (mkdocs.yml): writes the generated reference pages."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference  # noqa: E402  (this folder, put on the path above)

reference.generate()
