"""Training: annotation readers, augmentation, losses and the loop."""
