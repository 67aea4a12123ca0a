"""The sampling pipeline: DDIM schedule, the DDIM + CFG + mask loop over any three graphs, pictures in and out."""
