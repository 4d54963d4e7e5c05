"""servectl's command line: thin commands (parse, call one function of a layer, print), loaded lazily."""

from servectl.cli.app import main

__all__ = ["main"]
