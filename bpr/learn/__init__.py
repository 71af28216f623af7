"""Learning from partial labels: the loss, training runs."""
