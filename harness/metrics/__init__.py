"""Every metric is defined once, here, and computed by the same code for every engine."""
