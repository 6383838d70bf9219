"""Task data: record schemas, loaders, training pairs, cleaning, augmentation, curriculum."""
