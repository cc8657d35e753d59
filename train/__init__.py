"""stance-lab: multilingual stance classification (conciliatory / neutral / hostile) for political rhetoric."""

__version__ = "0.1.0"
