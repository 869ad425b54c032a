"""Renderers: text tables, plots, graphs and timelines from analysis results."""
