"""Segment videos with the graphs and engines that ``export`` wrote."""
