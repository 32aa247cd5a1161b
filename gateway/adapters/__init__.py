"""Southbound protocol adapters, found through the `linegw.adapters` entry point."""
