"""Offline evaluation: prequential replay of real interactions against peer recommenders."""
