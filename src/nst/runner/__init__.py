"""Running one optimization: inputs -> module -> Trainer -> outputs, with logging, checkpoints and signals."""
