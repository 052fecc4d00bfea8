"""Controllers, the safety shield, the gymnasium environment, training and evaluation."""
