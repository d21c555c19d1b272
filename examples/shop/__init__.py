"""A model-free demo app whose tasks.py autotask finds on its own."""
