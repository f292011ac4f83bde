"""STvM adaptation: the paper's equations and building blocks, one iteration (step), the loop and DDP."""
