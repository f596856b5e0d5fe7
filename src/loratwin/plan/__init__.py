"""Planning: a recommended configuration for one GPU, and placements of many adapters over GPUs."""
