"""Task data: record schemas and loaders (cleaning, augmentation and curriculum come later)."""
