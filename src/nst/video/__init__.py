"""Video: style transfer for clips with temporal consistency (Ruder, Dosovitskiy and Brox, 2016)."""
