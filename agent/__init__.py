"""opsagent: acts on what the collectors observed and the rules judged."""

__version__ = "0.1.0"
